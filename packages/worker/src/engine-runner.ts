import { hostname } from 'node:os';
import type { TaskConsumerOptions, TaskHandler, TaskOutcome } from '@aiida/broker';
import { getOption, type Profile } from '@aiida/config';
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
  silentLogger,
  type TaskDispatcher,
} from '@aiida/engine';
import { PROTOCOL_VERSION, type RpcRequest, type StateChangedBroadcast } from '@aiida/ipc';
import type { ProcessRunner, ProcessRunnerStats, WorkerBroker } from './worker.js';

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

/** Options of {@link EngineProcessRunner}. Durations are seconds. */
export interface EngineRunnerOptions {
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
  /** Log lines (the worker program passes a {@link LineLogger}). @default silent */
  logger?: EngineLogger;
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
 * - {@link EngineProcessRunner.drain} cancels the consumer, lets running steps finish until the
 *   deadline, checkpoints and releases the rest, and closes the store.
 */
export class EngineProcessRunner implements ProcessRunner<EngineRunnerBroker> {
  private phase: 'idle' | 'running' | 'draining' | 'stopped' = 'idle';
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
    };
  }

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
  async start(broker: EngineRunnerBroker): Promise<void> {
    if (this.phase !== 'idle') throw new Error(`cannot start a runner that is ${this.phase}`);
    this.broker = broker;
    this.opened ??= this.options.open();
    const { store, registry } = await this.opened;
    this.store = store;
    try {
      this.executor = new ProcessExecutor({
        store,
        registry,
        ownerId: this.options.workerId,
        dispatcher: broker,
        control: broker,
        leaseTimeout: this.options.leaseTimeout,
        maxAttempts: this.options.maxAttempts,
        maxInputBytes: this.options.maxInputBytes,
        killGrace: this.options.killGrace ?? 3,
        logger: this.logger,
        onStateChange: (change) => this.broadcast(change),
      });
      this.reconciler = new Reconciler({
        store,
        dispatcher: broker,
        control: broker,
        ownerId: this.options.workerId,
        leaseTimeout: this.options.leaseTimeout,
        neverDispatchedGrace: this.options.neverDispatchedGrace ?? 10,
        logger: this.logger,
      });
      this.rpc = await broker.serveRpc((request) => this.answerRpc(request));
      this.phase = 'running';
      this.consumer = broker.consumeTasks((task) => this.onTask(task.pk), {
        prefetch: this.prefetch,
        concurrency: this.prefetch,
      });
    } catch (error) {
      this.phase = 'stopped';
      await this.rpc?.close(1).catch(() => {});
      await store.close().catch(() => {});
      throw error;
    }
    this.executor.startHeartbeat(this.options.heartbeatInterval);
    const interval =
      this.options.reconcileInterval ??
      Math.min(Math.max(1, this.options.heartbeatInterval), this.options.leaseTimeout / 3);
    this.reconcileTimer = setInterval(() => this.reconcile(), interval * 1000);
    this.reconcile();
    const failed = registry.pluginErrors.map((e) => e.spec);
    this.logger.info(
      `taking work as ${this.options.workerId}: ${this.slots} slots, prefetch ${this.prefetch}, ` +
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
    await this.consumer?.close(Math.min(1, left() / 4)).catch(() => {});
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

  private reconcile(): void {
    if (this.reconciling || this.phase !== 'running' || !this.reconciler) return;
    this.reconciling = this.reconciler
      .tick()
      .then((report) => {
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
export function newWorkerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
}

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
        }),
        registry,
      };
    },
  });
}
