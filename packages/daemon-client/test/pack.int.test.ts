// Embedded as users will embed it: the packages packed with `pnpm pack`, installed with npm into an
// empty folder outside the workspace, and the seed's example run there against them. Needs
// `pnpm build` first (tarballs hold `dist`), the npm registry for third-party dependencies, and
// a C++ toolchain with Node headers for better-sqlite3 (npm's `nodedir`).
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { getProfile } from '@aiida/config';
import { cleanBrokerTopology, expectNothingLeft, processesOfThisFile } from './helpers.js';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** daemon-client and every workspace package it needs at run time, down the dependency chain. */
const PACKAGES = [
  'ipc',
  'config',
  'broker',
  'engine',
  'worker',
  'daemon-supervisor',
  'daemon-client',
];

interface Manifest {
  name: string;
  version: string;
  main?: string;
  types?: string;
  bin?: string | Record<string, string>;
  exports?: Record<string, string | Record<string, string>>;
  dependencies?: Record<string, string>;
}

/** Environment for npm: ours without npm_* variables that npx/pnpm set, plus Node's headers. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^npm_/i.test(key) || /^npm_config_nodedir$/i.test(key)) env[key] = value;
  }
  if (!env.npm_config_nodedir) {
    let nodedir = '';
    try {
      nodedir = execFileSync('npm', ['config', 'get', 'nodedir'], { env, encoding: 'utf8' }).trim();
    } catch {}
    if (nodedir && nodedir !== 'undefined' && nodedir !== 'null') env.npm_config_nodedir = nodedir;
  }
  // node-gyp builds better-sqlite3 with every core.
  env.JOBS = 'max';
  return env;
}

/** Paths a manifest points at (main, types, bins, exports), relative to the package. */
function pointedFiles(manifest: Manifest): string[] {
  const paths = new Set<string>();
  if (manifest.main) paths.add(manifest.main);
  if (manifest.types) paths.add(manifest.types);
  if (typeof manifest.bin === 'string') paths.add(manifest.bin);
  else for (const bin of Object.values(manifest.bin ?? {})) paths.add(bin);
  for (const target of Object.values(manifest.exports ?? {})) {
    if (typeof target === 'string') paths.add(target);
    else for (const path of Object.values(target)) paths.add(path);
  }
  return [...paths].map((path) => path.replace(/^\.\//, ''));
}

describe('the packed packages, installed with npm outside the workspace', () => {
  let work: string;
  const aiidaPathOf = () => join(work, 'aiida');

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'aiida-pack-'));
  });
  afterAll(async () => {
    try {
      const profile = getProfile('embedded', { aiidaPath: aiidaPathOf() });
      await expectNothingLeft(profile);
      await cleanBrokerTopology(profile);
    } catch {
      // No profile: the script did not get that far; nothing of it can run.
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });

  it(
    'run the seed example',
    async () => {
      expect(relative(root, work).startsWith('..')).toBe(true);
      const tarballs = join(work, 'tarballs');
      mkdirSync(tarballs);
      const manifests = new Map<string, Manifest>();
      const files = new Map<string, string>();
      for (const name of PACKAGES) {
        const dir = join(root, 'packages', name);
        if (!existsSync(join(dir, 'dist', 'index.js'))) {
          throw new Error(`packages/${name}/dist is missing: run \`pnpm build\` first`);
        }
        await run('pnpm', ['pack', '--pack-destination', tarballs], { cwd: dir, timeout: 120_000 });
        const source = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
        const file = join(
          tarballs,
          `${source.name.replace('@', '').replace('/', '-')}-${source.version}.tgz`,
        );
        expect(existsSync(file)).toBe(true);
        files.set(source.name, file);
        const text = execFileSync('tar', ['-xzOf', file, 'package/package.json'], {
          encoding: 'utf8',
        });
        expect(text).not.toContain('workspace:');
        const manifest = JSON.parse(text) as Manifest;
        manifests.set(manifest.name, manifest);
        const listing = execFileSync('tar', ['-tzf', file], { encoding: 'utf8' }).split('\n');
        // The MIT LICENSE (pnpm adds the workspace's) and the sources the source maps point at.
        for (const path of ['LICENSE', 'src/index.ts']) {
          expect({ pkg: manifest.name, path, packed: listing.includes(`package/${path}`) }).toEqual(
            { pkg: manifest.name, path, packed: true },
          );
        }
        for (const path of pointedFiles(manifest)) {
          expect({ pkg: manifest.name, path, packed: listing.includes(`package/${path}`) }).toEqual(
            {
              pkg: manifest.name,
              path,
              packed: true,
            },
          );
        }
      }
      expect(
        execFileSync('tar', ['-tzf', files.get('@aiida/daemon-client') as string], {
          encoding: 'utf8',
        }),
      ).toContain('package/README.md');
      // Every workspace dependency of a packed package is packed too, at a version its range takes.
      for (const manifest of manifests.values()) {
        for (const [dep, range] of Object.entries(manifest.dependencies ?? {})) {
          if (!dep.startsWith('@aiida/')) continue;
          expect({ from: manifest.name, dep, packed: manifests.has(dep) }).toEqual({
            from: manifest.name,
            dep,
            packed: true,
          });
          expect(range).toBe(`^${manifests.get(dep)?.version}`);
        }
      }

      // An empty project of a user: depends on the client (and config, broker for its script);
      // `overrides` pins every @aiida package to its tarball, so nothing comes from the registry.
      const app = join(work, 'app');
      mkdirSync(app);
      const direct = ['@aiida/daemon-client', '@aiida/config', '@aiida/broker'];
      const spec = (name: string) => `file:${files.get(name)}`;
      const overrides: Record<string, string> = {};
      for (const name of files.keys())
        overrides[name] = direct.includes(name) ? `$${name}` : spec(name);
      writeFileSync(
        join(app, 'package.json'),
        JSON.stringify(
          {
            name: 'embed-check',
            private: true,
            type: 'module',
            dependencies: Object.fromEntries(direct.map((name) => [name, spec(name)])),
            overrides,
          },
          null,
          2,
        ),
      );
      await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
        cwd: app,
        env: npmEnv(),
        timeout: 12 * 60_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      for (const name of PACKAGES) {
        expect(existsSync(join(app, 'node_modules', '@aiida', name, 'package.json'))).toBe(true);
      }

      writeFileSync(
        join(app, 'seed-example.mjs'),
        `// The seed's example, as a user who installed the packages runs it.
import { readFileSync } from 'node:fs';
import { RabbitBroker } from '@aiida/broker';
import { createProfile } from '@aiida/config';
import { getDaemonClient } from '@aiida/daemon-client';

const profile = createProfile({
  name: 'embedded',
  setDefault: true,
  options: { 'daemon.graceful_timeout': 3, 'daemon.worker_heartbeat_interval': 0.5, 'daemon.lease_timeout': 5 },
});
const client = getDaemonClient();
await client.startDaemon();
const running = client.isDaemonRunning;
const status = await client.getStatus();
const command = (pid) => readFileSync('/proc/' + pid + '/cmdline', 'latin1').split('\\0');
const supervisorCommand = command(status.pid);
const workerCommand = command(status.workers[0].pid);
await client.stopDaemon({ wait: true });
const broker = new RabbitBroker({ profile });
await broker.connect({ timeout: 10 });
await broker.deleteTopology();
await broker.close({ timeout: 5 });
console.log(JSON.stringify({
  running,
  runningAfterStop: client.isDaemonRunning,
  workers: status.workers.map((w) => w.state),
  supervisorCommand,
  workerCommand,
}));
`,
      );
      mkdirSync(aiidaPathOf());
      const { stdout } = await run(process.execPath, ['seed-example.mjs'], {
        cwd: app,
        env: { ...npmEnv(), AIIDA_PATH: aiidaPathOf() },
        timeout: 120_000,
      });
      const result = JSON.parse(stdout.trim().split('\n').at(-1) as string);
      expect(result).toMatchObject({ running: true, runningAfterStop: false, workers: ['ready'] });
      // The daemon ran from the installed packages, not from the workspace.
      // (Node's own flags, such as the supervisor's --max-semi-space-size, come before the script.)
      expect(result.supervisorCommand).toContain(
        join(app, 'node_modules', '@aiida', 'daemon-supervisor', 'dist', 'bin.js'),
      );
      expect(result.workerCommand).toContain(
        join(app, 'node_modules', '@aiida', 'worker', 'dist', 'bin.js'),
      );
      expect(processesOfThisFile(aiidaPathOf())).toEqual([]);
    },
    20 * 60_000,
  );
});
