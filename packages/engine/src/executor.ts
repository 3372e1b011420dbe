import {
  PROTOCOL_VERSION,
  type ProcessState,
  type RpcProcessStatus,
  type RpcReply,
  type RpcRequest,
  TERMINAL_STATES,
} from '@aiida/ipc';
import { type Clock, systemClock } from './clock.js';
import {
  type CalculationDefinition,
  type ChildResult,
  isExitCode,
  type ProcessContext,
  type WorkflowContext,
  type WorkflowDefinition,
} from './definitions.js';
import { describeError, EngineError, EngineErrorCodes, isEngineError } from './errors.js';
import { type JsonObject, type JsonValue, toJson } from './json.js';
import { type EngineLogger, silentLogger } from './logger.js';
import { type ControlChannel, requestKill, type TaskDispatcher } from './ports.js';
import { describeProcessGroup, killProcessGroup } from './process-group.js';
import type {
  ClaimRefusal,
  ClaimResult,
  Lease,
  LeaseFence,
  ProcessGroupRecord,
  ProcessRecord,
  ProcessStore,
  ReportLevel,
  TerminalEffects,
  TerminalResult,
} from './process-store.js';
import type { ProcessRegistry } from './registry.js';
import { checkInputSize, DEFAULT_MAX_INPUT_BYTES, validateJson } from './validation.js';
import { WriteBatcher } from './write-batcher.js';

/** Why a body's signal fired: `signal.reason` is one of these. */
export class ProcessInterruptedError extends Error {
  /** `killed`: by request or time limit; `lease_lost`: another owner may run it; `shutdown`: the worker stops. */
  readonly kind: 'killed' | 'lease_lost' | 'shutdown';
  constructor(kind: 'killed' | 'lease_lost' | 'shutdown', message: string) {
    super(message);
    this.name = 'ProcessInterruptedError';
    this.kind = kind;
  }
}

/** A claim or a terminal write waiting for its batch. */
type PendingWrite =
  | { kind: 'claim'; pk: number }
  | { kind: 'complete'; fence: LeaseFence; result: TerminalResult };

const endedReasons = new Map<string, ProcessInterruptedError>();

/** The abort reason of a process whose body ended `state` (one shared error per state). */
function endedReason(state: string): ProcessInterruptedError {
  let reason = endedReasons.get(state);
  if (!reason) {
    reason = new ProcessInterruptedError('killed', `process ended ${state}`);
    endedReasons.set(state, reason);
  }
  return reason;
}

/** How a run of a claimed process ended, from this executor's point of view. */
export type RunOutcome =
  /** Terminal results, committed by this executor. */
  | 'finished'
  | 'excepted'
  | 'killed'
  /** A workflow waits for its children; it holds no lease; a child's end dispatches it again. */
  | 'parked'
  /** Paused at a step boundary; lease released; `play` dispatches it again. */
  | 'paused'
  /** Lease given back during a drain (at a step boundary, or interrupted); task re-published. */
  | 'released'
  /** The lease was lost (another owner claimed it, or it became terminal elsewhere). */
  | 'lease_lost'
  /** Given up without releasing (store failure, or a body that ignored a shutdown): the lease expires. */
  | 'abandoned';

/** Result of {@link ProcessExecutor.claim}. */
export type ClaimOutcome =
  | {
      claimed: true;
      pk: number;
      lease: Lease;
      /** Runs the process; call it right away (the lease is renewed from the claim on). Idempotent. */
      run(): Promise<RunOutcome>;
    }
  | {
      claimed: false;
      pk: number;
      /** `draining`: this executor takes no new work; `active_here`: it already runs this pk. */
      reason: ClaimRefusal | 'draining' | 'active_here';
    };

/** A state change of a process, for broadcasting. */
export interface StateChange {
  pk: number;
  from: ProcessState;
  to: ProcessState;
}

/** Options of {@link ProcessExecutor}. */
export interface ProcessExecutorOptions {
  store: ProcessStore;
  registry: ProcessRegistry;
  /** Unique id of this holder (worker id, or the `run()` caller's id). */
  ownerId: string;
  /** Publishes tasks of woken parents, released processes and new children. */
  dispatcher?: TaskDispatcher;
  /** RPC fast path to other owners (kill of a workflow's children). */
  control?: ControlChannel;
  /** Seconds a lease lasts without renewal (`daemon.lease_timeout`). */
  leaseTimeout: number;
  /** `engine.max_attempts`: an owner lost this many times makes a process `excepted`. */
  maxAttempts: number;
  /**
   * `engine.max_input_bytes`: the inputs of a child a workflow submits, as JSON, at most this many
   * bytes; above it the step fails with `inputs_too_large` and no child is stored.
   * @default 4 MiB
   */
  maxInputBytes?: number;
  /**
   * Seconds between a `force` kill (or an exceeded time limit) and the kill becoming final
   * whatever the body does.
   * @default 3
   */
  killGrace?: number;
  /**
   * `daemon`: workflows park while waiting for children, which are dispatched to the queue.
   * `local` (for `run()`): workflows keep their lease and children run in this executor.
   * @default 'daemon'
   */
  mode?: 'daemon' | 'local';
  /** Seconds between store polls while a local workflow waits for foreign children or is paused. @default 0.2 */
  pollInterval?: number;
  /** Seconds an RPC to another owner may take. @default 2 */
  rpcTimeout?: number;
  logger?: EngineLogger;
  clock?: Clock;
  /**
   * Group claims and terminal writes made close together into one transaction (one fsync per
   * batch instead of per process; see `batchWindowMs`). Every caller still waits for its own commit.
   * @default true
   */
  batchWrites?: boolean;
  /**
   * Milliseconds a claim or a terminal write waits for others (of either kind) to join its
   * transaction (with `batchWrites`): fewer, larger commits (each an fsync on SQLite) at the price of that much
   * latency. @default 2
   */
  batchWindowMs?: number;
  /** Called on every state change this executor commits or observes (for broadcasts). */
  onStateChange?: (change: StateChange) => void;
}

/** What {@link ProcessExecutor.drain} did. */
export interface DrainReport {
  /** Processes that ended or parked/paused on their own within the deadline. */
  completed: number[];
  /** Leases given back (task re-published): at a step boundary or after an interrupted body. */
  released: number[];
  /** Bodies that ignored the shutdown signal: their leases are left to expire. */
  abandoned: number[];
}

interface WorkflowCheckpoint {
  v: 1;
  fingerprint: string;
  /** Index of the next instruction of the compiled outline. */
  pc: number;
  /** Steps executed so far (part of the spawn key of children). */
  stepCount: number;
  vars: JsonObject;
  outputs: JsonObject;
  children: Record<string, ChildResult>;
  /** Children of the last step that the workflow waits for. */
  pending: { name: string; pk: number }[];
}

type StopRequest =
  | { kind: 'kill'; message: string; force: boolean }
  | { kind: 'lost'; message: string }
  | { kind: 'shutdown' };

class ActiveProcess {
  readonly controller = new AbortController();
  stop: StopRequest | null = null;
  pauseRequested = false;
  drainRequested = false;
  group: ProcessGroupRecord | null = null;
  finalized = false;
  forceTimer: NodeJS.Timeout | undefined;
  started: Promise<RunOutcome> | undefined;
  resolveDone!: (outcome: RunOutcome) => void;
  readonly done: Promise<RunOutcome>;
  state: ProcessState = 'running';
  /**
   * When the lease expires by this host's clock, counted from before the claim was asked for:
   * `lease.expiresAt` is the store's clock (the database's, for PostgreSQL), which this host's
   * clock may not agree with.
   */
  leaseExpiresAt: number;

  constructor(
    readonly lease: Lease,
    public record: ProcessRecord,
    localLeaseExpiresAt: number,
  ) {
    this.leaseExpiresAt = localLeaseExpiresAt;
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
  }

  get pk(): number {
    return this.lease.pk;
  }

  get fence(): LeaseFence {
    return { pk: this.lease.pk, ownerId: this.lease.ownerId, epoch: this.lease.epoch };
  }
}

/** Waits for all `promises` to settle, or `ms` milliseconds, whichever comes first. */
async function settleWithin(promises: Promise<unknown>[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(promises),
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/** Read through a call, so that narrowing from before an `await` doesn't stick. */
function stopKind(a: ActiveProcess): StopRequest['kind'] | undefined {
  return a.stop?.kind;
}

/** What a run ended as when its result was already committed by a kill or lost with the lease. */
function endedByStop(a: ActiveProcess): RunOutcome {
  return stopKind(a) === 'lost' ? 'lease_lost' : 'killed';
}

function isTerminal(state: ProcessState): boolean {
  return TERMINAL_STATES.includes(state);
}

function firstLine(text: string | null): string | null {
  return text === null ? null : (text.split('\n')[0] ?? null);
}

function childResultOf(record: ProcessRecord | undefined, pk: number): ChildResult {
  if (!record) {
    return {
      pk,
      type: 'unknown',
      state: 'excepted',
      exitStatus: null,
      exitMessage: null,
      outputs: null,
      exception: `child process ${pk} no longer exists`,
    };
  }
  return {
    pk: record.pk,
    type: record.type,
    state: record.state,
    exitStatus: record.exitStatus,
    exitMessage: record.exitMessage,
    outputs: record.outputs,
    exception: firstLine(record.exception),
  };
}

/**
 * Runs claimed processes and keeps the store right about them: the engine's runtime, driven by a
 * worker (or by `run()` in the calling process). The worker owns slots and broker plumbing; the
 * executor owns claims, leases, fenced writes, checkpoints, parking, control and draining.
 *
 * Contract for the worker:
 * 1. On a `continue` task: `const c = await executor.claim(pk)`; then ack the delivery whatever
 *    the outcome; if `c.claimed`, take a slot and `await c.run()`, free the slot when it resolves.
 * 2. Every heartbeat: `await executor.renewAll()` (renews leases, applies pause/kill intents and
 *    time limits found in the store). Or call `startHeartbeat(seconds)` once.
 * 3. On RPC for a pk: `await executor.handleRpc(request)` and send back the reply.
 * 4. On shutdown: stop consuming, then `await executor.drain(gracefulTimeout)`, then close the broker.
 */
export class ProcessExecutor {
  readonly ownerId: string;
  private readonly store: ProcessStore;
  private readonly registry: ProcessRegistry;
  private readonly dispatcher: TaskDispatcher | undefined;
  private readonly control: ControlChannel | undefined;
  private readonly leaseTimeout: number;
  private readonly maxInputBytes: number;
  private readonly maxAttempts: number;
  private readonly killGrace: number;
  private readonly mode: 'daemon' | 'local';
  private readonly pollInterval: number;
  private readonly rpcTimeout: number;
  private readonly logger: EngineLogger;
  private readonly clock: Clock;
  private readonly onStateChange: ((change: StateChange) => void) | undefined;
  private readonly active = new Map<number, ActiveProcess>();
  /** Claims and terminal writes, batched: one transaction for what is pending together. */
  private readonly writes: WriteBatcher<PendingWrite, ClaimResult | TerminalEffects> | undefined;
  private draining = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;

  constructor(options: ProcessExecutorOptions) {
    this.ownerId = options.ownerId;
    this.store = options.store;
    this.registry = options.registry;
    this.dispatcher = options.dispatcher;
    this.control = options.control;
    this.leaseTimeout = options.leaseTimeout;
    this.maxInputBytes = options.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES;
    this.maxAttempts = options.maxAttempts;
    this.killGrace = options.killGrace ?? 3;
    this.mode = options.mode ?? 'daemon';
    this.pollInterval = options.pollInterval ?? 0.2;
    this.rpcTimeout = options.rpcTimeout ?? 2;
    this.logger = options.logger ?? silentLogger;
    this.clock = options.clock ?? systemClock;
    this.onStateChange = options.onStateChange;
    if (options.batchWrites !== false) {
      this.writes = new WriteBatcher<PendingWrite, ClaimResult | TerminalEffects>(
        (batch) => this.flushWrites(batch),
        500,
        options.batchWindowMs ?? 2,
      );
    }
  }

  /** Commits a batch of claims and terminal writes in one transaction; results in batch order. */
  private async flushWrites(
    batch: PendingWrite[],
  ): Promise<(ClaimResult | TerminalEffects | Error)[]> {
    const completions: { fence: LeaseFence; result: TerminalResult }[] = [];
    const pks: number[] = [];
    for (const w of batch) {
      if (w.kind === 'claim') pks.push(w.pk);
      else completions.push({ fence: w.fence, result: w.result });
    }
    const out = await this.store.completeAndClaimMany(completions, {
      pks,
      ownerId: this.ownerId,
      leaseSeconds: this.leaseTimeout,
      maxAttempts: this.maxAttempts,
    });
    let c = 0;
    let k = 0;
    return batch.map((w) => (w.kind === 'claim' ? out.claims[k++]! : out.completions[c++]!));
  }

  /** Pks this executor holds right now (claimed and not yet ended, parked, paused or released). */
  get activePks(): number[] {
    return [...this.active.keys()];
  }

  /** Number of processes held (what the worker counts as used slots). */
  get size(): number {
    return this.active.size;
  }

  /** True once {@link ProcessExecutor.drain} started: claims are refused. */
  get isDraining(): boolean {
    return this.draining;
  }

  // --- claiming and running -------------------------------------------------------------------

  /**
   * Takes the lease of `pk` (one atomic store update). A refusal is final for this task: the
   * worker acks and drops it (duplicates are harmless). On success, call `run()` at once.
   */
  async claim(pk: number): Promise<ClaimOutcome> {
    if (this.draining) {
      // The task is acked and dropped by the worker: publish it again so no process waits on it.
      await this.dispatch([pk]);
      return { claimed: false, pk, reason: 'draining' };
    }
    if (this.active.has(pk)) return { claimed: false, pk, reason: 'active_here' };
    const askedAt = this.clock.now();
    const result = this.writes
      ? ((await this.writes.submit({ kind: 'claim', pk })) as ClaimResult)
      : await this.store.claim(pk, this.ownerId, this.leaseTimeout, {
          maxAttempts: this.maxAttempts,
        });
    return this.settleClaim(pk, result, askedAt);
  }

  /**
   * The store as the queue (`core.store`): claims up to `limit` runnable processes, oldest first,
   * in one store transaction ({@link ProcessStore.claimRunnable}), and returns the granted ones
   * (each to be run with `run()`, as for {@link ProcessExecutor.claim}). Processes the claim rules
   * ended instead (kill intent, time limit, poison) have their effects carried out here.
   */
  async claimRunnable(limit: number): Promise<(ClaimOutcome & { claimed: true })[]> {
    if (this.draining || limit < 1) return [];
    const askedAt = this.clock.now();
    const items = await this.store.claimRunnable(this.ownerId, this.leaseTimeout, {
      maxAttempts: this.maxAttempts,
      limit,
    });
    const out: (ClaimOutcome & { claimed: true })[] = [];
    for (const item of items) {
      const outcome = await this.settleClaim(item.pk, item.result, askedAt);
      if (outcome.claimed) out.push(outcome);
    }
    return out;
  }

  private async settleClaim(
    pk: number,
    result: ClaimResult,
    askedAt: number,
  ): Promise<ClaimOutcome> {
    if (!result.ok) {
      if (result.effects) this.handleEffects(result.effects);
      if (result.reason === 'poisoned') {
        this.logger.error(`process ${pk} excepted: its owner was lost too often`, { pk });
      }
      return { claimed: false, pk, reason: result.reason };
    }
    if (this.draining) {
      // drain() started while the claim was being written: hand the process straight back.
      try {
        const { dispatch } = await this.store.release(result.lease);
        if (dispatch) await this.dispatch([pk]);
      } catch (error) {
        this.logger.warn(
          `process ${pk}: could not hand back a claim made during drain: ${describeError(error).message}`,
          { pk },
        );
      }
      return { claimed: false, pk, reason: 'draining' };
    }
    const active = this.adopt(result.lease, result.record, askedAt);
    this.emit(pk, result.previousState, 'running');
    if (result.ownerLost) {
      this.logger.warn(
        `process ${pk}: previous owner lost its lease; attempt ${result.lease.attempt}`,
        {
          pk,
          attempt: result.lease.attempt,
        },
      );
    }
    return { claimed: true, pk, lease: result.lease, run: () => this.start(active) };
  }

  /**
   * Convenience: {@link ProcessExecutor.claim}, then `onClaimed()` (ack the delivery there), then
   * run. Resolves with the outcome, or `dropped` and the reason when the claim was refused.
   */
  async claimAndRun(
    pk: number,
    options: { onClaimed?: () => void } = {},
  ): Promise<{ pk: number; outcome: RunOutcome | 'dropped'; reason?: string }> {
    const claim = await this.claim(pk);
    if (!claim.claimed) return { pk, outcome: 'dropped', reason: claim.reason };
    options.onClaimed?.();
    return { pk, outcome: await claim.run() };
  }

  /**
   * Runs a process whose lease this owner already holds (created with `createClaimedProcess`,
   * as `run()` does). Resolves when it ends.
   */
  runClaimed(lease: Lease, record: ProcessRecord): Promise<RunOutcome> {
    return this.start(this.adopt(lease, record, this.clock.now()));
  }

  /** `askedAt`: this host's time before the lease was asked for (the lease counts from after). */
  private adopt(lease: Lease, record: ProcessRecord, askedAt: number): ActiveProcess {
    const active = new ActiveProcess(lease, record, askedAt + this.leaseTimeout * 1000);
    this.active.set(lease.pk, active);
    active.done.then(() => {
      if (this.active.get(lease.pk) === active) this.active.delete(lease.pk);
      if (active.forceTimer) clearTimeout(active.forceTimer);
    });
    return active;
  }

  private start(active: ActiveProcess): Promise<RunOutcome> {
    if (!active.started) {
      active.started = this.execute(active).then(
        (outcome) => {
          active.resolveDone(outcome);
          return active.done;
        },
        (error: unknown) => {
          if (stopKind(active) === 'lost') {
            active.resolveDone('lease_lost');
          } else {
            this.logger.error(
              `process ${active.pk}: executor failure, its lease is left to expire: ${describeError(error).message}`,
              { pk: active.pk },
            );
            active.finalized = true;
            active.controller.abort(new ProcessInterruptedError('lease_lost', 'executor failure'));
            active.resolveDone('abandoned');
          }
          return active.done;
        },
      );
    }
    return active.done;
  }

  // --- control --------------------------------------------------------------------------------

  /**
   * Renews every lease held, then applies what the store says: lost leases abort their bodies;
   * kill intents and exceeded time limits kill; the paused flag pauses or plays at the next step
   * boundary. Call it every heartbeat (well inside the lease timeout).
   */
  async renewAll(): Promise<{ renewed: number[]; lost: number[] }> {
    const entries = [...this.active.values()].filter((a) => !a.finalized);
    if (entries.length === 0) return { renewed: [], lost: [] };
    const renewed: number[] = [];
    const lost: number[] = [];
    const startedAt = this.clock.now();
    let renewals: Awaited<ReturnType<ProcessStore['renewLeases']>>;
    try {
      renewals = await this.store.renewLeases(
        this.ownerId,
        entries.map((a) => a.pk),
        this.leaseTimeout,
      );
    } catch (error) {
      this.logger.warn(`lease renewal failed: ${describeError(error).message}`);
      // Without renewal, a lease past its expiry may already be someone else's: stop those bodies.
      for (const a of entries) {
        if (a.leaseExpiresAt <= this.clock.now()) {
          this.loseLease(a, 'its lease expired while the store could not be reached');
          lost.push(a.pk);
        }
      }
      return { renewed, lost };
    }
    for (const renewal of renewals) {
      const a = this.active.get(renewal.pk);
      if (!a || a.finalized) continue;
      if (!renewal.held) {
        this.loseLease(a, 'the store no longer lists this worker as its owner');
        lost.push(a.pk);
        continue;
      }
      renewed.push(a.pk);
      a.leaseExpiresAt = startedAt + this.leaseTimeout * 1000;
      a.pauseRequested = renewal.paused;
      if (renewal.kill) {
        this.applyKill(a, renewal.kill.message ?? 'killed by request', renewal.kill.force);
      } else if (renewal.timeLimitExceeded !== null) {
        this.applyKill(a, `time limit of ${renewal.timeLimitExceeded} s exceeded`, true);
      }
    }
    return { renewed, lost };
  }

  /** Calls {@link ProcessExecutor.renewAll} every `intervalSeconds` (unref'd timer). */
  startHeartbeat(intervalSeconds: number): void {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => {
      if (this.renewing) return;
      this.renewing = this.renewAll()
        .then(() => undefined)
        .catch((error: unknown) => {
          this.logger.warn(`heartbeat failed: ${describeError(error).message}`);
        })
        .finally(() => {
          this.renewing = undefined;
        });
    }, intervalSeconds * 1000);
    this.heartbeat.unref();
  }

  stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /** Pauses a held process at its next step boundary. False when this executor doesn't hold it. */
  pause(pk: number): boolean {
    const a = this.active.get(pk);
    if (!a) return false;
    a.pauseRequested = true;
    return true;
  }

  /** Cancels a pause that has not taken effect yet. False when this executor doesn't hold it. */
  play(pk: number): boolean {
    const a = this.active.get(pk);
    if (!a) return false;
    a.pauseRequested = false;
    return true;
  }

  /**
   * Kills a held process: aborts its body's signal (its process group is terminated), and with
   * `force` commits `killed` after `killGrace` seconds whatever the body does. False when this
   * executor doesn't hold it.
   */
  kill(pk: number, options: { message?: string; force?: boolean } = {}): boolean {
    const a = this.active.get(pk);
    if (!a) return false;
    this.applyKill(a, options.message ?? 'killed by request', options.force ?? false);
    return true;
  }

  /** Aborts a held process's body because its lease is known lost elsewhere; writes nothing. */
  abort(pk: number, reason: string): boolean {
    const a = this.active.get(pk);
    if (!a) return false;
    this.loseLease(a, reason);
    return true;
  }

  /** What `status` RPC answers for a held process, or undefined. */
  status(pk: number): RpcProcessStatus | undefined {
    const a = this.active.get(pk);
    if (!a) return undefined;
    return { pk, state: a.state, paused: a.pauseRequested, owner: this.ownerId };
  }

  /** Answers a control RPC addressed to a process (pause, play, kill, status). */
  async handleRpc(request: RpcRequest): Promise<RpcReply> {
    const pk = request.pk;
    if (!this.active.has(pk)) {
      return {
        v: PROTOCOL_VERSION,
        ok: false,
        error: {
          code: EngineErrorCodes.processNotFound,
          message: `process ${pk} is not held by ${this.ownerId}`,
          details: { pk },
        },
      };
    }
    switch (request.intent) {
      case 'pause':
        this.pause(pk);
        break;
      case 'play':
        this.play(pk);
        break;
      case 'kill':
        this.kill(pk, { message: request.message, force: request.force });
        break;
      case 'status':
        break;
    }
    return { v: PROTOCOL_VERSION, ok: true, result: this.status(pk) };
  }

  /**
   * Stops taking work and hands back what it holds, within `timeoutSeconds`: workflows stop at
   * their next step boundary (checkpointed, lease released, task re-published); calculations may
   * finish. At the deadline the rest get a `shutdown` abort; those that stop within a second are
   * released as interrupted (their next attempt number is higher); bodies that ignore it are
   * abandoned and their leases expire.
   */
  async drain(timeoutSeconds: number): Promise<DrainReport> {
    this.draining = true;
    const report: DrainReport = { completed: [], released: [], abandoned: [] };
    const entries = [...this.active.values()];
    for (const a of entries) a.drainRequested = true;
    const outcomes = new Map<number, RunOutcome>();
    for (const a of entries) a.done.then((o) => outcomes.set(a.pk, o));
    await settleWithin(
      entries.map((a) => a.done),
      timeoutSeconds * 1000,
    );
    const late = entries.filter((a) => !outcomes.has(a.pk));
    for (const a of late) {
      if (!a.stop) a.stop = { kind: 'shutdown' };
      a.controller.abort(new ProcessInterruptedError('shutdown', 'the worker is shutting down'));
    }
    if (late.length > 0) {
      await settleWithin(
        late.map((a) => a.done),
        Math.min(1000, Math.max(0, timeoutSeconds * 1000)),
      );
    }
    for (const a of entries) {
      const outcome = outcomes.get(a.pk);
      if (outcome === 'released') report.released.push(a.pk);
      else if (outcome === undefined || outcome === 'abandoned') {
        report.abandoned.push(a.pk);
        a.finalized = true;
        if (a.group) void killProcessGroup(a.group, { trusted: true, grace: 0.5 });
        a.resolveDone('abandoned');
      } else report.completed.push(a.pk);
    }
    this.stopHeartbeat();
    return report;
  }

  private applyKill(a: ActiveProcess, message: string, force: boolean): void {
    if (a.finalized) return;
    if (a.stop?.kind === 'kill') {
      if (force && !a.stop.force) {
        a.stop.force = true;
        this.scheduleForce(a);
      }
      return;
    }
    if (stopKind(a) === 'lost') return;
    a.stop = { kind: 'kill', message, force };
    a.controller.abort(new ProcessInterruptedError('killed', message));
    if (force) this.scheduleForce(a);
  }

  private scheduleForce(a: ActiveProcess): void {
    if (a.forceTimer) return;
    a.forceTimer = setTimeout(() => {
      const stop = a.stop;
      if (a.finalized || stop?.kind !== 'kill') return;
      const message = stop.message;
      if (a.group) void killProcessGroup(a.group, { trusted: true, grace: 0.5 });
      void this.finish(a, { state: 'killed', processStatus: `Killed: ${message}` }).then((o) =>
        a.resolveDone(o),
      );
    }, this.killGrace * 1000);
    a.forceTimer.unref();
  }

  private loseLease(a: ActiveProcess, reason: string): void {
    if (a.finalized) return;
    a.stop = { kind: 'lost', message: reason };
    a.finalized = true;
    this.logger.warn(`process ${a.pk}: lease lost (${reason}); its body is aborted`, { pk: a.pk });
    a.controller.abort(new ProcessInterruptedError('lease_lost', `lease lost: ${reason}`));
    a.resolveDone('lease_lost');
  }

  // --- fenced writes --------------------------------------------------------------------------

  private async fenced<T>(a: ActiveProcess, write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (error) {
      if (isEngineError(error) && error.code === EngineErrorCodes.leaseLost) {
        this.loseLease(a, error.message);
      }
      throw error;
    }
  }

  /** Commits a terminal result (once); carries out its effects. */
  private async finish(a: ActiveProcess, result: TerminalResult): Promise<RunOutcome> {
    if (a.finalized) return stopKind(a) === 'lost' ? 'lease_lost' : result.state;
    a.finalized = true;
    let effects: TerminalEffects;
    try {
      effects = this.writes
        ? ((await this.writes.submit({
            kind: 'complete',
            fence: a.fence,
            result,
          })) as TerminalEffects)
        : await this.store.complete(a.fence, result);
    } catch (error) {
      if (isEngineError(error) && error.code === EngineErrorCodes.leaseLost) {
        // Fencing at work: another owner took the process over (or it ended) while this one ran.
        this.logger.warn(
          `process ${a.pk}: its ${result.state} result was refused: ${error.message}`,
          { pk: a.pk },
        );
        a.stop = { kind: 'lost', message: error.message };
        a.controller.abort(new ProcessInterruptedError('lease_lost', error.message));
        return 'lease_lost';
      }
      this.logger.error(
        `process ${a.pk}: could not write its ${result.state} result: ${describeError(error).message}`,
        { pk: a.pk },
      );
      return 'abandoned';
    }
    a.state = result.state;
    if (!a.controller.signal.aborted) {
      // Nothing is interrupted here (the body is done): a shared reason per state, so that no error
      // with its stack is built for every process that ends.
      a.controller.abort(endedReason(result.state));
    }
    this.handleEffects(effects);
    return result.state;
  }

  /** Commits `excepted` with the error's stack; the status is `Excepted: <context><message>`. */
  private except(a: ActiveProcess, error: unknown, context = ''): Promise<RunOutcome> {
    const { message, stack } = describeError(error);
    return this.finish(a, {
      state: 'excepted',
      exception: stack,
      processStatus: `Excepted: ${context}${message}`,
    });
  }

  private async releaseLease(
    a: ActiveProcess,
    options: { interrupted?: boolean; checkpoint?: JsonValue; processStatus?: string | null },
    outcome: 'released' | 'paused',
  ): Promise<RunOutcome> {
    if (a.finalized) return stopKind(a) === 'lost' ? 'lease_lost' : outcome;
    a.finalized = true;
    try {
      const { dispatch } = await this.store.release(a.fence, options);
      this.emit(a.pk, a.state, 'waiting');
      a.state = 'waiting';
      if (dispatch) await this.dispatch([a.pk]);
      return outcome;
    } catch (error) {
      if (isEngineError(error) && error.code === EngineErrorCodes.leaseLost) return 'lease_lost';
      this.logger.error(
        `process ${a.pk}: could not release its lease: ${describeError(error).message}`,
        { pk: a.pk },
      );
      return 'abandoned';
    }
  }

  private handleEffects(effects: TerminalEffects): void {
    for (const t of effects.terminated) this.emit(t.pk, t.from, t.state);
    if (effects.parentsToDispatch.length > 0) void this.dispatch(effects.parentsToDispatch);
    for (const { pk, owner, message } of effects.killRequested) {
      const here = this.active.get(pk);
      if (owner === this.ownerId && here) {
        this.applyKill(here, message, false);
      } else if (this.control) {
        requestKill(this.control, pk, message, this.rpcTimeout);
      }
    }
    for (const group of effects.orphanedGroups) {
      void killProcessGroup(group).catch(() => {});
    }
  }

  private async dispatch(pks: number[]): Promise<void> {
    if (!this.dispatcher || pks.length === 0) return;
    try {
      if (pks.length === 1) await this.dispatcher.publishContinue(pks[0]!);
      else await this.dispatcher.publishContinueMany(pks);
      await this.store.markDispatched(pks);
    } catch (error) {
      // The reconciler re-publishes rows that stay undispatched.
      this.logger.warn(
        `could not publish tasks for ${pks.join(', ')}: ${describeError(error).message}`,
        { pks },
      );
    }
  }

  private emit(pk: number, from: ProcessState, to: ProcessState): void {
    if (from === to || !this.onStateChange) return;
    try {
      this.onStateChange({ pk, from, to });
    } catch (error) {
      this.logger.warn(`state change listener failed: ${describeError(error).message}`);
    }
  }

  // --- execution ------------------------------------------------------------------------------

  private context(a: ActiveProcess): ProcessContext {
    const { pk, uuid, type } = a.record;
    return {
      pk,
      uuid,
      type,
      attempt: a.lease.attempt,
      epoch: a.lease.epoch,
      signal: a.controller.signal,
      report: async (message: string, level: ReportLevel = 'report') => {
        try {
          await this.store.addReport(pk, level, message);
        } catch (error) {
          this.logger.warn(`process ${pk}: report lost: ${describeError(error).message}`, { pk });
        }
      },
      recordProcessGroup: async (pgid: number | null) => {
        const group = pgid === null ? null : describeProcessGroup(pgid, uuid);
        if (group) a.group = group;
        await this.fenced(a, () => this.store.setProcessGroup(a.fence, group));
        a.group = group;
      },
    };
  }

  private async execute(a: ActiveProcess): Promise<RunOutcome> {
    const previous = a.record.processGroup;
    if (previous) {
      // Leftovers of an earlier attempt whose owner was lost: they go before anything runs again.
      const killed = await killProcessGroup(previous);
      if (killed)
        this.logger.warn(
          `process ${a.pk}: killed process group ${previous.pgid} of an earlier attempt`,
          { pk: a.pk },
        );
      try {
        await this.fenced(a, () => this.store.setProcessGroup(a.fence, null));
      } catch {
        return 'lease_lost';
      }
    }
    const definition = this.registry.get(a.record.type);
    if (!definition) {
      const error = this.registry.unknownTypeError(a.record.type);
      return this.finish(a, {
        state: 'excepted',
        exception: `${error.code}: ${error.message}`,
        processStatus: 'Excepted: unknown process type',
      });
    }
    let inputs: unknown;
    try {
      const parsed = definition.inputs.safeParse(a.record.inputs);
      if (!parsed.success) {
        validateJson(definition.inputs, a.record.inputs, { kind: 'inputs', type: a.record.type });
      }
      inputs = parsed.data;
    } catch (error) {
      return this.except(a, error);
    }
    if (definition.kind === 'calculation') return this.runCalculation(a, definition, inputs);
    return this.runWorkflow(a, definition, inputs);
  }

  /** Outcome when the body was stopped (kill, lost lease, shutdown), whatever it did. */
  private async stopped(
    a: ActiveProcess,
    atBoundary: boolean,
    checkpoint?: JsonValue,
  ): Promise<RunOutcome> {
    const stop = a.stop!;
    if (stop.kind === 'lost') return 'lease_lost';
    if (stop.kind === 'kill') {
      return this.finish(a, { state: 'killed', processStatus: `Killed: ${stop.message}` });
    }
    return this.releaseLease(
      a,
      atBoundary
        ? { checkpoint, processStatus: 'Released: the worker shut down' }
        : { interrupted: true, processStatus: 'Interrupted: the worker shut down' },
      'released',
    );
  }

  private async runCalculation(
    a: ActiveProcess,
    definition: CalculationDefinition,
    inputs: unknown,
  ): Promise<RunOutcome> {
    if (a.stop) return this.stopped(a, false);
    let result: unknown;
    try {
      result = await definition.run(inputs, this.context(a));
    } catch (error) {
      if (a.finalized) return endedByStop(a);
      if (a.stop) return this.stopped(a, false);
      return this.except(a, error);
    }
    if (a.finalized) return endedByStop(a);
    if (stopKind(a) === 'kill' || stopKind(a) === 'lost') return this.stopped(a, false);
    return this.finishWithResult(a, definition.outputs, result);
  }

  private async finishWithResult(
    a: ActiveProcess,
    outputsSchema: CalculationDefinition['outputs'],
    result: unknown,
  ): Promise<RunOutcome> {
    if (isExitCode(result)) {
      return this.finish(a, {
        state: 'finished',
        outputs: result.outputs === undefined ? null : toJson(result.outputs),
        exitStatus: result.status,
        exitMessage: result.message,
      });
    }
    let outputs: JsonValue;
    try {
      outputs = validateJson(outputsSchema, result, { kind: 'outputs', type: a.record.type });
    } catch (error) {
      return this.except(a, error);
    }
    return this.finish(a, { state: 'finished', outputs, exitStatus: 0 });
  }

  private loadCheckpoint(a: ActiveProcess, definition: WorkflowDefinition): WorkflowCheckpoint {
    const stored = a.record.checkpoint as WorkflowCheckpoint | null;
    if (stored === null) {
      return {
        v: 1,
        fingerprint: definition.fingerprint,
        pc: 0,
        stepCount: 0,
        vars: {},
        outputs: {},
        children: {},
        pending: [],
      };
    }
    if (stored.v !== 1 || stored.fingerprint !== definition.fingerprint) {
      throw new EngineError(
        EngineErrorCodes.internal,
        `the checkpoint of workflow ${a.pk} was written for another outline of '${definition.name}' ` +
          '(the plugin changed while it ran); it cannot be resumed',
      );
    }
    return stored;
  }

  private async runWorkflow(
    a: ActiveProcess,
    definition: WorkflowDefinition,
    inputs: unknown,
  ): Promise<RunOutcome> {
    let cp: WorkflowCheckpoint;
    try {
      cp = this.loadCheckpoint(a, definition);
    } catch (error) {
      return this.except(a, error);
    }
    const program = definition.program;
    for (;;) {
      // Children of the last step: wait for them (parked, or here in local mode), then collect.
      if (cp.pending.length > 0) {
        const waited = await this.awaitChildren(a, cp);
        if (waited !== 'continue') return waited;
      }
      // Step boundary: everything before is checkpointed.
      if (a.stop) return this.stopped(a, true, cp as unknown as JsonValue);
      if (a.drainRequested) {
        return this.releaseLease(
          a,
          {
            checkpoint: cp as unknown as JsonValue,
            processStatus: 'Released: the worker shut down',
          },
          'released',
        );
      }
      if (a.pauseRequested) {
        const paused = await this.pauseAtBoundary(a, cp);
        if (paused !== 'continue') return paused;
        continue;
      }
      // Follow control flow to the next step.
      const view = { inputs, vars: cp.vars, children: cp.children, outputs: cp.outputs };
      let instruction = program[cp.pc];
      try {
        let hops = 0;
        while (instruction && (instruction.op === 'branch' || instruction.op === 'jump')) {
          if (++hops > 100_000) {
            throw new Error('the outline loops without reaching a step (a while_ with no steps?)');
          }
          if (instruction.op === 'jump') cp.pc = instruction.to;
          else cp.pc = instruction.condition(view) ? cp.pc + 1 : instruction.ifFalse;
          instruction = program[cp.pc];
        }
      } catch (error) {
        return this.except(a, error, 'an outline condition failed: ');
      }
      if (!instruction) return this.finishWithResult(a, definition.outputs, cp.outputs);
      if (instruction.op === 'return') {
        if (instruction.status === 0)
          return this.finishWithResult(a, definition.outputs, cp.outputs);
        return this.finish(a, {
          state: 'finished',
          outputs: cp.outputs,
          exitStatus: instruction.status,
          exitMessage: instruction.message,
        });
      }
      const stepName = instruction.name;
      const submitted: {
        name: string;
        pk: number;
        created: boolean;
        lease: Lease | null;
        record: ProcessRecord;
      }[] = [];
      const ctx = this.workflowContext(a, cp, inputs, stepName, submitted);
      let result: unknown;
      try {
        result = await definition.steps[stepName]!(ctx);
      } catch (error) {
        await this.startLocalChildren(a, submitted);
        if (a.finalized) return endedByStop(a);
        if (a.stop) return this.stopped(a, false);
        return this.except(a, error, `step '${stepName}' failed: `);
      }
      if (a.finalized) return endedByStop(a);
      cp.pc += 1;
      cp.stepCount += 1;
      cp.vars = toJson(cp.vars) as JsonObject;
      cp.outputs = toJson(cp.outputs) as JsonObject;
      cp.pending = submitted.map((s) => ({ name: s.name, pk: s.pk }));
      if (stopKind(a) === 'kill' || stopKind(a) === 'lost') return this.stopped(a, false);
      if (isExitCode(result)) {
        return this.finish(a, {
          state: 'finished',
          outputs: cp.outputs,
          exitStatus: result.status,
          exitMessage: result.message,
        });
      }
      if (submitted.length > 0) {
        // Children first, so that none is left undispatched if this worker dies now.
        if (this.mode === 'daemon') {
          await this.dispatch(
            submitted.filter((s) => !isTerminal(s.record.state)).map((s) => s.pk),
          );
        } else {
          await this.startLocalChildren(a, submitted);
        }
        continue; // awaitChildren checkpoints (parks) at the top of the loop
      }
      try {
        const r = await this.fenced(a, () =>
          this.store.writeCheckpoint(a.fence, cp as unknown as JsonValue, {
            processStatus: `Step '${stepName}' done`,
          }),
        );
        if (r.paused) a.pauseRequested = true;
        if (r.kill) this.applyKill(a, r.kill.message ?? 'killed by request', r.kill.force);
      } catch (error) {
        if (stopKind(a) === 'lost') return 'lease_lost';
        throw error;
      }
    }
  }

  private workflowContext(
    a: ActiveProcess,
    cp: WorkflowCheckpoint,
    inputs: unknown,
    stepName: string,
    submitted: {
      name: string;
      pk: number;
      created: boolean;
      lease: Lease | null;
      record: ProcessRecord;
    }[],
  ): WorkflowContext {
    const base = this.context(a);
    return {
      ...base,
      inputs,
      vars: cp.vars,
      children: cp.children,
      outputs: cp.outputs,
      out: (name: string, value: JsonValue) => {
        cp.outputs[name] = value;
      },
      submit: async (type, childInputs, options = {}) => {
        const index = submitted.length;
        const definition = this.registry.require(type);
        const json = validateJson(definition.inputs, childInputs, { kind: 'inputs', type });
        checkInputSize(type, json, this.maxInputBytes);
        const claimFor =
          this.mode === 'local'
            ? { ownerId: this.ownerId, leaseSeconds: this.leaseTimeout }
            : undefined;
        const { record, created, lease } = await this.fenced(a, () =>
          this.store.createChild(
            a.fence,
            `${cp.stepCount}:${index}`,
            { type, inputs: json, timeLimit: options.timeLimit ?? null },
            claimFor,
          ),
        );
        submitted.push({
          name: options.as ?? `${stepName}.${index}`,
          pk: record.pk,
          created,
          lease,
          record,
        });
        return { pk: record.pk, uuid: record.uuid };
      },
    };
  }

  private startLocalChildren(
    a: ActiveProcess,
    submitted: { pk: number; lease: Lease | null; record: ProcessRecord }[],
  ): Promise<void> {
    if (this.mode !== 'local') return Promise.resolve();
    for (const s of submitted) {
      if (s.lease && !this.active.has(s.pk)) {
        void this.runClaimed(s.lease, s.record);
        this.emit(s.pk, 'created', 'running');
      }
    }
    void a;
    return Promise.resolve();
  }

  /** Waits for the children of the last step; `continue` once all are terminal and collected. */
  private async awaitChildren(
    a: ActiveProcess,
    cp: WorkflowCheckpoint,
  ): Promise<RunOutcome | 'continue'> {
    const pks = cp.pending.map((p) => p.pk);
    if (this.mode === 'daemon') {
      let parked: 'parked' | 'continue';
      try {
        parked = await this.fenced(a, () =>
          this.store.park(a.fence, cp as unknown as JsonValue, pks),
        );
      } catch (error) {
        if (stopKind(a) === 'lost') return 'lease_lost';
        throw error;
      }
      if (parked === 'parked') {
        a.finalized = true;
        this.emit(a.pk, a.state, 'waiting');
        a.state = 'waiting';
        return 'parked';
      }
    } else {
      await this.fenced(a, () =>
        this.store.writeCheckpoint(a.fence, cp as unknown as JsonValue, {
          state: 'waiting',
          processStatus: `Waiting for child processes: ${pks.join(', ')}`,
        }),
      );
      this.emit(a.pk, a.state, 'waiting');
      a.state = 'waiting';
      for (;;) {
        if (a.stop) return this.stopped(a, true, cp as unknown as JsonValue);
        const localRuns = pks.map((pk) => this.active.get(pk)).filter((c) => c !== undefined);
        const rows = await this.store.getProcesses(pks);
        if (rows.length === pks.length && rows.every((r) => isTerminal(r.state))) break;
        // Children nobody runs (a step that ran again found existing ones): take them on here.
        for (const r of rows) {
          if (!isTerminal(r.state) && !this.active.has(r.pk) && r.runnable && !r.paused) {
            const claim = await this.claim(r.pk);
            if (claim.claimed) void claim.run();
          }
        }
        const tick = new Promise((resolve) => setTimeout(resolve, this.pollInterval * 1000));
        await Promise.race([tick, ...localRuns.map((c) => c.done)]);
      }
      await this.fenced(a, () =>
        this.store.writeCheckpoint(a.fence, cp as unknown as JsonValue, {
          state: 'running',
          processStatus: null,
        }),
      );
      this.emit(a.pk, 'waiting', 'running');
      a.state = 'running';
    }
    const rows = await this.store.getProcesses(pks);
    const byPk = new Map(rows.map((r) => [r.pk, r]));
    for (const p of cp.pending) cp.children[p.name] = childResultOf(byPk.get(p.pk), p.pk);
    cp.pending = [];
    cp.children = toJson(cp.children) as unknown as Record<string, ChildResult>;
    return 'continue';
  }

  private async pauseAtBoundary(
    a: ActiveProcess,
    cp: WorkflowCheckpoint,
  ): Promise<RunOutcome | 'continue'> {
    if (this.mode === 'daemon') {
      return this.releaseLease(
        a,
        { checkpoint: cp as unknown as JsonValue, processStatus: 'Paused' },
        'paused',
      );
    }
    // Local: keep the lease (the caller is waiting for the result) until played or killed.
    await this.fenced(a, () =>
      this.store.writeCheckpoint(a.fence, cp as unknown as JsonValue, { processStatus: 'Paused' }),
    );
    while (a.pauseRequested && !a.stop) {
      await new Promise((resolve) => setTimeout(resolve, this.pollInterval * 1000));
      const row = await this.store.getProcess(a.pk);
      if (row && !row.paused) a.pauseRequested = false;
    }
    return 'continue';
  }
}
