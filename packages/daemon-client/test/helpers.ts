// Helpers of the daemon-client integration tests (not a test file itself).
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { getHostname, type Profile } from '@aiida/config';
import { isAlive, pidsOfThisRun, stopPid } from '../../../tests/support/processes.js';
import { type TestProfile, withLogTails } from '../../../tests/support/test-profile.js';
import { DaemonClient } from '../src/index.js';

export {
  createTestProfile,
  logTails,
  TEST_OPTIONS,
  type TestProfile,
} from '../../../tests/support/test-profile.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The fake worker program (see tests/support/fake-worker.mjs). */
export const FAKE_WORKER = join(here, '../../../tests/support/fake-worker.mjs');

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

/**
 * Writes a daemon state file for `client`'s profile: by default a stale one, whose process is gone
 * (pid 2^22 + 1 is above Linux's pid limit, on another boot) of this host; `fields` replace any
 * of its fields.
 */
export function writeDaemonState(client: DaemonClient, fields: Record<string, unknown> = {}): void {
  mkdirSync(client.daemonDir, { recursive: true });
  writeFileSync(
    client.stateFilePath,
    JSON.stringify({
      v: 1,
      pid: 4194305,
      hostname: getHostname(),
      bootId: 'not-this-boot',
      startTime: 1,
      socketPath: `${client.daemonDir}/daemon.sock`,
      protocolVersion: 1,
      profile: client.profile.name,
      startedAt: new Date().toISOString(),
      ...fields,
    }),
  );
}

/** Runs `body`; on failure adds the tails of the daemon's logs to the error. */
export function withLogs<T>(testProfile: TestProfile, body: () => Promise<T>): Promise<T> {
  return withLogTails(() => testProfile.logTails(40), body);
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
