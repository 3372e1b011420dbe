import type { ClusterStatus, DaemonStatus, ScaleResult } from '@aiida/daemon-client';
import type { Engine } from '@aiida/engine';

/**
 * What the dashboard needs of the engine: reads, aggregates and process control. An `Engine` of
 * `@aiida/engine` fits; tests may pass their own.
 */
export type DashboardEngine = Pick<
  Engine,
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
  /** Every host's workers of the profile, from the store's worker registry. */
  getClusterStatus(): Promise<ClusterStatus>;
  increaseWorkers(n?: number): Promise<ScaleResult>;
  decreaseWorkers(n?: number): Promise<ScaleResult>;
  restartDaemon(options?: { wait?: boolean }): Promise<unknown>;
}
