/**
 * @aiida/worker: the daemon's worker program (bin `aiida-worker`) and its life cycle. This list
 * is the package's whole public API.
 */

export {
  ORPHAN_DRAIN_TIMEOUT,
  runWorkerProgram,
  type WorkerProgramOptions,
} from './program.js';
export {
  IdleProcessRunner,
  type ProcessRunner,
  type ProcessRunnerStats,
  type SupervisorChannel,
  Worker,
  type WorkerBroker,
  type WorkerLifecycleState,
  type WorkerOptions,
} from './worker.js';
