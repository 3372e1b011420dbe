// `pnpm check:packages` as CI runs it: publint (--strict) and attw (--profile esm-only) over
// every publishable package, packed with pnpm. First it proves it bites: a copy of a package
// (outside the workspace) with a broken `exports` and no LICENSE is refused with the package's
// name and each check that failed, while an intact copy passes. Needs `pnpm build` first.
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { runCollectingOutput } from './support/processes.js';

const root = join(import.meta.dirname, '..');
const script = join(root, 'scripts', 'check-packages.mjs');

function runCheck(args: string[]): Promise<{ code: number | null; output: string }> {
  // The child ends by itself (pnpm pack, publint, attw); the deadline only bounds a hang.
  return runCollectingOutput(process.execPath, [script, ...args], {
    cwd: root,
    timeoutSeconds: 8 * 60,
  });
}

/** A copy of packages/ipc as it is packed (manifest, README, dist, src), outside the workspace. */
function copyOfIpc(work: string, name: string): string {
  const from = join(root, 'packages', 'ipc');
  if (!existsSync(join(from, 'dist', 'index.js'))) {
    throw new Error('packages/ipc/dist is missing: run `pnpm build` first');
  }
  const dir = join(work, name);
  for (const entry of ['package.json', 'README.md', 'dist', 'src']) {
    cpSync(join(from, entry), join(dir, entry), { recursive: true });
  }
  return dir;
}

describe('pnpm check:packages', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'aiida-check-packages-test-'));
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  test(
    'refuses a package whose types do not resolve and that ships no LICENSE, naming it',
    async () => {
      const intact = copyOfIpc(work, 'intact');
      // Outside the workspace pnpm has no root LICENSE to add: give the intact copy its own.
      cpSync(join(root, 'LICENSE'), join(intact, 'LICENSE'));
      const broken = copyOfIpc(work, 'broken');
      const manifestPath = join(broken, 'package.json');
      const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
      manifest.exports['.'].types = './dist/no-such-file.d.ts';
      manifest.types = './dist/no-such-file.d.ts';
      writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));

      const good = await runCheck([intact]);
      expect({ code: good.code, output: good.output }).toMatchObject({ code: 0 });
      expect(good.output).toContain('ok   @aiida/ipc: publint');
      expect(good.output).toContain('ok   @aiida/ipc: attw --profile esm-only');
      expect(good.output).toContain('ok   @aiida/ipc: LICENSE (MIT) packed');

      const bad = await runCheck([broken]);
      expect(bad.code).toBe(1);
      expect(bad.output).toContain('FAIL @aiida/ipc: publint reported problems');
      expect(bad.output).toContain('no-such-file.d.ts');
      expect(bad.output).toContain('FAIL @aiida/ipc: attw (esm-only) reported problems');
      expect(bad.output).toContain('FAIL @aiida/ipc: the tarball has no MIT LICENSE');
      expect(bad.output).toMatch(/3 package check\(s\) failed/);
    },
    20 * 60_000,
  );

  test(
    'passes for every publishable package of the workspace, and leaves bench out',
    async () => {
      const result = await runCheck([]);
      expect({ code: result.code, output: result.output }).toMatchObject({ code: 0 });
      expect(result.output).toContain('skip @aiida/bench (private, not published)');
      const names = readdirPublishable();
      expect(names.length).toBeGreaterThanOrEqual(8);
      for (const name of names) {
        for (const check of ['publint', 'attw --profile esm-only', 'LICENSE (MIT) packed']) {
          expect(result.output).toContain(`ok   ${name}: ${check}`);
        }
      }
    },
    20 * 60_000,
  );
});

/** Names of the workspace's packages that are not private. */
function readdirPublishable(): string[] {
  return readdirSync(join(root, 'packages'))
    .map((folder) => join(root, 'packages', folder, 'package.json'))
    .filter((path) => existsSync(path))
    .map((path) => JSON.parse(readFileSync(path, 'utf8')) as { name: string; private?: boolean })
    .filter((manifest) => !manifest.private)
    .map((manifest) => manifest.name);
}
