// Helpers of the daemon-client integration tests (not a test file itself).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createProfile, getDaemonLogDir, type Profile } from '@aiida/config';
import { isAlive, pidsOfThisRun, stopPid } from '../../../tests/support/processes.js';
import { DaemonClient } from '../src/index.js';

// createTestProfile, TEST_OPTIONS and logTails mirror tests/support/test-profile.ts, which can't
// be imported here: it imports @aiida/config from outside any package, so `pnpm typecheck` of
// this package (tests included) could not resolve it.

/** Short, safe timings for tests on a 2-core machine (see TESTING.md). */
export const TEST_OPTIONS: Record<string, unknown> = {
  'daemon.graceful_timeout': 3,
  'daemon.worker_heartbeat_interval': 0.5,
  'daemon.lease_timeout': 5,
  'daemon.timeout': 10,
};

/** A throwaway AIIDA_PATH with one profile of its own (hence its own broker prefix). */
export interface TestProfile {
  aiidaPath: string;
  profile: Profile;
  /** The tail of the daemon's logs (for a failing test). */
  logTails(lines?: number): string;
  /** Removes the folder. Stop daemons first. */
  remove(): void;
}

/**
 * Creates a temporary AIIDA_PATH and a default profile in it, with test timings and any `options`
 * given. Sets `process.env.AIIDA_PATH` so code that reads the environment finds it too.
 */
export function createTestProfile(
  init: {
    name?: string;
    options?: Record<string, unknown>;
    broker?: Partial<Profile['broker']['config']>;
  } = {},
): TestProfile {
  const aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-test-'));
  process.env.AIIDA_PATH = aiidaPath;
  const profile = createProfile(
    {
      name: init.name ?? 'test',
      options: { ...TEST_OPTIONS, ...init.options },
      broker: init.broker,
      pluginBaseDir: aiidaPath,
      setDefault: true,
    },
    { aiidaPath },
  );
  return {
    aiidaPath,
    profile,
    logTails: (lines = 30) => logTails(profile, lines),
    remove: () => rmSync(aiidaPath, { recursive: true, force: true }),
  };
}

/** The last lines of every log file of the profile's daemon, with headers. */
export function logTails(profile: Profile, lines = 30): string {
  const dir = getDaemonLogDir(profile);
  if (!existsSync(dir)) return `(no log folder at ${dir})`;
  const out: string[] = [];
  for (const file of readdirSync(dir).sort()) {
    const text = readFileSync(join(dir, file), 'utf8').trimEnd().split('\n');
    out.push(`--- ${file} (last ${lines} lines) ---`, ...text.slice(-lines));
  }
  return out.join('\n');
}

const here = dirname(fileURLToPath(import.meta.url));

/** The fake worker program (see fixtures/fake-worker.mjs). */
export const FAKE_WORKER = join(here, 'fixtures', 'fake-worker.mjs');

function readEnviron(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0');
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** True when `pid` descends from `ancestor`. */
export function descendsFrom(pid: number, ancestor: number): boolean {
  for (let current = parentOf(pid), hops = 0; current && hops < 64; hops++) {
    if (current === ancestor) return true;
    current = parentOf(current);
  }
  return false;
}

/**
 * Processes of this test run that this test file started: they carry the run marker and either
 * descend from this jest worker or were given this file's AIIDA_PATH (daemons and their workers,
 * even once orphaned). Jest's own processes carry the marker too, but neither of the two.
 */
export function processesOfThisFile(aiidaPath: string): number[] {
  return pidsOfThisRun().filter((pid) => {
    if (pid === process.pid) return false;
    if (descendsFrom(pid, process.pid)) return true;
    return readEnviron(pid)?.includes(`AIIDA_PATH=${aiidaPath}`) ?? false;
  });
}

/** The cmdline of a process, for messages. */
export function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').trim();
  } catch {
    return '(gone)';
  }
}

/**
 * After a test: stops the profile's daemon if it still runs, then fails if any process this file
 * started is still there (killing those by pid first, so the next test starts clean).
 */
export async function expectNothingLeft(profile: Profile): Promise<void> {
  const client = new DaemonClient(profile);
  if (client.isDaemonRunning) {
    try {
      await client.stopDaemon({ wait: true });
    } catch {}
  }
  // Orphaned workers drain for at most 5 s after their supervisor vanished.
  const deadline = Date.now() + 8000;
  let left = processesOfThisFile(profile.aiidaPath);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = processesOfThisFile(profile.aiidaPath);
  }
  if (left.length === 0) return;
  const described = left.map((pid) => `${pid} (${commandOf(pid)})`);
  await Promise.all(left.map((pid) => stopPid(pid, 2)));
  throw new Error(`processes left after the test: ${described.join(', ')}`);
}

/** Runs `body`; on failure adds the tails of the daemon's logs to the error. */
export async function withLogs<T>(testProfile: TestProfile, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof Error) {
      error.message = `${error.message}\n\n${testProfile.logTails(40)}`;
    }
    throw error;
  }
}

/** Deletes the profile's queues and exchanges: through @aiida/broker, else `rabbitmqctl`. */
export async function cleanBrokerTopology(profile: Profile): Promise<void> {
  const specifier = '@aiida/broker';
  try {
    const { RabbitBroker } = (await import(specifier)) as {
      RabbitBroker: new (opts: {
        profile: Profile;
      }) => {
        connect(opts?: { timeout?: number }): Promise<void>;
        deleteTopology(): Promise<void>;
        close(opts?: { timeout?: number }): Promise<void>;
      };
    };
    const broker = new RabbitBroker({ profile });
    try {
      await broker.connect({ timeout: 5 });
      await broker.deleteTopology();
    } finally {
      await broker.close({ timeout: 5 });
    }
    return;
  } catch {
    // Fall back to the command line below.
  }
  const prefix = `aiida-${profile.uuid}`;
  const run = promisify(execFile);
  for (const queue of [`${prefix}.process.queue`, `${prefix}.process.dlq`]) {
    try {
      await run('rabbitmqctl', ['delete_queue', queue], { timeout: 30_000 });
    } catch {}
  }
}

/** Pids of the workers in a status, that have one. */
export function workerPids(workers: readonly { pid: number | null }[]): number[] {
  return workers.map((w) => w.pid).filter((pid): pid is number => pid !== null);
}

/** Every pid in `pids` has exited (zombies count as exited). */
export function allGone(pids: readonly number[]): boolean {
  return pids.every((pid) => !isAlive(pid));
}

/** CPU time (user + system) of a process in clock ticks, from /proc. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Files in the profile's daemon folder, with their contents (to prove a read changed nothing). */
export function snapshotDaemonDir(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    try {
      out[name] = readFileSync(join(dir, name), 'utf8');
    } catch {
      out[name] = '(not a file)';
    }
  }
  return out;
}
