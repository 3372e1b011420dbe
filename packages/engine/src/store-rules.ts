import { type ProcessState, TERMINAL_STATES } from '@aiida/ipc';
import { EngineError, EngineErrorCodes } from './errors.js';
import type { JsonValue } from './json.js';
import type {
  ClaimBatchItem,
  ClaimResult,
  ControlRequestOutcome,
  DeleteSelection,
  Lease,
  LeaseFence,
  LeaseRenewal,
  ProcessGroupRecord,
  ProcessRecord,
  TerminalEffects,
  TerminalResult,
  WorkerRecord,
} from './process-store.js';

/**
 * The rules of the process store, written once for every backend.
 *
 * Each decision (why a claim is refused, the cascade when a process ends, park and wake, the
 * outcome of a control request, the lease rule) is a generator that yields {@link StoreOp}s: small
 * reads and writes a backend carries out with its own SQL, inside its own transaction. The SQLite
 * backend drives a rule synchronously with {@link runRuleSync}, the PostgreSQL one asynchronously
 * with {@link runRuleAsync}; neither decides anything itself. Times are milliseconds since the
 * Unix epoch, taken once per transaction from the backend's clock (the database's, for
 * PostgreSQL), and passed in as `now`.
 */

/** What the rules read of a process row. */
export interface RuleRow {
  pk: number;
  state: ProcessState;
  paused: boolean;
  runnable: boolean;
  owner: string | null;
  epoch: number;
  attempts: number;
  ownerLosses: number;
  /** Milliseconds since the epoch, or null when unowned. */
  leaseExpiresAt: number | null;
  /** Milliseconds since the epoch. */
  createdAt: number;
  timeLimit: number | null;
  parentPk: number | null;
  processGroup: ProcessGroupRecord | null;
}

/** A pending kill request on a process. */
export interface KillIntent {
  message: string | null;
  force: boolean;
}

/** One read or write a rule asks its backend to carry out (in the rule's transaction). */
export type StoreOp =
  /** Read one row; answer a {@link RuleRow} or undefined. */
  | { op: 'row'; pk: number }
  /**
   * Pks of claim candidates above `afterPk`, lowest (oldest) first, at most `limit`: the rows
   * {@link claimableSql} selects at `now`. PostgreSQL locks them (`FOR UPDATE SKIP LOCKED`), so
   * concurrent batch claimers take different rows. Answer number[].
   */
  | { op: 'claimable'; afterPk: number; limit: number; now: number }
  /** Read the non-terminal children of `pk`; answer {@link RuleRow}[]. */
  | { op: 'liveChildren'; pk: number }
  /** Read the strongest pending kill intent of `pk` (force first, then oldest); answer {@link KillIntent} or null. */
  | { op: 'pendingKill'; pk: number }
  /**
   * Make `pk` terminal with `result`: owner and lease cleared, not runnable, not paused, checkpoint
   * cleared, `finished_at` set; delete its control intents.
   */
  | { op: 'terminalize'; pk: number; result: TerminalResult; now: number }
  /** Record how often the owner was lost (after a poisoned claim). */
  | { op: 'setLosses'; pk: number; ownerLosses: number; attempts: number }
  /** Insert a control intent. */
  | {
      op: 'intent';
      pk: number;
      intent: 'pause' | 'play' | 'kill';
      message: string | null;
      force: boolean;
      now: number;
    }
  /** Parent wakes: runnable, not dispatched, status cleared. */
  | { op: 'wake'; pk: number; now: number }
  /**
   * Take the lease: owner, epoch + 1, lease expiry, attempts, owner losses, state `running`, status
   * cleared, `started_at` kept or set. Answer the updated {@link ProcessRecord}.
   */
  | {
      op: 'claim';
      pk: number;
      owner: string;
      leaseExpiresAt: number;
      attempts: number;
      ownerLosses: number;
      now: number;
    }
  /** Park: checkpoint, state `waiting`, not runnable, lease and dispatch cleared, status set. */
  | { op: 'park'; pk: number; checkpoint: JsonValue; processStatus: string; now: number }
  /** Write the checkpoint only (park that continues). */
  | { op: 'keepCheckpoint'; pk: number; checkpoint: JsonValue; now: number }
  /** Set or clear the paused flag with its status. */
  | { op: 'setPaused'; pk: number; paused: boolean; processStatus: string | null; now: number }
  /** Clear `dispatched_at` (the task must be published again). */
  | { op: 'undispatch'; pk: number }
  /** Terminal pks (in `states`) that finished at or before `cutoff`; answer number[]. */
  | { op: 'oldTerminal'; cutoff: number; states: readonly ProcessState[] }
  /** `roots` and all their descendants; answer {@link TreeRow}[]. */
  | { op: 'tree'; roots: number[] }
  /** Delete rows, their intents and reports. */
  | { op: 'deleteRows'; pks: number[] };

/** A node of a process tree, for deletion. */
export interface TreeRow {
  pk: number;
  state: ProcessState;
  parentPk: number | null;
}

interface OpAnswers {
  row: RuleRow | undefined;
  liveChildren: RuleRow[];
  pendingKill: KillIntent | null;
  claimable: number[];
  claim: ProcessRecord;
  oldTerminal: number[];
  tree: TreeRow[];
}

/** A rule: yields operations, receives their answers, returns its decision. */
export type Rule<T> = Generator<StoreOp, T, unknown>;

function* ask<K extends StoreOp['op']>(
  op: Extract<StoreOp, { op: K }>,
): Rule<K extends keyof OpAnswers ? OpAnswers[K] : undefined> {
  return (yield op) as K extends keyof OpAnswers ? OpAnswers[K] : undefined;
}

/** Runs a rule against a synchronous backend (inside its transaction). */
export function runRuleSync<T>(rule: Rule<T>, exec: (op: StoreOp) => unknown): T {
  let step = rule.next();
  while (!step.done) step = rule.next(exec(step.value));
  return step.value;
}

/** Runs a rule against an asynchronous backend (inside its transaction). */
export async function runRuleAsync<T>(
  rule: Rule<T>,
  exec: (op: StoreOp) => Promise<unknown>,
): Promise<T> {
  let step = rule.next();
  while (!step.done) step = rule.next(await exec(step.value));
  return step.value;
}

// --- pure rules ----------------------------------------------------------------------------------

/** True for `finished`, `excepted` and `killed`. */
export function isTerminalState(state: ProcessState): boolean {
  return TERMINAL_STATES.includes(state);
}

/**
 * The lease rule: a row is held while it has an owner whose lease expires after `now` (the
 * backend's clock). Every other check of ownership goes through it.
 */
export function isLeaseLive(
  row: { owner: string | null; leaseExpiresAt: number | null },
  now: number,
): boolean {
  return row.owner !== null && row.leaseExpiresAt !== null && row.leaseExpiresAt > now;
}

/** Expiry of a lease of `seconds` taken at `now`. */
export function leaseExpiry(now: number, seconds: number): number {
  return now + seconds * 1000;
}

/** True when the time limit (seconds from creation) is exceeded at `now`. */
export function timeLimitExceeded(
  row: { createdAt: number; timeLimit: number | null },
  now: number,
): boolean {
  return row.timeLimit !== null && row.createdAt + row.timeLimit * 1000 <= now;
}

/** An empty set of terminal effects. */
export function emptyEffects(): TerminalEffects {
  return { terminated: [], parentsToDispatch: [], killRequested: [], orphanedGroups: [] };
}

/** The error of a fenced write whose fence no longer holds. */
export function leaseLostError(pk: number, detail: string): EngineError {
  return new EngineError(
    EngineErrorCodes.leaseLost,
    `lease of process ${pk} lost: ${detail}; this holder must stop working on it`,
    { details: { pk } },
  );
}

/**
 * The fence rule: a write by `fence` is allowed only while the row exists, is not terminal, and is
 * held by the same owner at the same epoch. Returns the error to throw, or null.
 */
export function fenceViolation(
  row: Pick<RuleRow, 'state' | 'owner' | 'epoch'> | undefined,
  fence: LeaseFence,
): EngineError | null {
  if (!row) return leaseLostError(fence.pk, 'the process no longer exists');
  if (isTerminalState(row.state)) return leaseLostError(fence.pk, `it is already ${row.state}`);
  if (row.owner !== fence.ownerId || row.epoch !== fence.epoch) {
    return leaseLostError(
      fence.pk,
      `held by ${row.owner ?? 'no one'} at epoch ${row.epoch}, not ${fence.ownerId} at epoch ${fence.epoch}`,
    );
  }
  return null;
}

/** Reads the row of `fence` and throws `lease_lost` unless the fence holds. */
export function* checkFence(fence: LeaseFence): Rule<RuleRow> {
  const row = yield* ask({ op: 'row', pk: fence.pk });
  const violation = fenceViolation(row, fence);
  if (violation) throw violation;
  return row!;
}

/** The lease of a freshly claimed or created record. */
export function leaseOf(record: ProcessRecord): Lease {
  return {
    pk: record.pk,
    ownerId: record.owner!,
    epoch: record.epoch,
    attempt: record.attempts,
    expiresAt: Date.parse(record.leaseExpiresAt!),
  };
}

/**
 * What the owner learns on renewal of `pk`: `held` unless the row is missing from `renewed` (the
 * rows whose lease the backend extended for this owner), plus its pause flag, kill intent and time
 * limit.
 */
export function renewalOf(
  pk: number,
  renewed: { paused: boolean; createdAt: number; timeLimit: number | null } | undefined,
  kill: KillIntent | undefined,
  now: number,
): LeaseRenewal {
  if (!renewed) return { pk, held: false, paused: false, kill: null, timeLimitExceeded: null };
  return {
    pk,
    held: true,
    paused: renewed.paused,
    kill: kill ?? null,
    timeLimitExceeded: timeLimitExceeded(renewed, now) ? renewed.timeLimit : null,
  };
}

/** Merges kill intents of one pk (oldest first): the first message, force if any forces. */
export function mergeKillIntents(
  intents: Iterable<{ pk: number; message: string | null; force: boolean }>,
): Map<number, KillIntent> {
  const kills = new Map<number, KillIntent>();
  for (const k of intents) {
    const previous = kills.get(k.pk);
    kills.set(k.pk, {
      message: previous?.message ?? k.message,
      force: (previous?.force ?? false) || k.force,
    });
  }
  return kills;
}

/** The election rule: `ownerId` may take or renew the leader lease unless another holds it live. */
export function mayLead(
  current: { owner: string; leaseExpiresAt: number } | undefined,
  ownerId: string,
  now: number,
): boolean {
  return !current || current.owner === ownerId || current.leaseExpiresAt <= now;
}

/** A row of the `workers` table (times in milliseconds, by the store's clock). */
export interface WorkerRow {
  worker_id: string;
  hostname: string;
  pid: number;
  slots_used: number;
  slots_total: number;
  started_at: number;
  last_heartbeat_at: number;
}

/**
 * A worker of the registry as the store reports it: stale when its latest heartbeat is older than
 * `staleAfterSeconds` at `now` (the same rule as a lease: no heartbeat for a lease timeout).
 */
export function workerRecordOf(
  row: WorkerRow,
  now: number,
  staleAfterSeconds: number,
): WorkerRecord {
  return {
    workerId: row.worker_id,
    hostname: row.hostname,
    pid: Number(row.pid),
    slotsUsed: Number(row.slots_used),
    slotsTotal: Number(row.slots_total),
    startedAt: new Date(Number(row.started_at)).toISOString(),
    lastHeartbeatAt: new Date(Number(row.last_heartbeat_at)).toISOString(),
    stale: Number(row.last_heartbeat_at) + staleAfterSeconds * 1000 < now,
  };
}

/** The status of a parked workflow. */
export function waitingStatus(livePks: number[], waitingOn: number[]): string {
  const shown = waitingOn.length > 0 ? waitingOn.filter((pk) => livePks.includes(pk)) : livePks;
  const n = livePks.length;
  return `Waiting for ${n} child process${n === 1 ? '' : 'es'}: ${(shown.length > 0 ? shown : livePks).join(', ')}`;
}

// --- transactional rules -------------------------------------------------------------------------

/**
 * Makes `pk` terminal (if it is not already) and carries out the consequences in the same
 * transaction: kill live children of a killed or excepted workflow (by intent when they have a live
 * owner), wake a parent whose children are all done. `byOwner` is false when the row is ended
 * without its holder (kill, poison, time limit): its recorded process group is then orphaned.
 */
export function* terminate(
  pk: number,
  result: TerminalResult,
  effects: TerminalEffects,
  byOwner: boolean,
  now: number,
  /** The row as read earlier in this transaction, with no write to it since (saves a read). */
  known?: RuleRow,
): Rule<void> {
  const row = known ?? (yield* ask({ op: 'row', pk }));
  if (!row || isTerminalState(row.state)) return;
  yield* ask({ op: 'terminalize', pk, result, now });
  effects.terminated.push({ pk, state: result.state, from: row.state });
  if (!byOwner && row.processGroup !== null) effects.orphanedGroups.push(row.processGroup);
  if (result.state !== 'finished') {
    const reason = `parent process ${pk} was ${result.state}`;
    for (const child of yield* ask({ op: 'liveChildren', pk })) {
      if (isLeaseLive(child, now)) {
        yield* ask({
          op: 'intent',
          pk: child.pk,
          intent: 'kill',
          message: reason,
          force: false,
          now,
        });
        effects.killRequested.push({ pk: child.pk, owner: child.owner!, message: reason });
      } else {
        yield* terminate(
          child.pk,
          { state: 'killed', processStatus: `Killed: ${reason}` },
          effects,
          false,
          now,
        );
      }
    }
  }
  if (row.parentPk !== null) yield* wakeParent(row.parentPk, effects, now);
}

/** A parked parent whose children are all terminal becomes runnable; unowned and unpaused, it is dispatched. */
function* wakeParent(parentPk: number, effects: TerminalEffects, now: number): Rule<void> {
  const parent = yield* ask({ op: 'row', pk: parentPk });
  if (!parent || isTerminalState(parent.state) || parent.runnable) return;
  const live = yield* ask({ op: 'liveChildren', pk: parentPk });
  if (live.length > 0) return;
  yield* ask({ op: 'wake', pk: parentPk, now });
  if (!parent.paused && !isLeaseLive(parent, now)) effects.parentsToDispatch.push(parentPk);
}

/** The owner's terminal write: fenced, then {@link terminate}. */
export function* complete(
  fence: LeaseFence,
  result: TerminalResult,
  now: number,
): Rule<TerminalEffects> {
  const row = yield* checkFence(fence);
  const effects = emptyEffects();
  yield* terminate(fence.pk, result, effects, true, now, row);
  return effects;
}

/**
 * Several terminal writes: an item whose fence fails gets its `lease_lost` error in its place (the
 * fence is checked before anything of the item is written), the others are committed.
 */
export function* completeMany(
  items: { fence: LeaseFence; result: TerminalResult }[],
  now: number,
): Rule<(TerminalEffects | EngineError)[]> {
  const out: (TerminalEffects | EngineError)[] = [];
  for (const { fence, result } of items) {
    const row = yield* ask({ op: 'row', pk: fence.pk });
    const violation = fenceViolation(row, fence);
    if (violation) {
      out.push(violation);
      continue;
    }
    const effects = emptyEffects();
    yield* terminate(fence.pk, result, effects, true, now, row);
    out.push(effects);
  }
  return out;
}

/**
 * The claim rule. Refused for a missing, terminal, paused, parked (not runnable) row or one whose
 * lease is live. Otherwise, in this order: a pending kill intent or an exceeded time limit ends it
 * `killed`; an owner lost for the `maxAttempts`-th time ends it `excepted` (poison); else the lease
 * is granted, with attempt + 1 when the previous owner was lost.
 */
export function* claim(
  pk: number,
  ownerId: string,
  leaseSeconds: number,
  maxAttempts: number,
  now: number,
): Rule<ClaimResult> {
  const row = yield* ask({ op: 'row', pk });
  if (!row) return { ok: false, reason: 'not_found' };
  if (isTerminalState(row.state)) return { ok: false, reason: 'terminal' };
  if (row.paused) return { ok: false, reason: 'paused' };
  if (!row.runnable) return { ok: false, reason: 'not_runnable' };
  if (isLeaseLive(row, now)) return { ok: false, reason: 'owned' };
  const ownerLost = row.owner !== null;
  const kill = yield* ask({ op: 'pendingKill', pk });
  if (kill || timeLimitExceeded(row, now)) {
    const effects = emptyEffects();
    const processStatus = kill
      ? `Killed: ${kill.message ?? 'killed by request'}`
      : `Killed: time limit of ${row.timeLimit} s exceeded`;
    yield* terminate(pk, { state: 'killed', processStatus }, effects, false, now, row);
    return { ok: false, reason: 'killed', effects };
  }
  let attempts = row.attempts === 0 ? 1 : row.attempts;
  let losses = row.ownerLosses;
  if (ownerLost) {
    attempts = row.attempts + 1;
    losses += 1;
    if (losses >= maxAttempts) {
      const effects = emptyEffects();
      const reason =
        `owner lost ${losses} times (engine.max_attempts = ${maxAttempts}): ` +
        `the last owner was ${row.owner}; its body may crash or stall its worker`;
      yield* terminate(
        pk,
        { state: 'excepted', exception: reason, processStatus: reason },
        effects,
        false,
        now,
        row,
      );
      yield* ask({ op: 'setLosses', pk, ownerLosses: losses, attempts: row.attempts });
      return { ok: false, reason: 'poisoned', effects };
    }
  }
  const record = yield* ask({
    op: 'claim',
    pk,
    owner: ownerId,
    leaseExpiresAt: leaseExpiry(now, leaseSeconds),
    attempts,
    ownerLosses: losses,
    now,
  });
  return { ok: true, lease: leaseOf(record), record, previousState: row.state, ownerLost };
}

/**
 * Which rows a batch claim looks at, as a SQL condition on `processes` in a backend's dialect
 * (its terminal-state list, boolean literals and the parameter that holds `now`): not terminal, not paused, runnable (not
 * parked), and unowned or with an expired lease. It is the SQL form of the refusals of
 * {@link claim} and of {@link isLeaseLive}, and only narrows the search: every candidate still goes
 * through {@link claim}, which decides.
 */
export function claimableSql(
  terminalList: string,
  bool: (value: boolean) => string,
  nowParam: string,
): string {
  return `state NOT IN ${terminalList} AND paused = ${bool(false)} AND runnable = ${bool(true)}
   AND (owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at <= ${nowParam})`;
}

/** Candidate rounds of one {@link claimRunnable}, at most (a round that fills nothing ends it). */
const MAX_CLAIM_ROUNDS = 8;

/**
 * The batch claim: takes up to `limit` leases on claim candidates (see {@link claimableSql}),
 * oldest first, each through {@link claim}, in the caller's one transaction. A candidate that
 * {@link claim} ends instead (kill intent, time limit, poison) is returned with its refusal and
 * does not count against `limit`: the next round looks further.
 */
export function* claimRunnable(
  ownerId: string,
  leaseSeconds: number,
  maxAttempts: number,
  limit: number,
  now: number,
): Rule<ClaimBatchItem[]> {
  const out: ClaimBatchItem[] = [];
  let granted = 0;
  let afterPk = 0;
  for (let round = 0; granted < limit && round < MAX_CLAIM_ROUNDS; round++) {
    const want = limit - granted;
    const pks = yield* ask({ op: 'claimable', afterPk, limit: want, now });
    for (const pk of pks) {
      const result = yield* claim(pk, ownerId, leaseSeconds, maxAttempts, now);
      out.push({ pk, result });
      if (result.ok) granted++;
      afterPk = Math.max(afterPk, pk);
    }
    if (pks.length < want) break;
  }
  return out;
}

/**
 * The park rule: checkpoint and park (release the lease) while a child is live; if every child
 * already ended (checked in the same transaction), keep the lease and continue.
 */
export function* park(
  fence: LeaseFence,
  checkpoint: JsonValue,
  waitingOn: number[],
  now: number,
): Rule<'parked' | 'continue'> {
  yield* checkFence(fence);
  const live = yield* ask({ op: 'liveChildren', pk: fence.pk });
  if (live.length === 0) {
    yield* ask({ op: 'keepCheckpoint', pk: fence.pk, checkpoint, now });
    return 'continue';
  }
  const processStatus = waitingStatus(
    live.map((c) => c.pk),
    waitingOn,
  );
  yield* ask({ op: 'park', pk: fence.pk, checkpoint, processStatus, now });
  return 'parked';
}

/** Pause: set the flag (and an intent for a live owner, who releases the lease at a step boundary). */
export function* requestPause(
  pk: number,
  message: string | null,
  now: number,
): Rule<ControlRequestOutcome> {
  const row = yield* ask({ op: 'row', pk });
  if (!row) return { pk, status: 'not_found' };
  if (isTerminalState(row.state)) return { pk, status: 'terminal', state: row.state };
  if (row.paused) return { pk, status: 'unchanged' };
  yield* ask({
    op: 'setPaused',
    pk,
    paused: true,
    processStatus: `Paused${message ? `: ${message}` : ''}`,
    now,
  });
  yield* ask({ op: 'intent', pk, intent: 'pause', message, force: false, now });
  if (isLeaseLive(row, now)) return { pk, status: 'requested', owner: row.owner! };
  return { pk, status: 'applied' };
}

/** Play: clear the flag; an unowned runnable row must be dispatched again. */
export function* requestPlay(pk: number, now: number): Rule<ControlRequestOutcome> {
  const row = yield* ask({ op: 'row', pk });
  if (!row) return { pk, status: 'not_found' };
  if (isTerminalState(row.state)) return { pk, status: 'terminal', state: row.state };
  if (!row.paused) return { pk, status: 'unchanged' };
  yield* ask({ op: 'setPaused', pk, paused: false, processStatus: null, now });
  yield* ask({ op: 'intent', pk, intent: 'play', message: null, force: false, now });
  if (isLeaseLive(row, now)) return { pk, status: 'requested', owner: row.owner! };
  const dispatch = row.runnable;
  if (dispatch) yield* ask({ op: 'undispatch', pk });
  return { pk, status: 'applied', dispatch };
}

/** Kill: an intent for a live owner; else killed in the store at once, with the cascade. */
export function* requestKill(
  pk: number,
  message: string | null,
  force: boolean,
  now: number,
): Rule<ControlRequestOutcome> {
  const row = yield* ask({ op: 'row', pk });
  if (!row) return { pk, status: 'not_found' };
  if (isTerminalState(row.state)) return { pk, status: 'terminal', state: row.state };
  if (isLeaseLive(row, now)) {
    yield* ask({ op: 'intent', pk, intent: 'kill', message, force, now });
    return { pk, status: 'requested', owner: row.owner! };
  }
  const effects = emptyEffects();
  yield* terminate(
    pk,
    { state: 'killed', processStatus: `Killed: ${message ?? 'killed by request'}` },
    effects,
    false,
    now,
  );
  return { pk, status: 'applied', effects };
}

/** Kills the given processes, found past their time limit and without a live owner. */
export function* killExpired(
  expired: { pk: number; timeLimit: number }[],
  now: number,
): Rule<TerminalEffects> {
  const effects = emptyEffects();
  for (const r of expired) {
    yield* terminate(
      r.pk,
      { state: 'killed', processStatus: `Killed: time limit of ${r.timeLimit} s exceeded` },
      effects,
      false,
      now,
    );
  }
  return effects;
}

/**
 * The deletion rule: only terminal processes, with their descendants. By pk, any active process in
 * the trees (or an active parent outside them) refuses the whole request; by age, trees that touch
 * an active process are skipped. Returns the deleted pks, ascending.
 */
export function* deleteProcesses(selection: DeleteSelection, now: number): Rule<number[]> {
  let roots: number[];
  const strict = 'pks' in selection;
  if ('pks' in selection) {
    roots = [...new Set(selection.pks)];
  } else {
    const states = selection.states ?? TERMINAL_STATES;
    const active = states.filter((s) => !isTerminalState(s));
    if (active.length > 0) {
      throw new EngineError(
        EngineErrorCodes.processActive,
        `refusing to delete processes in active state(s) ${active.join(', ')}: only terminal ` +
          `processes (${TERMINAL_STATES.join(', ')}) can be deleted; kill them first`,
        { details: { states: active } },
      );
    }
    roots = yield* ask({ op: 'oldTerminal', cutoff: now - selection.olderThan * 1000, states });
  }
  if (roots.length === 0) return [];
  const tree = yield* ask({ op: 'tree', roots });
  const inTree = new Set(tree.map((r) => r.pk));
  const blocked = new Set<number>();
  for (const r of tree) {
    if (!isTerminalState(r.state)) blocked.add(r.pk);
    if (r.parentPk !== null && !inTree.has(r.parentPk)) {
      const parent = yield* ask({ op: 'row', pk: r.parentPk });
      if (parent && !isTerminalState(parent.state)) blocked.add(r.parentPk);
    }
  }
  if (blocked.size > 0) {
    if (strict) {
      const list = [...blocked].sort((a, b) => a - b);
      throw new EngineError(
        EngineErrorCodes.processActive,
        `refusing to delete: process(es) ${list.join(', ')} are still active (not finished, ` +
          'excepted or killed). Kill them or wait for them to end, then delete again. Nothing was deleted.',
        { details: { pks: list } },
      );
    }
    // By age: skip whole trees that touch an active process.
    const keep = new Set<number>();
    for (const root of roots) {
      const sub = yield* ask({ op: 'tree', roots: [root] });
      const touches = sub.some(
        (r) =>
          blocked.has(r.pk) || (r.parentPk !== null && blocked.has(r.parentPk) && r.pk === root),
      );
      if (touches) for (const r of sub) keep.add(r.pk);
    }
    for (const pk of keep) inTree.delete(pk);
  }
  const doomed = [...inTree].sort((a, b) => a - b);
  if (doomed.length > 0) yield* ask({ op: 'deleteRows', pks: doomed });
  return doomed;
}

/**
 * The lower bound of a `createdAfter` filter in milliseconds since the epoch; a value that is no
 * time is an error naming it (a backend would otherwise compare with NaN and match nothing).
 */
export function createdAfterMillis(value: string | Date): number {
  const since = new Date(value).getTime();
  if (Number.isNaN(since)) {
    throw new EngineError(
      EngineErrorCodes.internal,
      `listProcesses: createdAfter is not a valid time: ${String(value)}`,
    );
  }
  return since;
}
