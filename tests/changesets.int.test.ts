// `pnpm version-packages` (changeset version) as a maintainer runs it before a release, on a
// copy of the workspace's manifests and changesets configuration: a changeset that names one
// package bumps every published `@aiida/*` package to one new version (they are versioned
// together), writes their changelogs, consumes the changeset file, keeps `workspace:^` ranges for
// pnpm publish to replace, and leaves the private bench alone.
import {
  cpSync,
  existsSync,
  mkdirSync,
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

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
  dependencies?: Record<string, string>;
}

function run(
  command: string,
  args: string[],
  cwd: string,
): Promise<{ code: number | null; output: string }> {
  // changeset ends by itself; the deadline only bounds a hang.
  return runCollectingOutput(command, args, { cwd, timeoutSeconds: 5 * 60 });
}

const compare = (a: string, b: string) => {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
};

describe('pnpm version-packages (changeset version)', () => {
  let work: string;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'aiida-changesets-test-'));
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  test(
    'bumps every published package together from a changeset naming one, bench left alone',
    async () => {
      // The configuration only: the pending changesets of the repository would bump everything
      // anyway and hide whether one package's changeset moves the others.
      for (const file of ['package.json', 'pnpm-workspace.yaml', '.changeset/config.json']) {
        cpSync(join(root, file), join(work, file), { recursive: true });
      }
      const folders = readdirSync(join(root, 'packages')).filter((f) =>
        existsSync(join(root, 'packages', f, 'package.json')),
      );
      const before = new Map<string, Manifest>();
      for (const folder of folders) {
        mkdirSync(join(work, 'packages', folder), { recursive: true });
        cpSync(
          join(root, 'packages', folder, 'package.json'),
          join(work, 'packages', folder, 'package.json'),
        );
        before.set(
          folder,
          JSON.parse(readFileSync(join(root, 'packages', folder, 'package.json'), 'utf8')),
        );
      }
      const published = folders.filter((f) => !before.get(f)?.private);
      expect(folders).toContain('bench');
      expect(published.length).toBeGreaterThanOrEqual(8);
      writeFileSync(
        join(work, '.changeset', 'test-ipc-fix.md'),
        '---\n"@aiida/ipc": patch\n---\n\nA fix in ipc alone (written by the test).\n',
      );

      const result = await run(join(root, 'node_modules', '.bin', 'changeset'), ['version'], work);
      expect({ code: result.code, output: result.output }).toMatchObject({ code: 0 });

      const after = new Map<string, Manifest>(
        folders.map((f) => [
          f,
          JSON.parse(readFileSync(join(work, 'packages', f, 'package.json'), 'utf8')),
        ]),
      );
      const highest = published
        .map((f) => before.get(f)?.version ?? '0.0.0')
        .sort(compare)
        .at(-1) as string;
      const versions = new Set(published.map((f) => after.get(f)?.version));
      expect(versions.size).toBe(1);
      const version = [...versions][0] as string;
      expect(compare(version, highest)).toBeGreaterThan(0);
      for (const folder of published) {
        const changelog = readFileSync(join(work, 'packages', folder, 'CHANGELOG.md'), 'utf8');
        expect(changelog).toContain(`## ${version}`);
        for (const [dep, range] of Object.entries(after.get(folder)?.dependencies ?? {})) {
          if (dep.startsWith('@aiida/'))
            expect({ dep, range }).toEqual({ dep, range: 'workspace:^' });
        }
      }
      expect(readFileSync(join(work, 'packages', 'ipc', 'CHANGELOG.md'), 'utf8')).toContain(
        'A fix in ipc alone (written by the test).',
      );
      expect(after.get('bench')?.version).toBe(before.get('bench')?.version);
      expect(existsSync(join(work, 'packages', 'bench', 'CHANGELOG.md'))).toBe(false);
      // The changeset was consumed; the folder keeps its config.
      expect(readdirSync(join(work, '.changeset'))).toEqual(['config.json']);
    },
    10 * 60_000,
  );
});
