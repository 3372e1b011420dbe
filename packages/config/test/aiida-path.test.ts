// AIIDA_PATH read by Python AiiDA's rules (aiida.manage.configuration.settings): a list, both entry
// forms, the first existing entry wins, else the last; nothing given means ~/.aiida.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  getConfigDir,
  getConfigFilePath,
  resolveAiidaPath,
  resolveConfigDirFromList,
} from '@aiida/config';

let root: string;
const savedPath = process.env.AIIDA_PATH;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'aiida-path-test-'));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
  if (savedPath === undefined) delete process.env.AIIDA_PATH;
  else process.env.AIIDA_PATH = savedPath;
});

/** A folder `name` under the test root, with a `.aiida` inside when `withConfig`. */
function folder(name: string, withConfig: boolean): string {
  const path = join(root, name);
  mkdirSync(withConfig ? join(path, '.aiida') : path, { recursive: true });
  return path;
}

describe('AIIDA_PATH entries', () => {
  test('an entry that holds .aiida: .aiida is appended', () => {
    const a = folder('a', true);
    expect(resolveConfigDirFromList(a)).toBe(join(a, '.aiida'));
  });

  test('an entry that is the .aiida folder itself is used as it is', () => {
    const a = folder('a', true);
    expect(resolveConfigDirFromList(join(a, '.aiida'))).toBe(join(a, '.aiida'));
    expect(resolveConfigDirFromList(`${join(a, '.aiida')}/`)).toBe(join(a, '.aiida'));
  });

  test('a .aiida entry that does not exist yet is still not appended to', () => {
    expect(resolveConfigDirFromList(join(root, 'new', '.aiida'))).toBe(join(root, 'new', '.aiida'));
  });

  test('~ at the start of an entry is the home directory', () => {
    expect(resolveConfigDirFromList('~')).toBe(join(homedir(), '.aiida'));
    expect(resolveConfigDirFromList('~/somewhere/.aiida')).toBe(
      join(homedir(), 'somewhere', '.aiida'),
    );
  });

  test('a relative entry is taken from the current folder', () => {
    expect(resolveConfigDirFromList('rel')).toBe(join(process.cwd(), 'rel', '.aiida'));
  });
});

describe('AIIDA_PATH lists', () => {
  test('the first entry whose config folder exists wins', () => {
    const missing = folder('missing', false);
    const b = folder('b', true);
    const c = folder('c', true);
    expect(resolveConfigDirFromList([missing, b, c].join(':'))).toBe(join(b, '.aiida'));
    expect(resolveConfigDirFromList([c, b].join(':'))).toBe(join(c, '.aiida'));
  });

  test('both forms mix in one list', () => {
    const missing = folder('missing', false);
    const b = folder('b', true);
    expect(resolveConfigDirFromList(`${missing}:${join(b, '.aiida')}`)).toBe(join(b, '.aiida'));
  });

  test('a config folder that is a file does not count as existing', () => {
    const a = folder('a', false);
    writeFileSync(join(a, '.aiida'), 'not a folder');
    const b = folder('b', true);
    expect(resolveConfigDirFromList(`${a}:${b}`)).toBe(join(b, '.aiida'));
  });

  test('when no entry exists, the last one is used', () => {
    const x = folder('x', false);
    const y = folder('y', false);
    expect(resolveConfigDirFromList(`${x}:${y}`)).toBe(join(y, '.aiida'));
    expect(resolveConfigDirFromList(`${x}:${join(root, 'z', '.aiida')}`)).toBe(
      join(root, 'z', '.aiida'),
    );
  });

  test('empty entries are skipped', () => {
    const a = folder('a', false);
    const b = folder('b', false);
    expect(resolveConfigDirFromList(`::${a}::${b}:`)).toBe(join(b, '.aiida'));
  });

  test('unset, empty or only separators: ~/.aiida', () => {
    const home = join(homedir(), '.aiida');
    expect(resolveConfigDirFromList(undefined)).toBe(home);
    expect(resolveConfigDirFromList('')).toBe(home);
    expect(resolveConfigDirFromList(':::')).toBe(home);
  });
});

describe('the environment variable', () => {
  test('resolveAiidaPath and the file paths follow AIIDA_PATH by these rules', () => {
    const missing = folder('missing', false);
    const b = folder('b', true);
    process.env.AIIDA_PATH = `${missing}:${join(b, '.aiida')}`;
    expect(resolveConfigDirFromList()).toBe(join(b, '.aiida'));
    expect(resolveAiidaPath()).toBe(b);
    expect(getConfigDir()).toBe(join(b, '.aiida'));
    expect(getConfigFilePath()).toBe(join(b, '.aiida', 'aiida-ts.json'));
  });

  test('an explicit aiidaPath is one entry, of either form, and beats the environment', () => {
    process.env.AIIDA_PATH = folder('env', true);
    const a = folder('a', false);
    expect(resolveAiidaPath(a)).toBe(a);
    expect(resolveAiidaPath(join(a, '.aiida'))).toBe(a);
    expect(getConfigDir(join(a, '.aiida'))).toBe(join(a, '.aiida'));
  });

  test('an empty AIIDA_PATH is the home directory', () => {
    process.env.AIIDA_PATH = '';
    expect(resolveAiidaPath()).toBe(homedir());
  });
});
