// What each command loads: `aiida --version` and `aiida daemon status` must not import the
// packages they don't use (the broker client, the store drivers, the engine, the supervisor's own
// code), so that they start at once. Runs the built bin under a module-recording hook
// (fixtures/record-modules.mjs) and reads which packages the loaded URLs belong to.
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIN, type CliResult, CliSandbox, collect, prestoWithTestOptions, shown } from './cli.js';

const here = dirname(fileURLToPath(import.meta.url));
const RECORDER = join(here, 'fixtures', 'record-modules.mjs');
const PROFILE = 'lazy';

/**
 * The package a module URL belongs to: the last `node_modules/<name>` of its path (an installed
 * copy), else `@aiida/<folder>` for this workspace's `packages/<folder>/dist`, else the file.
 */
function packageOf(url: string): string {
  const path = url.startsWith('file:') ? fileURLToPath(url) : url;
  const installed = [...path.matchAll(/node_modules\/((?:@[^/]+\/)?[^/.][^/]*)\//g)].at(-1);
  if (installed) return installed[1]!;
  const workspace = /\/packages\/([^/]+)\/dist\//.exec(path);
  return workspace ? `@aiida/${workspace[1]}` : path;
}

/** Packages no command that only reads the daemon's state (or prints the version) may load. */
const HEAVY = [
  'rabbitmq-client',
  'better-sqlite3',
  'pg',
  'pidusage',
  'rotating-file-stream',
  // The logger: a command that logs nothing doesn't load it (required on first use).
  'pino',
  '@aiida/engine',
  '@aiida/broker',
  '@aiida/worker',
  '@aiida/web',
];

describe('aiida loads only what a command uses', () => {
  let sandbox: CliSandbox;
  let runs = 0;

  /** Runs `aiida ...args` under the recorder: its result and the modules it loaded (URLs). */
  async function recorded(args: string[]): Promise<{ result: CliResult; modules: string[] }> {
    const log = join(sandbox.aiidaPath, `modules-${++runs}.txt`);
    const child = spawn(process.execPath, ['--import', RECORDER, BIN, ...args], {
      env: { ...sandbox.env, AIIDA_TEST_MODULE_LOG: log },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const result = await collect(child, 60, args);
    const modules = readFileSync(log, 'utf8').trim().split('\n');
    rmSync(log);
    return { result, modules };
  }

  const packagesOf = (modules: string[]) => new Set(modules.map(packageOf));
  const heavyIn = (modules: string[]) => HEAVY.filter((name) => packagesOf(modules).has(name));
  /** The supervisor program's own modules (not the state-file helpers a client reads). */
  const supervisorCode = (modules: string[]) =>
    modules.filter((url) =>
      /daemon-supervisor\/dist\/(supervisor|worker-pool|worker-process|control-server|log)\.js$/.test(
        url,
      ),
    );

  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-lazy-');
    await prestoWithTestOptions(sandbox, PROFILE);
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it('the recorder sees what a command loads: `process list` loads the engine and SQLite', async () => {
    // Proves the hook bites: without it the assertions below could pass on an empty list.
    const { result, modules } = await recorded(['-p', PROFILE, 'process', 'list']);
    expect(result.code).toBe(0);
    const loaded = packagesOf(modules);
    expect(loaded.has('@aiida/engine')).toBe(true);
    expect(loaded.has('better-sqlite3')).toBe(true);
    expect(loaded.has('@aiida/cli')).toBe(true);
  });

  it('`aiida --version` loads neither commander nor zod nor any package of the daemon', async () => {
    for (const flag of ['--version', '-V']) {
      const { result, modules } = await recorded([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
      expect([...packagesOf(modules)].sort()).toEqual(['@aiida/cli']);
    }
  });

  it('`aiida daemon status` with no daemon running loads none of the heavy packages', async () => {
    const { result, modules } = await recorded(['-p', PROFILE, 'daemon', 'status']);
    expect(result.code).toBe(3);
    expect(result.stderr).toContain('is not running');
    expect(heavyIn(modules)).toEqual([]);
    expect(supervisorCode(modules)).toEqual([]);
    expect(packagesOf(modules).has('@aiida/daemon-client')).toBe(true);
    // Of the command modules, only the `daemon` group's.
    const commands = modules
      .map((url) => /\/cli\/dist\/commands\/([a-z-]+)\.js$/.exec(url)?.[1])
      .filter((name) => name !== undefined);
    expect(commands).toEqual(['daemon']);
  });

  it('`aiida daemon status` of a running daemon loads none of the heavy packages', async () => {
    const start = await sandbox.run(['-p', PROFILE, 'daemon', 'start', '1']);
    expect({ code: start.code, out: shown(start) }).toEqual({ code: 0, out: shown(start) });
    try {
      for (const args of [
        ['-p', PROFILE, 'daemon', 'status'],
        ['-p', PROFILE, 'daemon', 'status', '--json'],
      ]) {
        const { result, modules } = await recorded(args);
        expect({ code: result.code, out: shown(result) }).toEqual({ code: 0, out: shown(result) });
        expect(result.stdout).toMatch(/ready|"state": ?"ready"/);
        expect(heavyIn(modules)).toEqual([]);
        expect(supervisorCode(modules)).toEqual([]);
      }
    } finally {
      await sandbox.run(['-p', PROFILE, 'daemon', 'stop']);
    }
  });
});
