import { monitorEventLoopDelay } from 'node:perf_hooks';
import { PROTOCOL_VERSION, type WorkerCounters, type WorkerToSupervisorMessage } from '@aiida/ipc';

/**
 * The states of a {@link Worker}, in the order it goes through them (as temporal's worker):
 * `INITIALIZED` (constructed) → `STANDBY` (only a warm spare: connected and prepared, taking no
 * work until {@link Worker.promote}) → `RUNNING` (connected, ready, heartbeating) → `STOPPING` (asked
 * to stop: no new work) → `DRAINING` (running work gets up to the graceful timeout) → `DRAINED`
 * → `STOPPED` (broker closed). `FAILED` when it could not start.
 */
export type WorkerLifecycleState =
  | 'INITIALIZED'
  | 'STANDBY'
  | 'RUNNING'
  | 'STOPPING'
  | 'DRAINING'
  | 'DRAINED'
  | 'STOPPED'
  | 'FAILED';

/** The part of the broker a worker needs for its life cycle (`RabbitBroker` from `@aiida/broker`). */
export interface WorkerBroker {
  /** Connects and declares the profile's topology; rejects with the connection error. */
  connect(opts?: { timeout?: number }): Promise<void>;
  /** Closes consumers, publishers and the connection, each within `timeout` seconds. */
  close(opts?: { timeout?: number }): Promise<void>;
}

/** What a worker reports about its running processes in each heartbeat. */
export interface ProcessRunnerStats {
  slotsUsed: number;
  slotsTotal: number;
  activePks: number[];
  /** What the runner counted since it started (claims, lease losses, …), if it counts. */
  counters?: WorkerCounters;
}

/**
 * The seam between the worker's life cycle and the work it does. The engine's runner consumes
 * the task queue in `start`, stops taking deliveries and lets running processes finish (up to
 * the graceful timeout) in `drain`, and reports its slots in `stats`.
 */
export interface ProcessRunner<B extends WorkerBroker = WorkerBroker> {
  /** Starts taking work from `broker` (already connected). */
  start(broker: B): Promise<void>;
  /**
   * Loads and opens what `start` needs (store, plugins) without taking work, so that a warm
   * spare's `start` after its promotion is quick. Optional; `drain` releases what it opened.
   */
  prepare?(): Promise<void>;
  /** Stops taking work, then waits up to `gracefulTimeout` seconds for running work. */
  drain(gracefulTimeout: number): Promise<void>;
  /** Current slot use, for heartbeats. */
  stats(): ProcessRunnerStats;
}

/**
 * A runner that takes no work: reports `slotsTotal` free slots and drains at once. The worker's
 * default until the engine provides the real runner.
 */
export class IdleProcessRunner implements ProcessRunner {
  constructor(private readonly slotsTotal: number) {}
  async start(): Promise<void> {}
  async drain(): Promise<void> {}
  stats(): ProcessRunnerStats {
    return { slotsUsed: 0, slotsTotal: this.slotsTotal, activePks: [] };
  }
}

/** Where the worker's messages to its supervisor go (`process.send` in the worker program). */
export type SupervisorChannel = (message: WorkerToSupervisorMessage) => void;

/** Options of {@link Worker}. */
export interface WorkerOptions<B extends WorkerBroker = WorkerBroker> {
  broker: B;
  /** The work; defaults to an {@link IdleProcessRunner} with `slotsTotal` slots. */
  runner?: ProcessRunner<B>;
  /** Slots reported by the default runner (`daemon.worker_process_slots`). @default 200 */
  slotsTotal?: number;
  /** Messages to the supervisor; none when absent (a worker run by hand). */
  channel?: SupervisorChannel;
  /** Seconds between heartbeats (`daemon.worker_heartbeat_interval`). @default 1 */
  heartbeatInterval?: number;
  /** Seconds allowed for the first broker connection (`broker.task_timeout`). @default 10 */
  connectTimeout?: number;
  /**
   * Start as the daemon's warm spare: connect and prepare the runner, send `standby`, and take
   * work (start the runner, send `ready`) only once {@link Worker.promote} is called.
   * @default false
   */
  standby?: boolean;
  /** Called on every state change. */
  onStateChange?: (state: WorkerLifecycleState) => void;
  /** Log lines (stdout in the worker program). */
  log?: (message: string) => void;
}

/**
 * The runner could not start (store, plugins, consumer): the broker was reached. Internal: the
 * program tells it apart from a broker that can't be reached.
 */
export class RunnerStartError extends Error {
  constructor(cause: unknown) {
    super(`cannot start taking work: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'RunnerStartError';
  }
}

/** Part of the graceful timeout kept for closing the broker, in seconds (at most). */
const MAX_CLOSE_BUDGET = 1;

/**
 * A worker's life cycle: connect to the broker, start the runner, report `ready` and heartbeat
 * to the supervisor; on {@link Worker.shutdown}, stop taking work, drain within the graceful
 * timeout and close the broker.
 *
 * @example
 * ```ts
 * const worker = new Worker({ broker, channel: (m) => process.send?.(m), heartbeatInterval: 1 });
 * await worker.start();                 // rejects if the broker can't be reached
 * process.on('SIGTERM', () => void worker.shutdown(30));
 * await worker.stopped;
 * ```
 */
export class Worker<B extends WorkerBroker = WorkerBroker> {
  private currentState: WorkerLifecycleState = 'INITIALIZED';
  private readonly runner: ProcessRunner<B>;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 20 });
  private shutdownPromise: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  private promoted: (() => void) | undefined;
  private readonly promotion: Promise<void>;
  private shutdownRequested!: () => void;
  /** Resolves once {@link Worker.shutdown} was called (ends a spare's wait for promotion). */
  private readonly stopRequested: Promise<void>;
  private resolveStopped!: () => void;
  /** Resolves once the worker reached `STOPPED` (or `FAILED`). */
  readonly stopped: Promise<void>;

  constructor(private readonly options: WorkerOptions<B>) {
    this.runner = options.runner ?? new IdleProcessRunner(options.slotsTotal ?? 200);
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
    this.promotion = new Promise((resolve) => {
      this.promoted = resolve;
    });
    this.stopRequested = new Promise((resolve) => {
      this.shutdownRequested = resolve;
    });
  }

  /**
   * Lets a worker started with `standby` take work: it starts its runner and sends `ready`.
   * Does nothing for a worker that is not a spare or was promoted already.
   */
  promote(): void {
    this.promoted?.();
    this.promoted = undefined;
  }

  /** The current life-cycle state. */
  get state(): WorkerLifecycleState {
    return this.currentState;
  }

  /**
   * Connects the broker, starts the runner, sends `ready` and starts heartbeating. Rejects (state
   * `FAILED`) when the broker can't be reached within `connectTimeout`; rejects with the shutdown
   * as reason if {@link Worker.shutdown} came first.
   */
  start(): Promise<void> {
    if (this.currentState !== 'INITIALIZED') {
      return Promise.reject(new Error(`cannot start a worker in state ${this.currentState}`));
    }
    this.starting ??= this.runStart();
    return this.starting;
  }

  private async runStart(): Promise<void> {
    try {
      await this.options.broker.connect({ timeout: this.options.connectTimeout ?? 10 });
      if (this.shutdownPromise) throw new Error('the worker was stopped while it was starting');
      if (this.options.standby) {
        try {
          await this.runner.prepare?.();
        } catch (error) {
          throw new RunnerStartError(error);
        }
        if (this.shutdownPromise) throw new Error('the worker was stopped while it was starting');
        this.setState('STANDBY');
        this.send({ v: PROTOCOL_VERSION, type: 'standby', pid: process.pid });
        await Promise.race([this.promotion, this.stopRequested]);
        if (this.shutdownPromise)
          throw new Error('the warm spare was stopped before its promotion');
      }
      try {
        await this.runner.start(this.options.broker);
      } catch (error) {
        throw new RunnerStartError(error);
      }
      if (this.shutdownPromise) throw new Error('the worker was stopped while it was starting');
    } catch (error) {
      // A spare stopped (or failed) before its promotion releases what `prepare` opened.
      if (this.options.standby) await this.runner.drain(0).catch(() => {});
      if (!this.shutdownPromise) {
        this.setState('FAILED');
        this.resolveStopped();
        await this.options.broker.close({ timeout: 1 }).catch(() => {});
      }
      throw error;
    }
    this.setState('RUNNING');
    const stats = this.runner.stats();
    this.send({
      v: PROTOCOL_VERSION,
      type: 'ready',
      pid: process.pid,
      slotsTotal: stats.slotsTotal,
    });
    this.loopDelay.enable();
    this.scheduleHeartbeat();
  }

  /**
   * Stops the worker: no new work, running work gets up to `gracefulTimeout` seconds (less a
   * short budget for closing the broker), then the broker is closed. Idempotent; resolves once
   * `STOPPED`.
   */
  shutdown(gracefulTimeout: number): Promise<void> {
    this.shutdownPromise ??= this.runShutdown(Math.max(0, gracefulTimeout));
    this.shutdownRequested();
    return this.shutdownPromise;
  }

  private async runShutdown(gracefulTimeout: number): Promise<void> {
    const wasRunning = this.currentState === 'RUNNING';
    const wasStandby = this.currentState === 'STANDBY';
    if (this.currentState === 'FAILED' || this.currentState === 'STOPPED') return;
    this.setState('STOPPING');
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    this.loopDelay.disable();
    // Closing the broker takes milliseconds once the consumers are gone: most of the time is the
    // runner's, whose running steps may finish and checkpoint.
    const closeBudget = Math.min(MAX_CLOSE_BUDGET, gracefulTimeout / 4);
    const drainBudget = gracefulTimeout - closeBudget;
    if (wasRunning) {
      this.setState('DRAINING');
      try {
        await withDeadline(this.runner.drain(drainBudget), drainBudget);
      } catch (error) {
        this.log(`drain did not finish: ${(error as Error).message}`);
      }
      this.setState('DRAINED');
    } else if (wasStandby) {
      // A spare took no work: its runner only closes what `prepare` opened.
      await withDeadline(this.runner.drain(0), closeBudget + 0.5).catch(() => {});
    }
    try {
      await withDeadline(
        this.options.broker.close({ timeout: Math.max(0.1, closeBudget) }),
        closeBudget + 0.5,
      );
    } catch (error) {
      this.log(`closing the broker failed: ${(error as Error).message}`);
    }
    this.setState('STOPPED');
    this.resolveStopped();
  }

  private scheduleHeartbeat(): void {
    const intervalMs = (this.options.heartbeatInterval ?? 1) * 1000;
    const due = Date.now() + intervalMs;
    this.heartbeatTimer = setTimeout(() => {
      if (this.currentState !== 'RUNNING') return;
      const timerLag = Math.max(0, Date.now() - due) / 1000;
      // The worse of how late this timer fired and the loop's worst delay since the last beat.
      const maxDelay = Number.isFinite(this.loopDelay.max) ? this.loopDelay.max / 1e9 : 0;
      this.loopDelay.reset();
      const stats = this.runner.stats();
      this.send({
        v: PROTOCOL_VERSION,
        type: 'heartbeat',
        slotsUsed: stats.slotsUsed,
        slotsTotal: stats.slotsTotal,
        activePks: stats.activePks,
        eventLoopLag: Math.max(timerLag, maxDelay),
        memory: process.memoryUsage.rss(),
        ...(stats.counters ? { counters: stats.counters } : {}),
      });
      this.scheduleHeartbeat();
    }, intervalMs);
  }

  private send(message: WorkerToSupervisorMessage): void {
    try {
      this.options.channel?.(message);
    } catch (error) {
      this.log(`cannot reach the supervisor: ${(error as Error).message}`);
    }
  }

  private setState(state: WorkerLifecycleState): void {
    this.currentState = state;
    this.log(`state ${state}`);
    this.options.onStateChange?.(state);
  }

  private log(message: string): void {
    this.options.log?.(message);
  }
}

/** Resolves with `promise`, or rejects once `seconds` have passed. */
function withDeadline<T>(promise: Promise<T>, seconds: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no result within ${seconds} s`)), seconds * 1000);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
