// Helpers of the end-to-end tests (not a test file itself): a throwaway profile with the test
// plugin, the real daemon through DaemonClient, an engine connected to the real RabbitMQ, the
// bodies' event log, and a clean-up that stops by pid and deletes the profile's queues.
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { RabbitBroker } from '@aiida/broker';
import type { ProcessControlBackend, PsqlStorageConfig } from '@aiida/config';
import { DaemonClient } from '@aiida/daemon-client';
import { type Engine, openEngine, type ProcessRecord, silentLogger } from '@aiida/engine';
import type * as RabbitClient from 'rabbitmq-client';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { childPids, isAlive, stopPid } from '../support/processes.js';
import { createTestProfile, type TestProfile, withLogTails } from '../support/test-profile.js';
import { waitFor } from '../support/wait-for.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const FIXTURES = join(HERE, 'fixtures');

/**
 * The plain `rabbitmq-client` library (for messages published by hand and for proving broker
 * settings), resolved through `@aiida/broker`, whose dependency it is.
 */
export function rabbitmqClient(): typeof RabbitClient {
  const require = createRequire(join(HERE, '../../packages/broker/package.json'));
  return require('rabbitmq-client') as typeof RabbitClient;
}

/** The plugin spec every e2e profile lists (copied into the test's AIIDA_PATH). */
export const TEST_PLUGIN = './test-plugin.mjs';

/** One line of the bodies' event log (see fixtures/test-plugin.mjs). */
export interface BodyEvent {
  event: 'start' | 'end' | 'step';
  pk: number;
  attempt: number;
  epoch: number;
  pid: number;
  t: number;
  step?: string;
}

/** An end-to-end test's world. */
export interface E2E {
  tp: TestProfile;
  client: DaemonClient;
  /** The profile's RabbitMQ broker, connected; undefined for a `core.store` profile. */
  broker: RabbitBroker | undefined;
  engine: Engine;
  /** Path of the bodies' event log. */
  eventsFile: string;
  /** Parsed lines of the event log so far. */
  events(): BodyEvent[];
  /** Every row of the store, by pk. */
  rows(): Promise<Map<number, ProcessRecord>>;
  /** Pids of the daemon's supervisor and workers now (for the final check). */
  daemonPids(): number[];
  /** Stops the daemon (and anything of it left) by pid, deletes the queues, removes the folder. */
  cleanup(): Promise<void>;
}

/**
 * The transport of the end-to-end tests that do not choose one: `AIIDA_E2E_TRANSPORT`
 * (`core.rabbitmq` or `core.store`), else `core.rabbitmq`. One suite runs on every transport by
 * running it again with the variable set.
 */
export function e2eTransport(): ProcessControlBackend {
  // biome-ignore lint/suspicious/noUndeclaredEnvVars: set by scripts/run-tests.mjs per layer
  const chosen = process.env.AIIDA_E2E_TRANSPORT;
  if (chosen === undefined || chosen === '') return 'core.rabbitmq';
  if (chosen !== 'core.rabbitmq' && chosen !== 'core.store') {
    throw new Error(`AIIDA_E2E_TRANSPORT must be core.rabbitmq or core.store, not ${chosen}`);
  }
  return chosen;
}

/** The stores the end-to-end suite runs on. */
export type E2EStore = 'core.sqlite' | 'core.psql';

/**
 * The store of the end-to-end tests that do not choose one: `AIIDA_E2E_STORE` (`core.sqlite` or
 * `core.psql`), else `core.sqlite`. With `core.psql` each profile gets a fresh test database
 * (tests/support/postgres.ts), dropped by the clean-up. With {@link e2eTransport}, one suite runs
 * on every transport × store pair.
 */
export function e2eStore(): E2EStore {
  // biome-ignore lint/suspicious/noUndeclaredEnvVars: set by scripts/run-tests.mjs per layer
  const chosen = process.env.AIIDA_E2E_STORE;
  if (chosen === undefined || chosen === '') return 'core.sqlite';
  if (chosen !== 'core.sqlite' && chosen !== 'core.psql') {
    throw new Error(`AIIDA_E2E_STORE must be core.sqlite or core.psql, not ${chosen}`);
  }
  return chosen;
}

/**
 * A temporary profile (own AIIDA_PATH, own broker prefix) with the test timings, the plugins
 * given (the test plugin first), an engine on its store connected to RabbitMQ (for a
 * `core.store` profile: the engine `openEngine` gives it, no broker), and a DaemonClient (not
 * started). `env` goes to the daemon (supervisor and workers).
 */
export async function setupE2E(init: {
  name: string;
  options?: Record<string, unknown>;
  plugins?: string[];
  env?: NodeJS.ProcessEnv;
  /**
   * A `core.psql` store on a database the caller owns; default: {@link e2eStore} (SQLite, or a
   * fresh test database that the clean-up drops).
   */
  storage?: { backend: 'core.psql'; config: PsqlStorageConfig };
  /** @default {@link e2eTransport} */
  processControl?: ProcessControlBackend;
  /** An existing AIIDA_PATH to add the profile to. @default a new temporary folder */
  aiidaPath?: string;
}): Promise<E2E> {
  const plugins = init.plugins ?? [TEST_PLUGIN];
  // A database of our own when the suite runs on PostgreSQL and the test chose no store.
  const ownDb: TestDatabase | undefined =
    init.storage === undefined && e2eStore() === 'core.psql'
      ? await createTestDatabase()
      : undefined;
  try {
    return await setupOn(init, plugins, init.storage ?? ownDb?.storage, ownDb);
  } catch (error) {
    await ownDb?.drop().catch(() => {});
    throw error;
  }
}

async function setupOn(
  init: Parameters<typeof setupE2E>[0],
  plugins: string[],
  storage: { backend: 'core.psql'; config: PsqlStorageConfig } | undefined,
  ownDb: TestDatabase | undefined,
): Promise<E2E> {
  const tp = createTestProfile({
    name: init.name,
    options: { 'engine.plugins': plugins, ...init.options },
    storage,
    processControl: init.processControl ?? e2eTransport(),
    aiidaPath: init.aiidaPath,
  });
  for (const file of ['test-plugin.mjs', 'broken-plugin.mjs', 'fragile-plugin.mjs']) {
    copyFileSync(join(FIXTURES, file), join(tp.aiidaPath, file));
  }
  const eventsFile = join(tp.aiidaPath, 'events.log');
  const fromStore = tp.profile.broker.backend === 'core.store';
  const broker = fromStore
    ? undefined
    : new RabbitBroker({ profile: tp.profile, logger: quietBrokerLogger });
  await broker?.connect({ timeout: 10 });
  const engine = await openEngine(
    tp.profile,
    broker
      ? { dispatcher: broker, control: broker, logger: silentLogger }
      : { logger: silentLogger },
  );
  const client = new DaemonClient(tp.profile, init.env ? { env: init.env } : {});
  const seen = new Set<number>();
  const remember = () => {
    try {
      const pid = client.getDaemonPid();
      if (pid) {
        seen.add(pid);
        for (const child of childPids(pid)) seen.add(child);
      }
    } catch {}
  };
  return {
    tp,
    client,
    broker,
    engine,
    eventsFile,
    events: () => readEvents(eventsFile),
    rows: async () => new Map((await engine.listProcesses({})).map((r) => [r.pk, r])),
    daemonPids: () => {
      remember();
      return [...seen];
    },
    cleanup: async () => {
      remember();
      try {
        if (client.isDaemonRunning) await client.stopDaemon({ timeout: 20 });
      } catch {}
      for (const pid of seen) await stopPid(pid, 3);
      await engine.close().catch(() => {});
      await broker?.deleteTopology().catch(() => {});
      await broker?.close({ timeout: 3 });
      tp.remove();
      await ownDb?.drop();
    },
  };
}

/** Parses the bodies' event log (missing file: no events). */
export function readEvents(file: string): BodyEvent[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as BodyEvent);
}

/** Groups `items` by a key. */
export function groupBy<T, K>(items: readonly T[], key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const list = groups.get(k);
    if (list) list.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}

/** Runs `body`; on failure, adds the tail of the daemon's logs to the error. */
export function withLogs<T>(e2e: E2E, body: () => Promise<T>, lines = 40): Promise<T> {
  return withLogTails(() => e2e.tp.logTails(lines), body);
}

/**
 * Waits until `count` processes in the store are terminal (finished, excepted or killed), polling
 * every `interval` seconds for at most `timeout` seconds; `what` names them in the failure.
 */
export async function waitForTerminal(
  engine: Engine,
  count: number,
  options: { timeout: number; interval: number; what: string },
): Promise<void> {
  await waitFor(async () => {
    const done = await engine.listProcesses({ states: ['finished', 'excepted', 'killed'] });
    if (done.length < count) throw new Error(`${done.length} of ${count} terminal`);
    return true;
  }, options);
}

/**
 * Rows that did not end as an addition or `multiply_add` should: finished, exit status 0, no owner,
 * and the right sum or result. Each as `pk: state outputs`, for an assertion that shows them.
 */
export function wrongArithmeticResults(rows: Iterable<ProcessRecord>): string[] {
  return [...rows]
    .filter((row) => {
      if (row.state !== 'finished' || row.exitStatus !== 0 || row.owner !== null) return true;
      if (row.type === 'core.arithmetic.add') {
        const { x, y } = row.inputs as { x: number; y: number };
        return (row.outputs as { sum?: number } | null)?.sum !== x + y;
      }
      const { x, y, z } = row.inputs as { x: number; y: number; z: number };
      return (row.outputs as { result?: number } | null)?.result !== x * y + z;
    })
    .map((r) => `${r.pk}: ${r.state} ${JSON.stringify(r.outputs)}`);
}

/** All workers of the daemon ready, with pids. */
export async function readyWorkerPids(client: DaemonClient): Promise<number[]> {
  const status = await client.getStatus();
  return status.workers
    .filter((w) => w.state === 'ready' && w.pid !== null)
    .map((w) => w.pid as number);
}

/** True when none of `pids` is alive. */
export function allGone(pids: readonly number[]): boolean {
  return pids.every((pid) => !isAlive(pid));
}

/** `rabbitmqctl` with arguments; resolves with stdout. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)('rabbitmqctl', args, { timeout: 60_000 });
  return stdout;
}

/** A seeded pseudo-random generator (mulberry32), so a run's choices can be replayed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const quietBrokerLogger = { info: () => {}, warn: () => {}, error: () => {} };

/** A RabbitMQ application environment value as `rabbitmqctl eval` prints it (`{ok,V}` or `undefined`). */
export type RabbitEnvValue = { set: true; value: string } | { set: false };

/** Reads `application:get_env(rabbit, key)`. */
export async function readRabbitEnv(key: string): Promise<RabbitEnvValue> {
  const out = (await rabbitmqctl('eval', `application:get_env(rabbit, ${key}).`)).trim();
  const match = /^\{ok,(.*)\}$/s.exec(out);
  if (match) return { set: true, value: match[1]!.trim() };
  if (out === 'undefined') return { set: false };
  throw new Error(`unexpected answer of rabbitmqctl for ${key}: ${out}`);
}

/** Sets `application:set_env(rabbit, key, value)` (value is Erlang syntax, e.g. `5000`). */
export async function setRabbitEnv(key: string, value: string): Promise<void> {
  const out = (await rabbitmqctl('eval', `application:set_env(rabbit, ${key}, ${value}).`)).trim();
  if (out !== 'ok') throw new Error(`rabbitmqctl could not set ${key}: ${out}`);
}

/** Puts back a value read by {@link readRabbitEnv}. */
export async function restoreRabbitEnv(key: string, previous: RabbitEnvValue): Promise<void> {
  if (previous.set) await setRabbitEnv(key, previous.value);
  else await rabbitmqctl('eval', `application:unset_env(rabbit, ${key}).`);
}
