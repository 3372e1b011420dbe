import type {
  ClusterStatus,
  ClusterStatusOptions,
  DaemonStatus,
  ScaleResult,
} from '@aiida/daemon-client';
import type { Engine } from '@aiida/engine';

/**
 * What the dashboard needs of the engine: reads, aggregates and process control, and its open
 * store (through which the worker registry is read). An `Engine` of `@aiida/engine` fits.
 */
export type DashboardEngine = Pick<
  Engine,
  | 'store'
  | 'getProcess'
  | 'getReports'
  | 'listProcesses'
  | 'queryProcesses'
  | 'summarizeProcesses'
  | 'processDurations'
  | 'processActivity'
  | 'changeToken'
  | 'killProcess'
  | 'pauseProcess'
  | 'playProcess'
>;

/**
 * What the dashboard needs of the daemon: this host's daemon (status, scaling, restart) and every
 * host's workers from the store's registry. A `DaemonClient` of `@aiida/daemon-client` fits.
 */
export interface DashboardDaemon {
  getStatus(options?: { timeout?: number }): Promise<DaemonStatus>;
  /** Every host's workers of the profile, from the store's worker registry (read via `store`). */
  getClusterStatus(options?: ClusterStatusOptions): Promise<ClusterStatus>;
  increaseWorkers(n?: number): Promise<ScaleResult>;
  decreaseWorkers(n?: number): Promise<ScaleResult>;
  restartDaemon(options?: { wait?: boolean }): Promise<unknown>;
}
