import type { TaskConsumerOptions, TaskHandler, TaskOutcome } from '@aiida/broker';
import { getHostname, getOption, type Profile } from '@aiida/config';
import {
  type ControlChannel,
  describeError,
  EngineError,
  type EngineErrorCode,
  EngineErrorCodes,
  type EngineLogger,
  loadPlugins,
  openProcessStore,
  ProcessExecutor,
  ProcessRegistry,
  type ProcessStore,
  Reconciler,
  type RunOutcome,
  readEngineOptions,
  type StateChange,
  StoreWorkDispatcher,
  silentLogger,
  type TaskDispatcher,
} from '@aiida/engine';
import {
  PROTOCOL_VERSION,
  type RpcRequest,
  type StateChangedBroadcast,
  type WorkerCounters,
} from '@aiida/ipc';
import type { ProcessRunner, ProcessRunnerStats, WorkerBroker } from './worker.js';
import { newWorkerId } from './worker-id.js';

/** The task consumer an {@link EngineProcessRunner} drives (`TaskConsumer` of `@aiida/broker`). */
export interface RunnerTaskConsumer {
  /** Stops taking deliveries and gives back what was prefetched (nothing stays unacked). */
  pause(): Promise<void>;
  /** Takes deliveries again. */
  resume(): Promise<void>;
  /** Cancels the consumer, waiting up to `timeout` seconds for running handlers. */
  close(timeout?: number): Promise<unknown>;
}

/** The RPC server an {@link EngineProcessRunner} answers on (`RpcServer` of `@aiida/broker`). */
export interface RunnerRpcServer {
  /** Starts answering for process `pk`. Never rejects. */
  addPk(pk: number): Promise<void>;
  /** Stops answering for process `pk`. Never rejects. */
  removePk(pk: number): Promise<void>;
  close(timeout?: number): Promise<void>;
}

/**
 * What an {@link EngineProcessRunner} needs from the broker. `RabbitBroker` of `@aiida/broker`
 * satisfies it; unit tests pass an in-memory fake.
 */
export interface EngineRunnerBroker extends WorkerBroker, TaskDispatcher, ControlChannel {
  consumeTasks(handler: TaskHandler, options: TaskConsumerOptions): RunnerTaskConsumer;
  serveRpc(handler: (request: RpcRequest) => Promise<unknown>): Promise<RunnerRpcServer>;
  broadcastStateChanged(message: StateChangedBroadcast): Promise<void>;
}

/** What {@link EngineRunnerOptions.open} provides when the runner starts. */
export interface RunnerEngineParts {
  store: ProcessStore;
  /** Built-ins plus the profile's plugins (failed plugins are in `registry.pluginErrors`). */
  registry: ProcessRegistry;
}

/**
 * The worker's side of a `core.store` profile: there is no broker to connect to or close (the
 * store, opened by the runner, is the queue and the wake-up channel).
 */
export class StoreTransportBroker implements WorkerBroker {
  readonly transport = 'core.store' as const;
  async connect(): Promise<void> {}
  async close(): Promise<void> {}
}

/** Options of {@link EngineProcessRunner}. Durations are seconds. */
export interface EngineRunnerOptions {
  /**
   * Where work comes from: `core.rabbitmq` consumes the task queue of the broker given to
   * {@link EngineProcessRunner.start}; `core.store` claims runnable rows straight from the store in
   * batches no larger than the free slots, when woken through the store and every `pollInterval`.
   * @default 'core.rabbitmq'
   */
  transport?: 'core.rabbitmq' | 'core.store';
  /**
   * `core.store`: seconds between two looks into the store when no wake-up came
   * (`daemon.store_poll_interval`). @default 1
   */
  pollInterval?: number;
  /**
   * Opens the store and loads the registry, when the runner starts (after the broker connected).
   * A rejection fails the worker's start.
   */
  open: () => Promise<RunnerEngineParts>;
  /** Unique id of this worker: the owner written on the leases it takes. */
  workerId: string;
  /** Processes run at once, at most (`daemon.worker_process_slots`). */
  slots: number;
  /** Seconds between lease renewals (`daemon.worker_heartbeat_interval`). */
  heartbeatInterval: number;
  /** Seconds a lease lasts without renewal (`daemon.lease_timeout`). */
  leaseTimeout: number;
  /** Owner losses that make a process `excepted` (`engine.max_attempts`). */
  maxAttempts: number;
  /** Size limit of a child's inputs as JSON, in bytes (`engine.max_input_bytes`). @default 4 MiB */
  maxInputBytes?: number;
  /**
   * Seconds between a forced kill and the kill becoming final, whatever the body does.
   * @default 3
   */
  killGrace?: number;
  /**
   * Seconds between reconciler ticks (only the elected worker does anything in a tick).
   * @default the heartbeat interval, but at least 1 s and at most a third of the lease
   */
  reconcileInterval?: number;
  /**
   * Seconds a runnable process may stay undispatched before the reconciler publishes its task.
   * @default 10
   */
  neverDispatchedGrace?: number;
  /**
   * Deliveries RabbitMQ may push ahead, and claims handled at once; never above `slots`.
   * @default min(slots, 100)
   */
  prefetch?: number;
  /** Log lines (the worker program passes its pino logger, `createWorkerLogger`). @default silent */
  logger?: EngineLogger;
  /**
   * This worker's host in the worker registry.
   * @default `getHostname()` of `@aiida/config` (`AIIDA_HOSTNAME`, else `os.hostname()`)
   */
  hostname?: string;
}

/** Milliseconds a task whose claim failed (store trouble) is held before it goes back. */
const CLAIM_RETRY_DELAY_MS = 1000;
/** Seconds between two log lines about failed broadcasts. */
const BROADCAST_WARN_INTERVAL_S = 10;

/**
 * The worker's real work: consumes the profile's task queue and runs processes through the
 * engine's {@link ProcessExecutor}, within `slots`.
 *
 * - For each `continue` task it reserves a slot, claims the lease (one atomic store update,
 *   batched per event-loop turn), and resolves the handler, so the delivery is acked at once;
 *   a task whose claim is refused (terminal, paused, parked, held by a live owner, ...) is
 *   acked and dropped. A claimed process runs without holding any delivery.
 * - It never runs more than `slots` processes: when the last slot is taken it pauses the
 *   consumer (which hands every prefetched delivery back to RabbitMQ), and resumes once slots
 *   free up.
 * - It renews its leases every heartbeat (kill and pause intents and time limits found in the
 *   store are applied then), answers RPC for the pks it holds, broadcasts state changes, and
 *   ticks the {@link Reconciler} (one worker, elected in the store, acts).
 * - It registers in the store's worker registry (host, pid, slots) at its start and on every
 *   heartbeat, and unregisters when it drains.
 * - {@link EngineProcessRunner.drain} cancels the consumer, lets running steps finish until the
 *   deadline, checkpoints and releases the rest, and closes the store.
 */
export class EngineProcessRunner implements ProcessRunner<WorkerBroker> {
  private phase: 'idle' | 'running' | 'draining' | 'stopped' = 'idle';
  private readonly transport: 'core.rabbitmq' | 'core.store';
  /** core.store: a claim round is under way. */
  private pulling: Promise<void> | undefined;
  /** core.store: there may be work in the store that no claim round has looked for yet. */
  private workPending = false;
  private pollTimer: NodeJS.Timeout | undefined;
  private stopListening: (() => Promise<void>) | undefined;
  private storeClaimFailures = 0;
  private readonly logger: EngineLogger;
  private readonly slots: number;
  private readonly prefetch: number;
  private readonly resumeAtFree: number;
  private broker: EngineRunnerBroker | undefined;
  /** What `options.open` gave (or is giving), from `prepare` or `start`. */
  private opened: Promise<RunnerEngineParts> | undefined;
  private store: ProcessStore | undefined;
  private executor: ProcessExecutor | undefined;
  private reconciler: Reconciler | undefined;
  private consumer: RunnerTaskConsumer | undefined;
  private rpc: RunnerRpcServer | undefined;
  /** Slots taken by claims in progress. */
  private reserved = 0;
  /** Pks claimed here whose run has not ended; each holds a slot. */
  private readonly running = new Set<number>();
  private intakePaused = false;
  private resumeScheduled = false;
  private reconcileTimer: NodeJS.Timeout | undefined;
  private registryTimer: NodeJS.Timeout | undefined;
  private registering: Promise<void> | undefined;
  private registryFailing = false;
  private reconciling: Promise<void> | undefined;
  private leader = false;
  private broadcastFailures = 0;
  private lastBroadcastWarning = 0;
  private maxUsed = 0;

  constructor(private readonly options: EngineRunnerOptions) {
    if (!Number.isInteger(options.slots) || options.slots < 1) {
      throw new RangeError(`slots must be a positive integer, got ${options.slots}`);
    }
    this.logger = options.logger ?? silentLogger;
    this.transport = options.transport ?? 'core.rabbitmq';
    this.slots = options.slots;
    this.prefetch = Math.max(1, Math.min(options.prefetch ?? 100, options.slots, 65535));
    // Resume when a tenth of the slots (at least one) is free, so that a busy worker does not
    // cancel and reopen its consumer for every single process that ends.
    this.resumeAtFree = Math.max(1, Math.floor(options.slots / 10));
  }

  /** Slots in use (claims in progress and running processes), and the pks held. */
  stats(): ProcessRunnerStats {
    return {
      slotsUsed: this.used,
      slotsTotal: this.slots,
      activePks: [...this.running],
      counters: { ...this.counters },
    };
  }

  /** What this runner counted since it started (sent with the heartbeats). */
  readonly counters: WorkerCounters = {
    claims: 0,
    leaseLosses: 0,
    redispatches: 0,
    finished: 0,
    excepted: 0,
    killed: 0,
  };

  /** The most slots in use at once since the start (for tests and logs). */
  get peakSlotsUsed(): number {
    return this.maxUsed;
  }

  /** True while the consumer is paused because every slot is taken. */
  get isIntakePaused(): boolean {
    return this.intakePaused;
  }

  private get used(): number {
    return this.reserved + this.running.size;
  }

  /**
   * Opens the store and loads the registry ahead of {@link EngineProcessRunner.start} (the warm
   * spare does this before it is promoted). Takes no work; `drain` closes the store again.
   */
  async prepare(): Promise<void> {
    if (this.phase !== 'idle') throw new Error(`cannot prepare a runner that is ${this.phase}`);
    this.opened ??= this.options.open();
    await this.opened;
  }

  /**
   * Opens the store and registry (unless `prepare` did), starts the RPC server and the task
   * consumer, and starts renewing leases and reconciling. Rejects (and leaves nothing open) if
   * any of it fails.
   */
  async start(workerBroker: WorkerBroker): Promise<void> {
    if (this.phase !== 'idle') throw new Error(`cannot start a runner that is ${this.phase}`);
    const fromStore = this.transport === 'core.store';
    const broker = fromStore ? undefined : (workerBroker as EngineRunnerBroker);
    if (broker && typeof broker.consumeTasks !== 'function') {
      throw new Error('a core.rabbitmq runner needs a broker that consumes tasks (RabbitBroker)');
    }
    this.broker = broker;
    this.opened ??= this.options.open();
    const { store, registry } = await this.opened;
    this.store = store;
    // core.store: the row is the task; a new runnable row only wakes the workers, and control
    // is the store's intents (applied on lease renewal).
    const dispatcher: TaskDispatcher = broker ?? new StoreWorkDispatcher(store);
    const control: ControlChannel | undefined = broker;
    try {
      this.executor = new ProcessExecutor({
        store,
        registry,
        ownerId: this.options.workerId,
        dispatcher,
        control,
        leaseTimeout: this.options.leaseTimeout,
        maxAttempts: this.options.maxAttempts,
        maxInputBytes: this.options.maxInputBytes,
        killGrace: this.options.killGrace ?? 3,
        logger: this.logger,
        onStateChange: (change) => this.broadcast(change),
      });
      this.reconciler = new Reconciler({
        store,
        dispatcher,
        control,
        ownerId: this.options.workerId,
        leaseTimeout: this.options.leaseTimeout,
        neverDispatchedGrace: this.options.neverDispatchedGrace ?? 10,
        logger: this.logger,
      });
      if (broker) {
        this.rpc = await broker.serveRpc((request) => this.answerRpc(request));
        this.phase = 'running';
        this.consumer = broker.consumeTasks((task) => this.onTask(task.pk), {
          prefetch: this.prefetch,
          concurrency: this.prefetch,
        });
      } else {
        this.stopListening = await store.listenForWork(() => this.wake());
        this.phase = 'running';
        const poll = Math.max(0.01, this.options.pollInterval ?? 1);
        this.pollTimer = setInterval(() => this.wake(), poll * 1000);
        this.wake();
      }
    } catch (error) {
      this.phase = 'stopped';
      if (this.pollTimer) clearInterval(this.pollTimer);
      await this.stopListening?.().catch(() => {});
      await this.rpc?.close(1).catch(() => {});
      await store.close().catch(() => {});
      throw error;
    }
    this.executor.startHeartbeat(this.options.heartbeatInterval);
    await this.clearDeadWorkersOfThisHost();
    await this.register();
    this.registryTimer = setInterval(() => {
      void this.register();
    }, this.options.heartbeatInterval * 1000);
    const interval =
      this.options.reconcileInterval ??
      Math.min(Math.max(1, this.options.heartbeatInterval), this.options.leaseTimeout / 3);
    this.reconcileTimer = setInterval(() => this.reconcile(), interval * 1000);
    this.reconcile();
    const failed = registry.pluginErrors.map((e) => e.spec);
    this.logger.info(
      `taking work as ${this.options.workerId}: ${this.slots} slots, ` +
        (fromStore
          ? `from the store (core.store: woken through the store, polled every ${this.options.pollInterval ?? 1} s), `
          : `prefetch ${this.prefetch}, `) +
        `lease ${this.options.leaseTimeout} s, heartbeat ${this.options.heartbeatInterval} s, ` +
        `${registry.names().length} process types` +
        (failed.length > 0 ? `; plugins that failed to load: ${failed.join(', ')}` : ''),
    );
  }

  /**
   * Stops taking work and hands back what it holds within `gracefulTimeout` seconds: cancels the
   * consumer (prefetched deliveries go back to the queue), lets running steps finish, then
   * checkpoints and releases the rest (their tasks are published again), stops renewing and
   * closes the store. Bodies that ignore their abort signal are left to their expiring leases.
   */
  async drain(gracefulTimeout: number): Promise<void> {
    if (this.phase === 'idle' && this.opened) {
      // Prepared but never started (a spare stopped before its promotion): close the store.
      this.phase = 'stopped';
      const parts = await this.opened.catch(() => undefined);
      await parts?.store.close().catch(() => {});
      return;
    }
    if (this.phase !== 'running') return;
    this.phase = 'draining';
    const deadline = Date.now() + Math.max(0, gracefulTimeout) * 1000;
    const left = () => Math.max(0, (deadline - Date.now()) / 1000);
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.reconcileTimer = undefined;
    if (this.registryTimer) clearInterval(this.registryTimer);
    this.registryTimer = undefined;
    await this.consumer?.close(Math.min(1, left() / 4)).catch(() => {});
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    await this.stopListening?.().catch(() => {});
    await this.pulling?.catch(() => {});
    const executor = this.executor!;
    // The executor waits `t`, then gives interrupted bodies up to min(1 s, t) more.
    const budget = left();
    const t = budget >= 2.2 ? budget - 1.1 : budget / 2 - 0.05;
    const report = await executor.drain(Math.max(0, t));
    executor.stopHeartbeat();
    this.logger.info(
      `drained: ${report.completed.length} ended or parked, ${report.released.length} released ` +
        `(tasks published again), ${report.abandoned.length} left to their leases` +
        (report.abandoned.length > 0 ? ` (${report.abandoned.join(', ')})` : ''),
    );
    await this.reconciling?.catch(() => {});
    await this.registering?.catch(() => {});
    await this.store?.unregisterWorker(this.options.workerId).catch((error: unknown) => {
      this.logger.warn(`could not leave the worker registry: ${describeError(error).message}`);
    });
    await this.rpc?.close(Math.min(0.5, left())).catch(() => {});
    await this.store?.close().catch(() => {});
    this.phase = 'stopped';
  }

  // --- tasks ----------------------------------------------------------------------------------

  private async onTask(pk: number): Promise<TaskOutcome> {
    if (this.phase !== 'running') return 'requeue';
    if (this.used >= this.slots) {
      // Only a delivery that slipped past a pause gets here: it was never claimed, give it back.
      this.pauseIntake();
      return 'requeue';
    }
    this.reserved++;
    this.maxUsed = Math.max(this.maxUsed, this.used);
    if (this.used >= this.slots) this.pauseIntake();
    const executor = this.executor!;
    let claim: Awaited<ReturnType<ProcessExecutor['claim']>>;
    try {
      claim = await executor.claim(pk);
    } catch (error) {
      this.reserved--;
      this.logger.warn(
        `claim of process ${pk} failed: ${describeError(error).message}; its task goes back to the queue`,
        { pk },
      );
      await new Promise((resolve) => setTimeout(resolve, CLAIM_RETRY_DELAY_MS));
      this.slotFreed();
      return 'requeue';
    }
    this.reserved--;
    if (!claim.claimed) {
      this.logger.debug(`task for process ${pk} dropped: ${claim.reason}`, { pk });
      this.slotFreed();
      return 'ack';
    }
    this.counters.claims++;
    this.running.add(pk);
    const unbind = this.bindRpcLater(pk);
    claim.run().then(
      (outcome) => this.ended(pk, outcome, unbind),
      (error: unknown) => {
        this.logger.error(`process ${pk}: run failed: ${describeError(error).message}`, { pk });
        this.ended(pk, 'abandoned', unbind);
      },
    );
    return 'ack';
  }

  /**
   * Routes `rpc.<pk>` to this worker once the process has run for one heartbeat interval, and
   * returns what undoes it. A binding costs two broker round trips on one channel (bind, unbind);
   * binding every process at once made them queue up behind each other under load (tens of
   * thousands pending, holding memory) while most processes ended long before. A process
   * younger than a heartbeat loses nothing: control intents are written to the store first and
   * applied at its next lease renewal, which comes within a heartbeat anyway.
   */
  private bindRpcLater(pk: number): () => void {
    let bound: Promise<void> | undefined;
    const timer = setTimeout(() => {
      if (!this.running.has(pk) || !this.rpc) return;
      bound = this.rpc.addPk(pk).catch((error: unknown) => {
        this.logger.warn(`routing RPC for process ${pk} failed: ${describeError(error).message}`, {
          pk,
        });
      });
    }, this.options.heartbeatInterval * 1000);
    return () => {
      clearTimeout(timer);
      void bound?.then(() => this.rpc?.removePk(pk));
    };
  }

  private ended(pk: number, outcome: RunOutcome, unbind: () => void): void {
    this.running.delete(pk);
    if (outcome === 'lease_lost') this.counters.leaseLosses++;
    else if (outcome === 'finished' || outcome === 'excepted' || outcome === 'killed') {
      this.counters[outcome]++;
    }
    if (outcome === 'lease_lost' || outcome === 'abandoned') {
      this.logger.warn(`process ${pk}: ${outcome.replace('_', ' ')}`, { pk });
    } else {
      this.logger.debug(`process ${pk}: ${outcome}`, { pk });
    }
    unbind();
    this.slotFreed();
  }

  private pauseIntake(): void {
    if (this.intakePaused || !this.consumer) return;
    this.intakePaused = true;
    this.logger.debug(`all ${this.slots} slots in use: pausing the task consumer`);
    this.consumer.pause().catch((error: unknown) => {
      this.logger.warn(`pausing the task consumer failed: ${describeError(error).message}`);
    });
  }

  private slotFreed(): void {
    if (this.transport === 'core.store') {
      // Look again once a tenth of the slots is free (as the RabbitMQ consumer resumes), and
      // only while the store may hold more work: otherwise the next wake-up or poll brings it.
      if (this.workPending && this.slots - this.used >= Math.min(this.resumeAtFree, this.slots)) {
        this.pull();
      }
      return;
    }
    if (!this.intakePaused || this.resumeScheduled || this.phase !== 'running') return;
    if (this.slots - this.used < Math.min(this.resumeAtFree, this.slots)) return;
    // Coalesce the slots that free up in the same turn into one resume.
    this.resumeScheduled = true;
    setImmediate(() => {
      this.resumeScheduled = false;
      if (!this.intakePaused || this.phase !== 'running' || this.used >= this.slots) return;
      this.intakePaused = false;
      this.logger.debug(`${this.slots - this.used} slot(s) free: resuming the task consumer`);
      this.consumer?.resume().catch((error: unknown) => {
        this.logger.warn(`resuming the task consumer failed: ${describeError(error).message}`);
      });
    });
  }

  // --- core.store: the store as the queue -----------------------------------------------------

  /** A wake-up or a poll: there may be new work in the store. */
  private wake(): void {
    this.workPending = true;
    this.pull();
  }

  /** Starts a claim round unless one is under way (that one loops while work is pending). */
  private pull(): void {
    if (this.pulling || this.phase !== 'running') return;
    this.pulling = this.pullRounds().finally(() => {
      this.pulling = undefined;
    });
  }

  /**
   * Claims batches of runnable rows (never more than the free slots) while there may be more:
   * after a wake-up, a poll, or a batch that came back full.
   */
  private async pullRounds(): Promise<void> {
    const executor = this.executor!;
    while (this.phase === 'running' && this.workPending) {
      const free = this.slots - this.used;
      // All slots taken: `workPending` stays set and a freed slot starts the next round.
      if (free <= 0) return;
      this.workPending = false;
      const want = Math.min(free, this.prefetch);
      this.reserved += want;
      let claimed: Awaited<ReturnType<ProcessExecutor['claimRunnable']>>;
      try {
        claimed = await executor.claimRunnable(want);
        this.storeClaimFailures = 0;
      } catch (error) {
        this.reserved -= want;
        // The next poll tries again; say so once per run of failures.
        if (this.storeClaimFailures++ === 0) {
          this.logger.warn(
            `claiming work from the store failed: ${describeError(error).message}; trying again at the next poll`,
          );
        }
        return;
      }
      this.reserved -= want;
      this.counters.claims += claimed.length;
      for (const claim of claimed) {
        const pk = claim.pk;
        this.running.add(pk);
        claim.run().then(
          (outcome) => this.ended(pk, outcome, () => {}),
          (error: unknown) => {
            this.logger.error(`process ${pk}: run failed: ${describeError(error).message}`, {
              pk,
            });
            this.ended(pk, 'abandoned', () => {});
          },
        );
      }
      this.maxUsed = Math.max(this.maxUsed, this.used);
      // A full batch: the store may hold more.
      if (claimed.length === want) this.workPending = true;
    }
  }

  // --- RPC, broadcasts, reconciler ------------------------------------------------------------

  private async answerRpc(request: RpcRequest): Promise<unknown> {
    const executor = this.executor;
    if (!executor) {
      throw new EngineError(EngineErrorCodes.processNotFound, `process ${request.pk} is not held`);
    }
    const reply = await executor.handleRpc(request);
    if (reply.ok) return reply.result;
    const known = Object.values(EngineErrorCodes) as string[];
    const code = (
      known.includes(reply.error.code) ? reply.error.code : EngineErrorCodes.internal
    ) as EngineErrorCode;
    throw new EngineError(code, reply.error.message, { details: reply.error.details });
  }

  private broadcast(change: StateChange): void {
    const broker = this.broker;
    // core.store: no broadcasts; watchers poll the store (the single source of truth).
    if (!broker) return;
    broker
      .broadcastStateChanged({ v: PROTOCOL_VERSION, type: 'state_changed', ...change })
      .catch((error: unknown) => {
        // Broadcasts are a courtesy (the store is the truth): count failures, log now and then.
        this.broadcastFailures++;
        const now = Date.now();
        if (now - this.lastBroadcastWarning >= BROADCAST_WARN_INTERVAL_S * 1000) {
          this.lastBroadcastWarning = now;
          this.logger.warn(
            `state-changed broadcasts failing (${this.broadcastFailures} so far): ${describeError(error).message}`,
          );
        }
      });
  }

  /** Removes the registry rows that this host's dead workers left (stale for a lease timeout). */
  private async clearDeadWorkersOfThisHost(): Promise<void> {
    try {
      const removed = await this.store!.removeStaleWorkers(
        this.options.hostname ?? getHostname(),
        this.options.leaseTimeout,
      );
      if (removed.length > 0) {
        this.logger.info(
          `removed stale workers of this host from the registry: ${removed.join(', ')}`,
        );
      }
    } catch (error) {
      this.logger.warn(`could not clear the worker registry: ${describeError(error).message}`);
    }
  }

  /**
   * Writes this worker's row of the registry (its heartbeat there). A failure is logged once per
   * run of failures and never stops the worker: the registry is for status, not for correctness.
   */
  private register(): Promise<void> {
    const store = this.store;
    if (!store || this.registering) return this.registering ?? Promise.resolve();
    this.registering = store
      .registerWorker({
        workerId: this.options.workerId,
        hostname: this.options.hostname ?? getHostname(),
        pid: process.pid,
        slotsUsed: this.used,
        slotsTotal: this.slots,
      })
      .then(() => {
        if (this.registryFailing) this.logger.info('worker registry heartbeats written again');
        this.registryFailing = false;
      })
      .catch((error: unknown) => {
        if (!this.registryFailing) {
          this.logger.warn(`could not write the worker registry: ${describeError(error).message}`);
        }
        this.registryFailing = true;
      })
      .finally(() => {
        this.registering = undefined;
      });
    return this.registering;
  }

  private reconcile(): void {
    if (this.reconciling || this.phase !== 'running' || !this.reconciler) return;
    this.reconciling = this.reconciler
      .tick()
      .then((report) => {
        this.counters.redispatches += report.dispatched.length;
        if (report.leader !== this.leader) {
          this.leader = report.leader;
          this.logger.info(
            report.leader
              ? 'elected to run the reconciler'
              : 'no longer the reconciler (another worker holds the lease)',
          );
        }
        if (report.killed.length > 0) {
          this.logger.info(`reconciler killed processes past their time limit: ${report.killed}`);
        }
      })
      .catch((error: unknown) => {
        this.logger.warn(`reconciler tick failed: ${describeError(error).message}`);
      })
      .finally(() => {
        this.reconciling = undefined;
      });
  }
}

/** Overrides of {@link createEngineRunner}. */
export interface CreateEngineRunnerOptions
  extends Partial<Omit<EngineRunnerOptions, 'open' | 'workerId'>> {
  /** @default `<hostname>:<pid>:<random>` */
  workerId?: string;
}

/** A fresh worker id: host, pid and a random suffix (pids are reused). */
export { newWorkerId };

/**
 * The runner of the worker program for `profile`: slots, heartbeat, lease and attempts from the
 * profile's options; at start it loads the built-ins and the plugins of `engine.plugins`
 * (resolved from the profile's plugin base directory; one that fails is logged and its processes
 * become `excepted`) and opens the profile's store.
 */
export function createEngineRunner(
  profile: Profile,
  overrides: CreateEngineRunnerOptions = {},
): EngineProcessRunner {
  const engineOptions = readEngineOptions(profile);
  const logger = overrides.logger ?? silentLogger;
  return new EngineProcessRunner({
    transport: profile.broker.backend,
    pollInterval: getOption('daemon.store_poll_interval', { profile }),
    slots: getOption('daemon.worker_process_slots', { profile }),
    heartbeatInterval: engineOptions.heartbeatInterval,
    leaseTimeout: engineOptions.leaseTimeout,
    maxAttempts: engineOptions.maxAttempts,
    maxInputBytes: engineOptions.maxInputBytes,
    ...overrides,
    logger,
    workerId: overrides.workerId ?? newWorkerId(),
    open: async () => {
      const registry = new ProcessRegistry();
      await loadPlugins(registry, engineOptions.plugins, profile.pluginBaseDir, logger);
      return {
        store: await openProcessStore(profile, {
          onIdleError: (error) => logger.warn(`store connection dropped: ${error.message}`),
          leaseTimeout: engineOptions.leaseTimeout,
        }),
        registry,
      };
    },
  });
}
