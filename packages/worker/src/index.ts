/**
 * @aiida/worker: the daemon's worker program (bin `aiida-worker`), its life cycle, and the
 * engine runner that consumes tasks and runs processes. This list is the package's whole public
 * API.
 */

export {
  type CreateEngineRunnerOptions,
  createEngineRunner,
  EngineProcessRunner,
  type EngineRunnerBroker,
  type EngineRunnerOptions,
  newWorkerId,
  type RunnerEngineParts,
  type RunnerRpcServer,
  type RunnerTaskConsumer,
  StoreTransportBroker,
} from './engine-runner.js';
export {
  createWorkerLogger,
  ORPHAN_DRAIN_TIMEOUT,
  runWorkerProgram,
  type WorkerProgramContext,
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
