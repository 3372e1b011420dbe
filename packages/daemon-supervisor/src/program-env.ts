/**
 * Constants about how the supervisor program and its workers are started. They live apart from
 * `supervisor.ts` so that a client (which starts the supervisor program) can read them without
 * loading the supervisor itself.
 */

/** Environment variable that replaces the worker program (tests use it). */
export const WORKER_PROGRAM_ENV = 'AIIDA_DAEMON_WORKER_PROGRAM';

/**
 * Node options the supervisor program should be started with. `--max-semi-space-size=2` (MiB)
 * caps V8's young generation: under a flood of connections V8 otherwise grows it to its 3 x 16
 * MiB default ceiling, about 50 MB of resident memory that a process doing little besides
 * answering small requests never needs (the old generation is unchanged).
 */
export const SUPERVISOR_EXEC_ARGV: readonly string[] = Object.freeze(['--max-semi-space-size=2']);
