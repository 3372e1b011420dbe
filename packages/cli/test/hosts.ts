// Helpers of the tests of several hosts (not a test file itself): one PostgreSQL profile whose
// daemons run as different hosts (`AIIDA_HOSTNAME`), each host with an AIIDA_PATH of its own or
// sharing one, driven through the built bin.
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { createProfile, getConfigFilePath, type Profile } from '@aiida/config';
import type { TestDatabase } from '../../../tests/support/postgres.js';
import { TEST_OPTIONS } from '../../../tests/support/test-profile.js';
import { type CliResult, type CliSandbox, shown } from './cli.js';

/** Name of the profile the helpers create and run. */
export const HOSTS_PROFILE = 'hosts';

/** One simulated host: a sandbox (its AIIDA_PATH) and its host name. */
export interface Host {
  name: string;
  sandbox: CliSandbox;
  env: NodeJS.ProcessEnv;
}

/** The host `name`, with its home in `sandbox`. */
export function simulatedHost(name: string, sandbox: CliSandbox): Host {
  return { name, sandbox, env: { AIIDA_HOSTNAME: name } };
}

/** What `aiida daemon status --json` prints (the parts these tests read). */
export interface StatusJson {
  running: boolean;
  status: { pid: number; hostname: string; workers: { pid: number | null }[] } | null;
}

/** The profile {@link HOSTS_PROFILE} on `db`, with the test timings, in `sandbox`. */
export function makeHostsProfile(sandbox: CliSandbox, db: TestDatabase): Profile {
  return createProfile(
    {
      name: HOSTS_PROFILE,
      options: TEST_OPTIONS,
      storage: db.storage,
      pluginBaseDir: sandbox.aiidaPath,
      setDefault: true,
    },
    { aiidaPath: sandbox.aiidaPath },
  );
}

/** The same profile (same uuid, database and queues) in another AIIDA_PATH: a second home. */
export function copyConfig(from: CliSandbox, to: CliSandbox): void {
  const target = getConfigFilePath(to.aiidaPath);
  mkdirSync(join(target, '..'), { recursive: true });
  copyFileSync(getConfigFilePath(from.aiidaPath), target);
}

/** Runs `aiida -p hosts ...args` as `host`. */
export async function aiidaOn(host: Host, args: string[], timeout = 60): Promise<CliResult> {
  return host.sandbox.run(['-p', HOSTS_PROFILE, ...args], { env: host.env, timeout });
}

/**
 * Starts a daemon of 2 workers on `host` and returns its pids (also pushed onto `started`, for the
 * test to stop by pid whatever happens).
 */
export async function startHostDaemon(
  host: Host,
  started: number[],
): Promise<{ pid: number; workerPids: number[] }> {
  const start = await aiidaOn(host, ['daemon', 'start', '2'], 120);
  if (start.code !== 0) throw new Error(`daemon start on ${host.name} failed\n${shown(start)}`);
  const status = JSON.parse(
    (await aiidaOn(host, ['daemon', 'status', '--json'])).stdout,
  ) as StatusJson;
  if (!status.status) throw new Error(`no status of ${host.name}'s daemon`);
  const workerPids = status.status.workers.map((w) => w.pid).filter((p): p is number => p !== null);
  started.push(status.status.pid, ...workerPids);
  expect(status.status.hostname).toBe(host.name);
  expect(workerPids).toHaveLength(2);
  return { pid: status.status.pid, workerPids };
}
