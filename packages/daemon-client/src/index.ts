/**
 * @aiida/daemon-client: `DaemonClient` and `getDaemonClient` to start, stop, restart, scale and
 * inspect the daemon of a profile, and the `Daemon*Exception` family. This list is the package's
 * whole public API.
 */

export type {
  DaemonStatus,
  ScaleResult,
  WorkerState,
  WorkerStatus,
} from '@aiida/ipc';
export type {
  ClusterHost,
  ClusterStatus,
  ClusterStatusOptions,
  ClusterWorker,
} from './cluster-status.js';
export {
  type CallOptions,
  DaemonClient,
  type DaemonClientOptions,
  type DaemonInfo,
  type DaemonRestartResult,
  type DaemonStartResult,
  type DaemonStopResult,
  getDaemonClient,
  type RestartDaemonOptions,
  type StartDaemonOptions,
  type StopDaemonOptions,
} from './daemon-client.js';
export {
  DaemonBusyException,
  DaemonException,
  type DaemonExceptionOptions,
  DaemonNotRunningException,
  DaemonStalePidException,
  DaemonTimeoutException,
  daemonExceptionFromSerialized,
  isDaemonBusyException,
  isDaemonException,
  isDaemonNotRunningException,
  isDaemonStalePidException,
  isDaemonTimeoutException,
} from './errors.js';
export {
  type DaemonClientSettings,
  resolveDaemonClientSettings,
  WORKER_STARTUP_MARGIN,
  workerStartupDeadline,
} from './settings.js';
