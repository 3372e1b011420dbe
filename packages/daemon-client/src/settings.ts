import { getOption, type Profile } from '@aiida/config';

/**
 * The options a {@link DaemonClient} works with, read from the profile once, when the client is
 * constructed (as the seed says for `daemon.timeout`). All durations in seconds.
 */
export interface DaemonClientSettings {
  /** `daemon.timeout`: default `timeout` of every method. */
  timeout: number;
  /** `daemon.default_workers`: workers started when `numberWorkers` is not given, and on reset. */
  defaultWorkers: number;
  /** `daemon.max_workers`: most workers a start or an increase may ask for. */
  maxWorkers: number;
  /** `daemon.graceful_timeout`: how long a stop may drain before the supervisor kills. */
  gracefulTimeout: number;
  /** `broker.task_timeout`: bounds a worker's broker connection at start. */
  brokerTaskTimeout: number;
}

/** Reads the {@link DaemonClientSettings} of a profile from its config file. */
export function resolveDaemonClientSettings(profile: Profile): DaemonClientSettings {
  const opts = { profile, aiidaPath: profile.aiidaPath };
  return {
    timeout: getOption('daemon.timeout', opts),
    defaultWorkers: getOption('daemon.default_workers', opts),
    maxWorkers: getOption('daemon.max_workers', opts),
    gracefulTimeout: getOption('daemon.graceful_timeout', opts),
    brokerTaskTimeout: getOption('broker.task_timeout', opts),
  };
}

/**
 * Seconds added to `broker.task_timeout` when waiting for workers to come up: node's start-up and
 * the topology declaration happen before or after the broker connection that the option bounds.
 */
export const WORKER_STARTUP_MARGIN = 5;

/**
 * How long `startDaemon` and `increaseWorkers` wait for every new worker to report ready:
 * `max(timeout, broker.task_timeout + 5)`. A worker's start includes its broker connection, which
 * may take `broker.task_timeout` on its own before it fails with the connection error; a shorter
 * wait would report a timeout instead of that error.
 */
export function workerStartupDeadline(timeout: number, settings: DaemonClientSettings): number {
  return Math.max(timeout, settings.brokerTaskTimeout + WORKER_STARTUP_MARGIN);
}
