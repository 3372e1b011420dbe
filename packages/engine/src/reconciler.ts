import { describeError } from './errors.js';
import { type EngineLogger, silentLogger } from './logger.js';
import { type ControlChannel, requestKill, type TaskDispatcher } from './ports.js';
import { killProcessGroup } from './process-group.js';
import type { ProcessStore } from './process-store.js';

/** Options of {@link Reconciler}. Durations in seconds. */
export interface ReconcilerOptions {
  store: ProcessStore;
  dispatcher: TaskDispatcher;
  /** Id of the worker running it (the leader lease is taken in its name). */
  ownerId: string;
  /** Seconds the leader lease lasts; tick well inside it (`daemon.lease_timeout`). */
  leaseTimeout: number;
  /**
   * Seconds a runnable, unowned process may stay undispatched before the reconciler publishes its
   * task (covers a submit that committed while the broker was down).
   * @default 10
   */
  neverDispatchedGrace?: number;
  /**
   * Re-publish tasks of unowned runnable processes dispatched this many seconds ago and still not
   * claimed, in case the broker lost the task. A duplicate task is harmless (it is dropped at
   * claim); `null` turns this off.
   * @default 600
   */
  staleDispatchAfter?: number | null;
  /**
   * Backoff, in seconds, of the re-sends of a process whose owner's lease expired and that no live
   * worker claimed yet: its task is published again once the time since the last send reaches half
   * the time since the lease expired, clamped to `[min, max]`, until a worker claims it. One
   * re-send is not enough: the transport may hand it to the stalled owner, which holds it without
   * acking until its connection is declared dead. Each re-send publishes two copies in a row,
   * which RabbitMQ's round-robin hands to two different consumers. `null` sends it once only.
   * @default { min: 1, max: 30 }
   */
  expiredRedispatch?: { min: number; max: number } | null;
  /** Most tasks published per tick. @default 1000 */
  batchSize?: number;
  control?: ControlChannel;
  logger?: EngineLogger;
}

/** Default backoff of {@link ReconcilerOptions.expiredRedispatch}, in seconds. */
const DEFAULT_EXPIRED_REDISPATCH = { min: 1, max: 30 } as const;

/** What one {@link Reconciler.tick} did. */
export interface ReconcileReport {
  /** Whether this worker holds the leader lease (only the leader does anything). */
  leader: boolean;
  /** Pks whose tasks were published (and confirmed). */
  dispatched: number[];
  /** Pks killed for exceeding their time limit while no one held them. */
  killed: number[];
}

/**
 * The reconciler: one worker at a time (elected through a lease row in the store) re-publishes
 * tasks of processes that are runnable and unowned and were never dispatched (after a grace) or
 * whose owner's lease expired (again, with a short backoff, until a live worker claims them), and
 * kills unowned processes past their time limit. The worker calls
 * {@link Reconciler.tick} periodically (e.g. every heartbeat or every few seconds).
 */
export class Reconciler {
  private readonly options: ReconcilerOptions;
  private readonly logger: EngineLogger;
  /** Pks this reconciler published lately, with when (to tell a re-send from a first send). */
  private readonly sent = new Map<number, number>();

  constructor(options: ReconcilerOptions) {
    this.options = options;
    this.logger = options.logger ?? silentLogger;
  }

  async tick(): Promise<ReconcileReport> {
    const { store, dispatcher, ownerId, leaseTimeout } = this.options;
    const report: ReconcileReport = { leader: false, dispatched: [], killed: [] };
    report.leader = await store.electLeader(ownerId, leaseTimeout);
    if (!report.leader) return report;
    const effects = await store.killExpired();
    report.killed = effects.terminated.map((t) => t.pk);
    for (const group of effects.orphanedGroups) void killProcessGroup(group).catch(() => false);
    if (this.options.control) {
      for (const { pk, message } of effects.killRequested) {
        requestKill(this.options.control, pk, message, 2);
      }
    }
    const pks = [
      ...new Set([
        ...effects.parentsToDispatch,
        ...(await store.findDispatchable({
          neverDispatchedGraceSeconds: this.options.neverDispatchedGrace ?? 10,
          staleDispatchSeconds:
            this.options.staleDispatchAfter === null
              ? undefined
              : (this.options.staleDispatchAfter ?? 600),
          expiredRedispatchSeconds:
            this.options.expiredRedispatch === null
              ? undefined
              : (this.options.expiredRedispatch ?? DEFAULT_EXPIRED_REDISPATCH),
          limit: this.options.batchSize ?? 1000,
        })),
      ]),
    ];
    if (pks.length === 0) return report;
    const now = Date.now();
    const memory = (this.options.expiredRedispatch?.max ?? DEFAULT_EXPIRED_REDISPATCH.max) * 2000;
    for (const [pk, at] of this.sent) if (now - at > memory) this.sent.delete(pk);
    // A pk sent lately and due again is a re-send of an expired lease that no live worker
    // claimed: RabbitMQ may have handed the last copy to the stalled owner. Two copies in a row go
    // to two different consumers (round-robin), so with two workers one reaches the live one.
    const resent = pks.filter((pk) => this.sent.has(pk));
    const tasks = pks.flatMap((pk) => (this.sent.has(pk) ? [pk, pk] : [pk]));
    try {
      await dispatcher.publishContinueMany(tasks);
      await store.markDispatched(pks);
      for (const pk of pks) this.sent.set(pk, now);
      report.dispatched = pks;
      this.logger.info(
        `reconciler dispatched ${pks.length} process(es)` +
          (resent.length > 0 ? `, ${resent.length} of them again (not claimed yet)` : ''),
        { pks: pks.slice(0, 20) },
      );
    } catch (error) {
      this.logger.warn(`reconciler could not publish tasks: ${describeError(error).message}`);
    }
    return report;
  }
}
