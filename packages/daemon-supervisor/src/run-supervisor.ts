import type { SupervisorError } from './errors.js';
import type { RunSupervisorOptions, Supervisor } from './supervisor.js';

/**
 * Runs the daemon of a profile in this process: takes the profile's exclusive lock, serves the
 * control socket, writes the state file, starts `numberWorkers` workers and resolves once all are
 * ready. Rejects with a {@link SupervisorError} (`already_running`, `worker_failed`,
 * `unsupported_platform`, …) after cleaning up if the start fails.
 *
 * The supervisor's code (worker pool, control server, logs) is imported on the first call, so
 * that a client that only reads the state file does not load it.
 *
 * @example
 * ```ts
 * const supervisor = await runSupervisor({ profile: getProfile('demo'), numberWorkers: 2 });
 * process.exitCode = await supervisor.done; // until SIGTERM/SIGINT or a `stop` request
 * ```
 */
export async function runSupervisor(options: RunSupervisorOptions): Promise<Supervisor> {
  const supervisor = await import('./supervisor.js');
  return supervisor.runSupervisor(options);
}
