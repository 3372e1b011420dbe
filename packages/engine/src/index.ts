/**
 * @aiida/engine: process definitions (calculations, workflows, shell jobs), their SQLite store,
 * `run`/`submit`, queries and control, and the runtime ({@link ProcessExecutor}, {@link Reconciler})
 * a worker drives. This list is the package's whole public API.
 */

// The process states, shared with every package through @aiida/ipc.
export { PROCESS_STATES, type ProcessState, TERMINAL_STATES } from '@aiida/ipc';
export {
  arithmeticAdd,
  arithmeticMultiplyAdd,
  BUILTIN_DEFINITIONS,
  MULTIPLY_ADD_CHILD_FAILED,
} from './builtins.js';
export { type Clock, systemClock } from './clock.js';
export {
  type CalculationDefinition,
  type ChildResult,
  type ChildSubmitOptions,
  calculation,
  ExitCode,
  exitCode,
  type Instruction,
  if_,
  isExitCode,
  type OutlineCondition,
  type OutlineNode,
  type ProcessContext,
  type ProcessDefinition,
  return_,
  step,
  type WorkflowContext,
  type WorkflowDefinition,
  type WorkflowStep,
  type WorkflowView,
  while_,
  workflow,
} from './definitions.js';
export {
  type ControlResult,
  Engine,
  type EngineOptions,
  type KillOptions,
  type SubmitItem,
  type SubmitOptions,
} from './engine.js';
export {
  describeError,
  EngineError,
  type EngineErrorCode,
  EngineErrorCodes,
  type EngineErrorOptions,
  isEngineError,
} from './errors.js';
export {
  type ClaimOutcome,
  type DrainReport,
  ProcessExecutor,
  type ProcessExecutorOptions,
  ProcessInterruptedError,
  type RunOutcome,
  type StateChange,
} from './executor.js';
export type { JsonObject, JsonValue } from './json.js';
export { type EngineLogger, silentLogger, stderrLogger } from './logger.js';
export {
  type EngineProfileOptions,
  type OpenEngineOptions,
  openEngine,
  readEngineOptions,
} from './open-engine.js';
export { type OpenProcessStoreOptions, openProcessStore } from './open-store.js';
export {
  loadPlugins,
  type PluginApi,
  type PluginModule,
  pluginApi,
} from './plugins.js';
export type { ControlChannel, TaskDispatcher } from './ports.js';
export { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from './postgres-migrations.js';
export {
  describePostgresConnection,
  type PostgresConnection,
  PostgresProcessStore,
  type PostgresStoreOptions,
} from './postgres-process-store.js';
export {
  isProcessAlive,
  killProcessGroup,
  PROCESS_MARKER_ENV,
} from './process-group.js';
export type {
  ActivityBucket,
  CheckpointResult,
  ClaimBatchItem,
  ClaimRefusal,
  ClaimResult,
  ControlRequestOutcome,
  DeleteSelection,
  DurationHistogram,
  Lease,
  LeaseFence,
  LeaseRenewal,
  NewProcess,
  ProcessDurations,
  ProcessFilter,
  ProcessGroupRecord,
  ProcessPage,
  ProcessQuery,
  ProcessRecord,
  ProcessReport,
  ProcessSortKey,
  ProcessStore,
  ProcessSummary,
  ReportLevel,
  StorageBackendName,
  TerminalEffects,
  TerminalResult,
  WorkerRecord,
  WorkerRegistration,
} from './process-store.js';
export {
  type ReconcileReport,
  Reconciler,
  type ReconcilerOptions,
} from './reconciler.js';
export { type PluginLoadError, ProcessRegistry } from './registry.js';
export { SHELL_NONZERO_EXIT_STATUS, SHELL_OUTPUT_LIMIT, shellJob } from './shell-job.js';
export {
  openStore,
  SqliteProcessStore,
  type SqliteStoreOptions,
  type StoreProfile,
} from './sqlite-process-store.js';
export { STORE_MIGRATIONS, STORE_SCHEMA_VERSION, type StoreMigration } from './store-migrations.js';
export { type ValueIssue, validateJson } from './validation.js';
export {
  FileWorkSignal,
  PostgresWorkSignal,
  StoreWorkDispatcher,
  SUPPRESS_WAKE_UPS_ENV,
  WORK_NOTIFY_CHANNEL,
  type WorkSignal,
} from './work-signal.js';
