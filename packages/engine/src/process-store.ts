import type { ProcessState } from '@aiida/ipc';
import type { EngineError } from './errors.js';
import type { JsonValue } from './json.js';

/** The process group of an external command a body started, so it can be killed later. */
export interface ProcessGroupRecord {
  /** Process group id (the pid of the group leader). */
  pgid: number;
  /** Start time of the leader in clock ticks since boot (`/proc/<pid>/stat`, field 22). */
  startTime: number | null;
  /** `/proc/sys/kernel/random/boot_id` when recorded; a group from another boot is long gone. */
  bootId: string | null;
  /** Host that started it; only that host can kill it. */
  hostname: string;
  /** Value of `AIIDA_PROCESS_MARKER` in the group's environment, to recognise its members. */
  marker: string;
}

/** The storage backends of a profile (AiiDA's names). */
export type StorageBackendName = 'core.sqlite' | 'core.psql';

/** One process row, as read from the store. Times are ISO 8601 strings. */
export interface ProcessRecord {
  pk: number;
  uuid: string;
  /** Registered process type, e.g. `core.arithmetic.add`. */
  type: string;
  state: ProcessState;
  /** Paused processes are not started or continued until played. */
  paused: boolean;
  /** Validated inputs (JSON). */
  inputs: JsonValue;
  /** Outputs once finished (JSON), else null. */
  outputs: JsonValue | null;
  /** 0 when finished successfully, another number when finished with an exit code, else null. */
  exitStatus: number | null;
  exitMessage: string | null;
  /** Message and stack of the error that made it `excepted`. */
  exception: string | null;
  /** What it is doing or why it ended (e.g. "Waiting for 2 child processes", a kill reason). */
  processStatus: string | null;
  /** Workflow checkpoint (JSON), null for calculations and terminal processes. */
  checkpoint: JsonValue | null;
  /** The workflow that submitted it. */
  parentPk: number | null;
  /** Worker (or `run()` caller) holding the lease, null when unowned. */
  owner: string | null;
  /** Lease generation: every claim increments it; fenced writes carry it. */
  epoch: number;
  /** Attempt number of the body (1 on the first run; +1 after each interrupted attempt). */
  attempts: number;
  /** How often an owner lost its lease while holding this process. */
  ownerLosses: number;
  leaseExpiresAt: string | null;
  /** When the last `continue` task was confirmed by the broker (null: not since runnable). */
  dispatchedAt: string | null;
  /** True when there is work to do (not parked waiting on children, not terminal). */
  runnable: boolean;
  /** Seconds from submission after which the process is killed. */
  timeLimit: number | null;
  createdAt: string;
  modifiedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  processGroup: ProcessGroupRecord | null;
}

/** What a new process row needs. */
export interface NewProcess {
  type: string;
  /** Validated inputs, already JSON. */
  inputs: JsonValue;
  /** Seconds from submission after which the process is killed. */
  timeLimit?: number | null;
}

/** Proof of holding a lease: every fenced write carries it. */
export interface LeaseFence {
  pk: number;
  ownerId: string;
  epoch: number;
}

/** A granted lease. */
export interface Lease extends LeaseFence {
  /** Attempt number the body runs as. */
  attempt: number;
  /** Expiry in milliseconds since the epoch. */
  expiresAt: number;
}

/** Why a claim was refused. */
export type ClaimRefusal =
  | 'not_found'
  | 'terminal'
  | 'paused'
  | 'not_runnable'
  | 'owned'
  /** A pending kill intent or an exceeded time limit was applied: the row is now `killed`. */
  | 'killed'
  /** The owner was lost `maxAttempts` times: the row is now `excepted`. */
  | 'poisoned';

/** Result of {@link ProcessStore.claim}. */
export type ClaimResult =
  | {
      ok: true;
      lease: Lease;
      record: ProcessRecord;
      /** State before the claim (the claim sets `running`). */
      previousState: ProcessState;
      /** True when the previous owner's lease expired while it held the process. */
      ownerLost: boolean;
    }
  | {
      ok: false;
      reason: ClaimRefusal;
      /** Set when the refusal ended the process: what to dispatch and kill (see {@link TerminalEffects}). */
      effects?: TerminalEffects;
    };

/** Side effects of one or more processes becoming terminal, for the caller to carry out. */
export interface TerminalEffects {
  /** Every pk that became terminal in the transaction. */
  terminated: { pk: number; state: ProcessState; from: ProcessState }[];
  /** Parents whose children all finished and that no one holds: publish their tasks. */
  parentsToDispatch: number[];
  /** Live descendants held by a live owner that got a kill intent: send the owner an RPC. */
  killRequested: { pk: number; owner: string; message: string }[];
  /** Process groups recorded on processes killed without an owner: kill them (same host). */
  orphanedGroups: ProcessGroupRecord[];
}

/** One row a batch claim ({@link ProcessStore.claimRunnable}) looked at, and the decision. */
export interface ClaimBatchItem {
  pk: number;
  result: ClaimResult;
}

/** What the owner learns on each renewal. */
export interface LeaseRenewal {
  pk: number;
  /** False when the lease is gone (another claim, terminal row): abort the body. */
  held: boolean;
  paused: boolean;
  /** A pending kill intent. */
  kill: { message: string | null; force: boolean } | null;
  /** The time limit (seconds from submission) is exceeded. */
  timeLimitExceeded: number | null;
}

/** What a fenced checkpoint write learns. */
export interface CheckpointResult {
  paused: boolean;
  kill: { message: string | null; force: boolean } | null;
}

/** The terminal result of a process. */
export interface TerminalResult {
  state: 'finished' | 'excepted' | 'killed';
  outputs?: JsonValue | null;
  exitStatus?: number | null;
  exitMessage?: string | null;
  exception?: string | null;
  processStatus?: string | null;
}

/** Outcome of a control request on one process. */
export type ControlRequestOutcome =
  /** Applied in the store directly (no live owner). */
  | { pk: number; status: 'applied'; effects?: TerminalEffects; dispatch?: boolean }
  /** Written as an intent; the live owner applies it. */
  | { pk: number; status: 'requested'; owner: string }
  /** Nothing to do (already paused, not paused...). */
  | { pk: number; status: 'unchanged' }
  | { pk: number; status: 'terminal'; state: ProcessState }
  | { pk: number; status: 'not_found' };

/** Filter of {@link ProcessStore.listProcesses}. Every criterion is applied in the store query. */
export interface ProcessFilter {
  states?: readonly ProcessState[];
  type?: string;
  parentPk?: number;
  /** Only `finished` processes with this exit status (verdi's `-E/--exit-status`). */
  exitStatus?: number;
  /** Only `finished` processes with a non-zero exit status (verdi's `-X/--failed`). */
  failed?: boolean;
  /** Only paused (true) or only unpaused (false) processes. */
  paused?: boolean;
  /** Only processes created at or after this time (ISO 8601 string or Date). */
  createdAfter?: string | Date;
  /** Sort key. @default 'pk' */
  orderBy?: 'pk' | 'createdAt';
  /** @default 'desc' */
  order?: 'asc' | 'desc';
  /** At most this many rows, the first in the chosen order (the newest by default). */
  limit?: number;
}

/** Columns {@link ProcessQuery} can sort by. */
export type ProcessSortKey = 'pk' | 'type' | 'state' | 'created' | 'modified' | 'finished';

/** The column behind each sort key, the same in every backend; ties are broken by pk. */
export const PROCESS_SORT_COLUMNS: Readonly<Record<ProcessSortKey, string>> = {
  pk: 'pk',
  type: 'type',
  state: 'state',
  created: 'created_at',
  modified: 'modified_at',
  finished: 'finished_at',
};

/** A filtered, sorted page of processes: {@link ProcessStore.queryProcesses}. */
export interface ProcessQuery {
  states?: readonly ProcessState[];
  type?: string;
  exitStatus?: number;
  paused?: boolean;
  /** Only processes created at or after this time (ISO 8601). */
  createdAfter?: string;
  /** Only processes created before this time (ISO 8601). */
  createdBefore?: string;
  /** @default 'pk' */
  sort?: ProcessSortKey;
  /** @default 'desc' */
  order?: 'asc' | 'desc';
  /** Rows to skip. @default 0 */
  offset?: number;
  /** Rows to return at most. @default 50 */
  limit?: number;
}

/** Result of {@link ProcessStore.queryProcesses}. */
export interface ProcessPage {
  /** Rows matching the filter, whatever the page. */
  total: number;
  processes: ProcessRecord[];
}

/** Aggregates over every row of the store, for dashboards and metrics. */
export interface ProcessSummary {
  total: number;
  /** Number of rows per (state, type); paused rows counted in their state and in `paused`. */
  counts: { state: ProcessState; type: string; count: number; paused: number }[];
  /** Claims granted so far (the sum of every row's lease epoch). */
  claims: number;
  /** Times an owner lost its lease while holding a process (summed over the rows). */
  ownerLosses: number;
  /** Latest change of any row, null for an empty store. */
  lastModifiedAt: string | null;
}

/** A histogram over processes, cumulative as Prometheus wants it. */
export interface DurationHistogram {
  /** `counts[i]` = observations <= `bounds[i]` seconds. */
  counts: number[];
  /** All observations (the `+Inf` bucket). */
  count: number;
  /** Sum of the observations, seconds. */
  sum: number;
}

/** Result of {@link ProcessStore.processDurations}. */
export interface ProcessDurations {
  bounds: number[];
  /** From creation to the first start, over processes that started. */
  queued: DurationHistogram;
  /** From the first start to the end, over terminal processes that started. */
  run: DurationHistogram;
}

/** Terminal processes per time bucket: {@link ProcessStore.processActivity}. */
export interface ActivityBucket {
  /** Start of the bucket (ISO 8601). */
  time: string;
  finished: number;
  excepted: number;
  killed: number;
}

/** One line of a process's report log. */
export interface ProcessReport {
  /** Id of the line, increasing in the order lines were written (across all processes). */
  id: number;
  pk: number;
  time: string;
  level: ReportLevel;
  message: string;
}

/** Levels of a process report. */
export type ReportLevel = 'debug' | 'info' | 'report' | 'warning' | 'error';

/** What to delete in {@link ProcessStore.deleteProcesses}. */
export type DeleteSelection =
  | { pks: number[] }
  | {
      /** Terminal processes that ended more than this many seconds ago. */
      olderThan: number;
      /** Only these (terminal) states. @default all terminal states */
      states?: readonly ProcessState[];
    };

/** What a worker writes into the worker registry at its start and on each heartbeat. */
export interface WorkerRegistration {
  /** The worker's id: the owner it writes on the leases it takes. */
  workerId: string;
  /** Its host (`getHostname()` of `@aiida/config`: `AIIDA_HOSTNAME`, else `os.hostname()`). */
  hostname: string;
  pid: number;
  /** Slots in use (claims in progress and running processes). */
  slotsUsed: number;
  /** Slots it has (`daemon.worker_process_slots`). */
  slotsTotal: number;
}

/** One worker of the registry, as read from the store. Times are ISO 8601, by the store's clock. */
export interface WorkerRecord extends WorkerRegistration {
  /** When it first registered. */
  startedAt: string;
  /** Its latest heartbeat. */
  lastHeartbeatAt: string;
  /** True when its latest heartbeat is older than the `staleAfterSeconds` asked for. */
  stale: boolean;
}

/**
 * Storage of processes: the single source of truth. Every method is one short transaction. Writes
 * that change a running process are fenced by its {@link LeaseFence}: they fail with
 * `EngineError('lease_lost')` once someone else claimed it, it was released, or it became terminal.
 */
export interface ProcessStore {
  /** Which backend holds the processes: AiiDA's storage backend name. */
  readonly backend: StorageBackendName;
  /** Version of the database engine (SQLite library or PostgreSQL server). */
  readonly serverVersion: string;
  /** Schema version of the store this code wrote or found. */
  readonly schemaVersion: number;
  /** Where the store lives, for messages. */
  readonly location: string;

  // --- creation -------------------------------------------------------------------------------
  /** Inserts processes (state `created`, runnable, not dispatched) in one transaction. */
  createProcesses(processes: NewProcess[]): Promise<ProcessRecord[]>;
  /** Inserts a process already claimed by `ownerId` (for `run()`: the caller owns it). */
  createClaimedProcess(
    process: NewProcess,
    ownerId: string,
    leaseSeconds: number,
  ): Promise<{ record: ProcessRecord; lease: Lease }>;
  /**
   * Inserts a child of the workflow holding `parent`, or returns the existing child with the same
   * `spawnKey` (a step that runs again gets the children it created before). With `claimFor`, a
   * newly created child is claimed by that owner at once (children of `run()` run in the caller).
   */
  createChild(
    parent: LeaseFence,
    spawnKey: string,
    process: NewProcess,
    claimFor?: { ownerId: string; leaseSeconds: number },
  ): Promise<{ record: ProcessRecord; created: boolean; lease: Lease | null }>;

  // --- reads ----------------------------------------------------------------------------------
  getProcess(pk: number): Promise<ProcessRecord | undefined>;
  getProcesses(pks: number[]): Promise<ProcessRecord[]>;
  listProcesses(filter?: ProcessFilter): Promise<ProcessRecord[]>;
  getReports(pk: number): Promise<ProcessReport[]>;
  /** A filtered page of processes, sorted and paged in the store, with the total match count. */
  queryProcesses(query?: ProcessQuery): Promise<ProcessPage>;
  /** Counts by state and type, claims and owner losses over every row. */
  summarizeProcesses(): Promise<ProcessSummary>;
  /** Histograms of the time to start and the time to end, in seconds, over `bounds`. */
  processDurations(bounds: readonly number[]): Promise<ProcessDurations>;
  /**
   * An opaque value that changes whenever a row of the store may have changed (a commit by this
   * handle or any other process). Cheap: a dashboard polls it to know when to read again.
   */
  changeToken(): Promise<string>;
  /** Processes that ended per `interval` seconds since `since` (ISO 8601), oldest first. */
  processActivity(options: { since: string; interval: number }): Promise<ActivityBucket[]>;

  // --- leases ---------------------------------------------------------------------------------
  /**
   * Takes the lease of `pk` atomically if it is not terminal, not paused, runnable, and unowned or
   * its owner's lease expired. Sets state `running`. A pending kill intent or an exceeded time limit
   * ends it `killed` instead; an owner lost `maxAttempts` times ends it `excepted`.
   */
  claim(
    pk: number,
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult>;
  /** {@link ProcessStore.claim} for several pks in one transaction (one result per pk, in order). */
  claimMany(
    pks: number[],
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult[]>;
  /**
   * The store as the queue: in one transaction, claims up to `limit` runnable rows (not terminal,
   * not paused, not parked, unowned or with an expired lease), oldest (lowest pk) first, each by
   * the rules of {@link ProcessStore.claim}. Candidates that the claim rules end instead (kill
   * intent, time limit, poison) come back with their refusal and do not count against `limit`.
   * PostgreSQL skips rows another claimer has locked, so daemons on several hosts share the rows.
   */
  claimRunnable(
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number; limit: number },
  ): Promise<ClaimBatchItem[]>;
  /**
   * Wakes the workers that wait for work on this store, in any process and, for PostgreSQL, on
   * any host (`core.store` transport). Carries nothing and may be lost. Never rejects.
   */
  notifyWork(): Promise<void>;
  /**
   * Calls `listener` whenever {@link ProcessStore.notifyWork} is called on any handle of this
   * store (SQLite: a watched file beside the database; PostgreSQL: `LISTEN`). Resolves once
   * listening, with what stops listening.
   */
  listenForWork(listener: () => void): Promise<() => Promise<void>>;
  /** Extends the leases `ownerId` holds on `pks`, and reports pause/kill intents and time limits. */
  renewLeases(ownerId: string, pks: number[], leaseSeconds: number): Promise<LeaseRenewal[]>;
  /**
   * Gives a lease back: the row stays runnable, its task must be published again (the result says
   * whether: not while paused). `interrupted` marks a body stopped mid-way (attempt + 1).
   */
  release(
    fence: LeaseFence,
    options?: { interrupted?: boolean; checkpoint?: JsonValue; processStatus?: string | null },
  ): Promise<{ dispatch: boolean }>;

  // --- fenced writes --------------------------------------------------------------------------
  /** Writes a workflow checkpoint (and optionally state/status). */
  writeCheckpoint(
    fence: LeaseFence,
    checkpoint: JsonValue,
    options?: { state?: ProcessState; processStatus?: string | null },
  ): Promise<CheckpointResult>;
  /** Records (or clears) the process group of an external command the body started. */
  setProcessGroup(fence: LeaseFence, group: ProcessGroupRecord | null): Promise<void>;
  /** Writes the human-readable status. */
  setProcessStatus(fence: LeaseFence, processStatus: string | null): Promise<void>;
  /**
   * Checkpoints a workflow and parks it (state `waiting`, not runnable, lease released) unless
   * every child already finished, which is checked in the same transaction; then it keeps the
   * lease and the result is `continue`.
   */
  park(
    fence: LeaseFence,
    checkpoint: JsonValue,
    waitingOn: number[],
  ): Promise<'parked' | 'continue'>;
  /**
   * Writes the terminal result. In the same transaction: a parent whose children are now all
   * terminal becomes runnable (returned in `parentsToDispatch` if unowned); a killed or excepted
   * workflow's live children are killed (directly when unowned, else by intent).
   */
  complete(fence: LeaseFence, result: TerminalResult): Promise<TerminalEffects>;
  /**
   * {@link ProcessStore.complete} for several processes in one transaction (group commit). An item
   * whose fence fails gets its `lease_lost` error in its place; the others are committed.
   */
  completeMany(
    items: { fence: LeaseFence; result: TerminalResult }[],
  ): Promise<(TerminalEffects | EngineError)[]>;
  /**
   * {@link ProcessStore.completeMany}, then {@link ProcessStore.claimMany}, in one transaction
   * (one commit for a worker's pending terminal writes and claims). Each item gets the result
   * the single methods would give it, in order; a store failure fails both lists.
   */
  completeAndClaimMany(
    completions: { fence: LeaseFence; result: TerminalResult }[],
    claims: { pks: number[]; ownerId: string; leaseSeconds: number; maxAttempts: number },
  ): Promise<{ completions: (TerminalEffects | EngineError)[]; claims: ClaimResult[] }>;

  // --- control --------------------------------------------------------------------------------
  requestPause(pk: number, message?: string | null): Promise<ControlRequestOutcome>;
  requestPlay(pk: number): Promise<ControlRequestOutcome>;
  requestKill(pk: number, message: string | null, force: boolean): Promise<ControlRequestOutcome>;
  /** Kills unowned processes past their time limit; returns what the caller must carry out. */
  killExpired(): Promise<TerminalEffects>;

  // --- reconciler -----------------------------------------------------------------------------
  /** Takes or renews the reconciler's leader lease; true when `ownerId` is the leader. */
  electLeader(ownerId: string, leaseSeconds: number): Promise<boolean>;
  /**
   * Runnable, unpaused, non-terminal processes that need a task: unowned and never dispatched for
   * `neverDispatchedGraceSeconds` since they became runnable, or owned by an expired lease and not
   * dispatched since it expired; with `staleDispatchSeconds`, also those dispatched that long ago
   * and still unclaimed. With `expiredRedispatchSeconds`, a process whose owner's lease expired
   * and that no one claimed since is returned again and again, each time once the time since its
   * last dispatch reaches half the time since the lease expired, clamped to `[min, max]` (a
   * backoff that needs no extra column): the transport may hand a re-sent task back to the stalled
   * owner, so one re-send is not enough.
   */
  findDispatchable(options: {
    neverDispatchedGraceSeconds: number;
    staleDispatchSeconds?: number;
    expiredRedispatchSeconds?: { min: number; max: number };
    limit?: number;
  }): Promise<number[]>;
  /** Records that the tasks of `pks` were confirmed by the broker. */
  markDispatched(pks: number[]): Promise<void>;

  // --- worker registry ------------------------------------------------------------------------
  /**
   * Registers a worker or records its heartbeat: inserts its row (start time = now) or updates
   * its slots and last heartbeat (= now). Times are the store's clock (the database's, for
   * PostgreSQL), never the worker's.
   */
  registerWorker(worker: WorkerRegistration): Promise<void>;
  /** Removes a worker's row (its clean exit). Removing an unknown worker is not an error. */
  unregisterWorker(workerId: string): Promise<void>;
  /**
   * Every registered worker of every host, by host then start. A worker whose latest heartbeat is
   * older than `staleAfterSeconds` (measured by the store's clock) is marked `stale`.
   */
  listWorkers(options: { staleAfterSeconds: number }): Promise<WorkerRecord[]>;
  /**
   * Removes the rows of `hostname`'s workers whose last heartbeat is older than
   * `staleAfterSeconds` (a worker starting on a host clears what its host's dead workers left).
   * Returns the removed worker ids. A stalled worker that comes back registers again.
   */
  removeStaleWorkers(hostname: string, staleAfterSeconds: number): Promise<string[]>;

  // --- reports and cleanup --------------------------------------------------------------------
  addReport(pk: number, level: ReportLevel, message: string): Promise<void>;
  /** Deletes terminal processes (and their descendants, reports, intents); refuses active ones. */
  deleteProcesses(selection: DeleteSelection): Promise<number[]>;

  close(): Promise<void>;
}
