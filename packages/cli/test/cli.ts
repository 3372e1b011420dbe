// Helpers of the cli tests (not a test file itself): run the BUILT `aiida` bin as a subprocess in a
// throwaway AIIDA_PATH, and clean up what it started.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getProfile, listProfiles, type Profile } from '@aiida/config';
import { deleteProfileTopology } from '../../../tests/support/broker-cleanup.js';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import { logTails } from '../../../tests/support/test-profile.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The built bin; tests run what users run. `pnpm build` first. */
export const BIN = join(here, '..', 'dist', 'bin.js');

/** What a run of the bin gave. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A throwaway AIIDA_PATH and the environment to run the bin in it. */
export class CliSandbox {
  readonly aiidaPath: string;
  readonly env: NodeJS.ProcessEnv;
  private readonly remembered = new Map<string, Profile>();

  constructor(prefix = 'aiida-cli-test-', env: NodeJS.ProcessEnv = {}) {
    if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`pnpm build\` first`);
    this.aiidaPath = mkdtempSync(join(tmpdir(), prefix));
    const base: NodeJS.ProcessEnv = { ...process.env };
    for (const name of Object.keys(base)) {
      if (name.startsWith('AIIDA_BROKER_') || name === 'AIIDA_PROFILE') delete base[name];
    }
    delete base.FORCE_COLOR;
    delete base.NO_COLOR;
    // AIIDA_TEST_RUN_ID is inherited from jest's environment: every process the bin starts
    // (supervisor, workers) carries it, so the run's teardown can find strays.
    this.env = { ...base, AIIDA_PATH: this.aiidaPath, ...env };
  }

  /** Runs `aiida ...args` to the end (or kills it after `timeout` seconds and says so). */
  run(
    args: string[],
    options: { timeout?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<CliResult> {
    const child = this.spawn(args, options.env);
    return collect(child, options.timeout ?? 60, args);
  }

  /** Starts `aiida ...args` without waiting (for `--foreground`, `-f`, `worker`). */
  spawn(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
    return spawn(process.execPath, [BIN, ...args], {
      env: { ...this.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /**
   * Stops every daemon of this sandbox: `aiida daemon stop --all`, then by pid whatever
   * supervisor `daemon status --json` named, then deletes the profiles' broker topology and the
   * folder.
   */
  async cleanUp(supervisorPids: number[] = []): Promise<void> {
    const pids = [...supervisorPids];
    for (const profile of this.profiles()) {
      const status = await this.run(['-p', profile, 'daemon', 'status', '--json'], { timeout: 20 });
      try {
        const parsed = JSON.parse(status.stdout) as { status: { pid: number } | null };
        if (parsed.status) pids.push(parsed.status.pid);
      } catch {}
    }
    await this.run(['daemon', 'stop', '--all'], { timeout: 60 });
    await Promise.all(pids.filter(isAlive).map((pid) => stopPid(pid, 10)));
    for (const name of this.profiles()) this.remember(name);
    for (const profile of this.remembered.values()) await deleteProfileTopology(profile);
    rmSync(this.aiidaPath, { recursive: true, force: true });
  }

  /** Keeps a profile's settings, so that cleanUp deletes its broker queues after it is deleted. */
  remember(name: string): void {
    this.remembered.set(name, getProfile(name, { aiidaPath: this.aiidaPath }));
  }

  /** Names of the profiles in this sandbox's config. */
  profiles(): string[] {
    try {
      return listProfiles({ aiidaPath: this.aiidaPath }).map((p) => p.name);
    } catch {
      return [];
    }
  }

  /** Tails of the daemon logs of a profile, for a failure message. */
  logs(profile: string): string {
    try {
      return logTails(getProfile(profile, { aiidaPath: this.aiidaPath }), 40);
    } catch (error) {
      return `(no logs: ${(error as Error).message})`;
    }
  }
}

/** Waits for a child to end, collecting its output; kills it after `timeout` seconds. */
export function collect(
  child: ChildProcess,
  timeout: number,
  args: string[] = [],
): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `aiida ${args.join(' ')} did not end within ${timeout} s\nstdout:\n${stdout}\nstderr:\n${stderr}`,
        ),
      );
    }, timeout * 1000);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Waits until `child`'s stdout contains `text`, failing after `timeout` seconds. */
export function waitForOutput(
  child: ChildProcess,
  text: string | RegExp,
  timeout = 30,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const matches = () => (typeof text === 'string' ? seen.includes(text) : text.test(seen));
    const timer = setTimeout(
      () =>
        reject(new Error(`no ${String(text)} in the output within ${timeout} s; saw:\n${seen}`)),
      timeout * 1000,
    );
    const onData = (chunk: Buffer | string) => {
      seen += chunk.toString();
      if (matches()) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stderr?.off('data', onData);
        resolve(seen);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  });
}

/** A message that shows what a failed run printed. */
export function shown(result: CliResult): string {
  return `exit ${result.code}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`;
}

/** Short, safe daemon timings for tests on 2 cores (see TESTING.md), as `config set` calls. */
export const TEST_OPTION_VALUES: [string, string][] = [
  ['daemon.graceful_timeout', '3'],
  ['daemon.worker_heartbeat_interval', '0.5'],
  ['daemon.lease_timeout', '5'],
  ['daemon.timeout', '10'],
];

/** `aiida presto` in the sandbox, then the test timings; fails the test if presto fails. */
export async function prestoWithTestOptions(sandbox: CliSandbox, name: string): Promise<void> {
  const presto = await sandbox.run(['-p', name, 'presto']);
  if (presto.code !== 0) throw new Error(`presto failed\n${shown(presto)}`);
  for (const [option, value] of TEST_OPTION_VALUES) {
    const set = await sandbox.run(['-p', name, 'config', 'set', option, value]);
    if (set.code !== 0) throw new Error(`config set ${option} failed\n${shown(set)}`);
  }
}

/** A port nobody listens on now (for `aiida web --port`). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
