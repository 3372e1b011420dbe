import { join } from 'node:path';
import type { LogFormat } from '@aiida/config';
import {
  ErrorCodes,
  type RestartReason,
  type SpareStatus,
  type WorkerCounters,
  type WorkerStatus,
} from '@aiida/ipc';
import pidusage from 'pidusage';
import { type CrashBackoffOptions, crashBackoffDelay, nextFailureCount } from './backoff.js';
import { SupervisorError } from './errors.js';
import { type Logger, type LogLevel, type LogRotation, RotatingLog, WorkerLog } from './log.js';
import {
  describeExit,
  type WorkerExit,
  WorkerProcess,
  type WorkerSpawnSpec,
} from './worker-process.js';

/** Options of {@link WorkerPool}. */
export interface WorkerPoolOptions {
  spawn: WorkerSpawnSpec;
  /** Folder of the `worker-<index>.log` files. */
  logDir: string;
  logRotation: LogRotation;
  /** `logging.format` of the worker logs. @default 'text' */
  logFormat?: LogFormat;
  /** `logging.level` of the supervisor's lines in the worker logs. @default 'info' */
  logLevel?: LogLevel | 'trace';
  /** Memory cap per worker in bytes (`daemon.worker_max_memory`); 0 = none. */
  maxMemory: number;
  /** Seconds between cpu/memory samples. @default 2 */
  sampleInterval?: number;
  /** Seconds after which SIGKILL follows a `shutdown` that did not end a worker. */
  gracefulTimeout: number;
  /**
   * Seconds without a heartbeat after which a ready worker is unresponsive
   * (`daemon.lease_timeout`: by then its leases are lost anyway): it gets SIGTERM, then SIGKILL
   * after `gracefulTimeout`, and is revived as a restart with the reason `unresponsive`.
   * 0 = never. @default 0
   */
  unresponsiveTimeout?: number;
  logger: Logger;
  backoff?: CrashBackoffOptions;
  /**
   * Keep one warm spare (`daemon.warm_spare`): a worker started with `--spare` that loads,
   * connects and opens its store, then waits; when a worker dies (and is not crash-looping) the
   * spare takes its slot at once and a new spare is started. Not counted in {@link size}.
   * @default false
   */
  warmSpare?: boolean;
  /**
   * Called when a slot's worker died without being asked to (before or after ready). Returning
   * `false` suppresses the revival: during the daemon's start the supervisor fails the start.
   */
  onUnexpectedExit?: (slot: WorkerSlot, worker: WorkerProcess) => boolean | undefined;
  /** Called when a worker stayed above the memory cap for two samples in a row. */
  onOverMemory?: (slot: WorkerSlot) => void;
}

/**
 * A place for one worker in the daemon, with a stable index. It keeps its index, its restart
 * count and its crash-loop state across the processes that fill it.
 */
export class WorkerSlot {
  /** The worker that serves this slot (absent while a crash-looping slot waits). */
  current: WorkerProcess | undefined;
  /** A replacement being started (rolling restart, memory cap); takes over once ready. */
  successor: WorkerProcess | undefined;
  /** Former workers of this slot, asked to stop. */
  readonly retiring = new Set<WorkerProcess>();
  /** Times this slot's worker was started again after dying. */
  restarts = 0;
  /** Why its worker was last started again (null before the first restart). */
  lastRestartReason: RestartReason | null = null;
  /** Consecutive quick failures (death before ready or within a second of it). */
  failures = 0;
  /** Stderr tail of the last worker that failed, shown while crash-looping. */
  lastFailureStderr: string[] = [];
  nextAttemptAt: Date | undefined;
  retryTimer: NodeJS.Timeout | undefined;
  /** Set once the slot is being removed (decr, stop): nothing is revived any more. */
  removed = false;
  /** Why the worker that just died will be started again (set at its exit). */
  pendingRestartReason: RestartReason | undefined;
  /** Set while a replacement for the memory cap is queued or running. */
  replacing = false;
  private readonly waiters = new Set<{
    resolve: () => void;
    reject: (error: Error) => void;
  }>();

  constructor(readonly index: number) {}

  /** True while waiting out a backoff or retrying after repeated quick failures. */
  get crashLooping(): boolean {
    return this.failures >= 2 && this.current?.state !== 'ready';
  }

  /**
   * Resolves once this slot has a ready worker; rejects with `worker_failed` if its worker dies
   * before that (the slot itself keeps trying).
   */
  whenReady(): Promise<void> {
    if (this.current?.state === 'ready') return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.add({ resolve, reject });
    });
  }

  /** @internal */
  settleWaiters(error?: Error): void {
    for (const waiter of this.waiters) {
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
    this.waiters.clear();
  }
}

/** Resolves with `promise`'s value, or with 'timeout' after `ms`; the timer never outlives it. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The supervisor's workers: forks them into slots, revives the dead (at once, or with backoff
 * when they die young again and again), scales, replaces (rolling), samples cpu and memory and
 * stops them (`shutdown`, then SIGKILL after the graceful timeout).
 */
export class WorkerPool {
  private readonly slots = new Map<number, WorkerSlot>();
  /** Every worker process not yet exited, whatever its slot's fate (for killAll). */
  private readonly live = new Set<WorkerProcess>();
  private readonly logs = new Map<number, WorkerLog>();
  /** Counters of the workers that exited (as of their last heartbeat). */
  private readonly retiredCounters: WorkerCounters = emptyCounters();
  private readonly sampler: NodeJS.Timeout;
  private readonly watchdog: NodeJS.Timeout | undefined;
  private lastWatchAt = Date.now();
  private lastSampleAt = 0;
  private sampling: Promise<void> | undefined;
  private stopping = false;
  /** The warm spare (not promoted yet), if any. */
  private spare: WorkerProcess | undefined;
  /** Consecutive spares that died before their standby (backoff of the next one). */
  private spareFailures = 0;
  private spareTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: WorkerPoolOptions) {
    this.sampler = setInterval(() => void this.sample(), (options.sampleInterval ?? 2) * 1000);
    this.sampler.unref();
    const timeout = options.unresponsiveTimeout ?? 0;
    if (timeout > 0) {
      this.watchdog = setInterval(() => this.watch(), watchInterval(timeout) * 1000);
      this.watchdog.unref();
    }
  }

  /** Number of slots (the number of workers the daemon is meant to run). */
  get size(): number {
    return this.slots.size;
  }

  /** Pids of every live worker process (current, successors, retiring). */
  pids(): number[] {
    return [...this.live].filter((w) => w.pid !== undefined).map((w) => w.pid as number);
  }

  /** Adds `n` slots and starts their workers; resolves once all are ready. */
  async add(n: number): Promise<WorkerSlot[]> {
    this.assertRunning();
    const added: WorkerSlot[] = [];
    for (let i = 0; i < n; i++) {
      const slot = new WorkerSlot(this.freeIndex());
      this.slots.set(slot.index, slot);
      added.push(slot);
      this.startWorker(slot, false);
    }
    await Promise.all(added.map((slot) => slot.whenReady()));
    // After the workers, so that the spare does not slow their start down.
    this.ensureSpare();
    return added;
  }

  /** The warm spare as `status` shows it, or null when there is none. */
  spareStatus(): SpareStatus | null {
    const spare = this.spare;
    if (!spare?.alive || spare.pid === undefined) return null;
    return {
      pid: spare.pid,
      state: spare.standbyAt ? 'standby' : 'starting',
      startedAt: spare.startedAt.toISOString(),
    };
  }

  /** Starts a warm spare if the pool should have one and has none (nor one waiting to start). */
  private ensureSpare(): void {
    if (!this.options.warmSpare || this.stopping || this.spare || this.spareTimer) return;
    if (this.slots.size === 0) return;
    const spec = this.options.spawn;
    const spare = new WorkerProcess(
      -1,
      { ...spec, args: [...spec.args, '--spare'] },
      this.logFor(-1),
      {
        onStandby: (w) => {
          this.spareFailures = 0;
          this.options.logger.info(`warm spare (pid ${w.pid}) in standby`);
        },
        onReady: (w) => {
          // Only a promoted spare sends `ready`: it is now its slot's worker.
          const listener = this.readyListeners.get(w);
          if (listener) listener();
          const slot = this.slots.get(w.index);
          if (slot?.current === w) slot.settleWaiters();
        },
        onExit: (w, exit) => {
          this.live.delete(w);
          if (this.spare === w) {
            this.spare = undefined;
            this.onSpareExit(w);
            return;
          }
          const slot = this.slots.get(w.index);
          if (slot) this.onWorkerExit(slot, w, exit);
        },
        onFatal: (w) => {
          setTimeout(() => w.signal('SIGKILL'), 2000).unref();
        },
        onInvalidMessage: (w, problem) =>
          this.options.logger.warn(
            `worker ${w.index} (pid ${w.pid}) sent an invalid message: ${problem}`,
          ),
      },
    );
    if (spare.alive) this.live.add(spare);
    this.spare = spare;
    this.options.logger.info(`warm spare started (pid ${spare.pid ?? '?'})`);
  }

  private onSpareExit(spare: WorkerProcess): void {
    if (this.stopping) return;
    if (spare.standbyAt === undefined) this.spareFailures++;
    const delay = crashBackoffDelay(this.spareFailures, this.options.backoff);
    this.options.logger.warn(
      `${spare.describeFailure()}; ${delay === 0 ? 'starting another' : `next warm spare in ${delay} s`}`,
    );
    if (delay === 0) {
      this.ensureSpare();
      return;
    }
    this.spareTimer = setTimeout(() => {
      this.spareTimer = undefined;
      this.ensureSpare();
    }, delay * 1000);
  }

  /**
   * Puts the warm spare (if it is in standby) into `slot`, whose worker died, as its restart;
   * a new spare is started. Returns false when there is no spare to promote.
   */
  private promoteSpare(slot: WorkerSlot): boolean {
    const spare = this.spare;
    if (!spare?.alive || spare.standbyAt === undefined) return false;
    if (!spare.promote(slot.index, this.logFor(slot.index))) return false;
    this.spare = undefined;
    slot.retryTimer = undefined;
    slot.nextAttemptAt = undefined;
    slot.restarts++;
    slot.lastRestartReason = slot.pendingRestartReason ?? 'exited';
    slot.pendingRestartReason = undefined;
    slot.current = spare;
    this.options.logger.info(
      `worker ${slot.index} is now the former warm spare (pid ${spare.pid}, restart ${slot.restarts}, reason ${slot.lastRestartReason})`,
    );
    // Its promotion only starts the consumer: one that is not ready within the unresponsive
    // timeout (or 10 s) is stuck, and is killed to be revived like any dead worker.
    const limit = (this.options.unresponsiveTimeout || 10) * 1000;
    setTimeout(() => {
      if (!spare.alive || spare.state !== 'starting' || slot.current !== spare) return;
      this.options.logger.warn(
        `worker ${slot.index} (pid ${spare.pid}, the former warm spare) is not ready ${limit / 1000} s after its promotion: SIGKILL`,
      );
      spare.signal('SIGKILL');
    }, limit).unref();
    this.ensureSpare();
    return true;
  }

  /**
   * Stops the `n` youngest workers gracefully (crash-looping or starting slots first, then by
   * start time) and removes their slots; resolves once they are gone.
   */
  async remove(n: number, gracefulTimeout: number): Promise<void> {
    this.assertRunning();
    const youngestFirst = [...this.slots.values()].sort((a, b) => age(a) - age(b));
    const chosen = youngestFirst.slice(0, Math.min(n, youngestFirst.length));
    for (const slot of chosen) {
      slot.removed = true;
      this.slots.delete(slot.index);
    }
    // A daemon without workers keeps no spare either.
    const spare = this.slots.size === 0 ? this.takeSpare() : undefined;
    await Promise.all([
      ...chosen.map((slot) => this.retireSlot(slot, gracefulTimeout)),
      spare ? this.stopSpare(spare, gracefulTimeout) : undefined,
    ]);
  }

  /**
   * Replaces the worker of `slot` by a new one: the new one is started and must be ready before
   * the old one is asked to stop. Rejects with `worker_failed` if the new one dies first (the
   * old one stays).
   */
  async replace(slot: WorkerSlot, gracefulTimeout: number): Promise<void> {
    this.assertRunning();
    if (slot.removed) return;
    const old = slot.current;
    if (old === undefined || old.state !== 'ready') {
      // Nothing healthy to keep up meanwhile: start afresh, without waiting out a backoff.
      if (slot.retryTimer) clearTimeout(slot.retryTimer);
      slot.retryTimer = undefined;
      slot.failures = 0;
      if (old) {
        slot.current = undefined;
        slot.retiring.add(old);
        void this.stopWorker(old, gracefulTimeout);
      }
      this.startWorker(slot, false);
      await slot.whenReady();
      return;
    }
    const successor = this.startWorker(slot, false, true);
    await new Promise<void>((resolve, reject) => {
      if (successor.state === 'ready') resolve();
      successor.exited.then(() =>
        reject(
          new SupervisorError(
            ErrorCodes.workerFailed,
            `replacement of worker ${slot.index} failed: ${successor.describeFailure()}`,
          ),
        ),
      );
      this.readyListeners.set(successor, resolve);
    }).finally(() => this.readyListeners.delete(successor));
    if (slot.successor === successor) slot.successor = undefined;
    if (slot.current === old) slot.current = successor;
    if (old.alive) {
      slot.retiring.add(old);
      await this.stopWorker(old, gracefulTimeout);
    }
  }

  /**
   * Replaces every worker, one slot at a time (never fewer than N − 1 ready), then the warm
   * spare, so that all of them run the current program and options.
   */
  async rollingRestart(gracefulTimeout: number): Promise<void> {
    for (const slot of [...this.slots.values()].sort((a, b) => a.index - b.index)) {
      if (!slot.removed) await this.replace(slot, gracefulTimeout);
    }
    const spare = this.takeSpare();
    if (spare) await this.stopSpare(spare, gracefulTimeout);
    this.ensureSpare();
  }

  /**
   * Stops every worker: `shutdown` to each, SIGKILL to those left after `gracefulTimeout`.
   * Resolves with the number of workers that had to be killed. No worker is revived after this.
   */
  async stopAll(gracefulTimeout: number): Promise<number> {
    this.stopping = true;
    clearInterval(this.sampler);
    clearInterval(this.watchdog);
    const slots = [...this.slots.values()];
    this.slots.clear();
    for (const slot of slots) slot.removed = true;
    const spare = this.takeSpare();
    const [spareKilled, ...killed] = await Promise.all([
      spare ? this.stopSpare(spare, gracefulTimeout) : false,
      ...slots.map((slot) => this.retireSlot(slot, gracefulTimeout)),
    ]);
    if (spareKilled) killed.push(1);
    await Promise.all([...this.logs.values()].map((log) => log.close()));
    return killed.reduce((sum, n) => sum + n, 0);
  }

  /** Takes the spare (and a pending one) out of the pool, to be stopped by the caller. */
  private takeSpare(): WorkerProcess | undefined {
    if (this.spareTimer) clearTimeout(this.spareTimer);
    this.spareTimer = undefined;
    const spare = this.spare;
    this.spare = undefined;
    return spare;
  }

  /** SIGKILLs every worker at once (the second signal). No worker is revived after this. */
  killAll(): void {
    this.stopping = true;
    clearInterval(this.sampler);
    clearInterval(this.watchdog);
    this.takeSpare();
    for (const slot of this.slots.values()) {
      slot.removed = true;
      if (slot.retryTimer) clearTimeout(slot.retryTimer);
    }
    for (const worker of this.live) worker.signal('SIGKILL');
  }

  /** Status of every worker process, ordered by index (a crash-looping slot shows pid null). */
  statuses(): WorkerStatus[] {
    const out: WorkerStatus[] = [];
    for (const slot of [...this.slots.values()].sort((a, b) => a.index - b.index)) {
      const crashLooping = slot.crashLooping;
      const base = {
        index: slot.index,
        restarts: slot.restarts,
        lastRestartReason: slot.lastRestartReason,
        lastStderr: crashLooping ? [...slot.lastFailureStderr] : [],
        nextAttemptAt:
          crashLooping && slot.current === undefined && slot.nextAttemptAt
            ? slot.nextAttemptAt.toISOString()
            : null,
      };
      if (slot.current) {
        out.push({
          ...workerFields(slot.current),
          ...base,
          state: crashLooping ? 'crash-looping' : slot.current.state,
        });
      } else {
        out.push({
          ...base,
          pid: null,
          state: 'crash-looping',
          startedAt: null,
          lastHeartbeatAt: null,
          cpu: null,
          memory: null,
          slotsUsed: 0,
          slotsTotal: 0,
          activePks: [],
        });
      }
      for (const other of [slot.successor, ...slot.retiring]) {
        if (other?.alive) {
          out.push({ ...workerFields(other), ...base, lastStderr: [], nextAttemptAt: null });
        }
      }
    }
    return out;
  }

  /**
   * What the daemon's workers counted (claims, lease losses, re-dispatches, processes ended), as
   * of their last heartbeats: those that exited included, so the totals never go down.
   */
  counters(): WorkerCounters {
    const total = { ...this.retiredCounters };
    for (const worker of this.live) if (worker.counters) addCounters(total, worker.counters);
    return total;
  }

  /** Samples cpu and memory of every worker, unless a sample is younger than `maxAge` seconds. */
  async refreshUsage(maxAge = 1): Promise<void> {
    if (Date.now() - this.lastSampleAt < maxAge * 1000) return;
    await this.sample();
  }

  /** Pid-to-worker samples via pidusage (one call for all workers). */
  private sample(): Promise<void> {
    if (this.sampling) return this.sampling;
    const workers = this.processes().filter((w) => w.alive && w.pid !== undefined);
    if (workers.length === 0) return Promise.resolve();
    this.sampling = pidusage(
      workers.map((w) => w.pid as number),
      { maxage: 10_000 },
    )
      .then((stats) => {
        this.lastSampleAt = Date.now();
        for (const worker of workers) {
          const stat = stats[String(worker.pid)];
          if (!stat) continue;
          worker.cpu = Math.round(stat.cpu * 10) / 10;
          worker.memory = Math.round(stat.memory);
          this.checkMemory(worker);
        }
      })
      .catch(() => {})
      .finally(() => {
        this.sampling = undefined;
      });
    return this.sampling;
  }

  /**
   * Finds ready workers whose last heartbeat (or ready message) is older than
   * `unresponsiveTimeout`: SIGTERM now, SIGKILL after `gracefulTimeout` (a stopped process only
   * dies of SIGKILL). Their exit is then a restart with the reason `unresponsive`. A tick that
   * comes much too late means the supervisor itself was stalled (a loaded machine, a suspended
   * daemon): it judges no one then, since the silence may be its own.
   */
  private watch(): void {
    const timeout = this.options.unresponsiveTimeout ?? 0;
    const now = Date.now();
    const late = now - this.lastWatchAt - watchInterval(timeout) * 1000;
    this.lastWatchAt = now;
    if (this.stopping || timeout <= 0 || late > (timeout * 1000) / 2) return;
    for (const worker of this.processes()) {
      if (worker.state !== 'ready' || !worker.alive || worker.unresponsiveFor !== undefined)
        continue;
      const last = worker.lastHeartbeatAt ?? worker.readyAt;
      if (last === undefined) continue;
      const silent = (now - last.getTime()) / 1000;
      if (silent <= timeout) continue;
      worker.unresponsiveFor = silent;
      const grace = this.options.gracefulTimeout;
      this.options.logger.warn(
        `worker ${worker.index} (pid ${worker.pid}) is unresponsive: no heartbeat for ${silent.toFixed(1)} s ` +
          `(daemon.lease_timeout is ${timeout} s): SIGTERM, SIGKILL in ${grace} s if it is still there`,
      );
      worker.signal('SIGTERM');
      setTimeout(() => {
        if (!worker.alive) return;
        this.options.logger.warn(
          `worker ${worker.index} (pid ${worker.pid}) still runs ${grace} s after SIGTERM: SIGKILL`,
        );
        worker.signal('SIGKILL');
      }, grace * 1000).unref();
    }
  }

  private checkMemory(worker: WorkerProcess): void {
    const max = this.options.maxMemory;
    if (max <= 0 || worker.state !== 'ready' || worker.memory === null) return;
    worker.overMemorySamples = worker.memory > max ? worker.overMemorySamples + 1 : 0;
    if (worker.overMemorySamples < 2) return;
    const slot = this.slots.get(worker.index);
    if (!slot || slot.current !== worker || slot.replacing || this.stopping) return;
    slot.replacing = true;
    this.options.logger.warn(
      `worker ${worker.index} (pid ${worker.pid}) uses ${worker.memory} bytes, above daemon.worker_max_memory ${max}: replacing it`,
    );
    this.options.onOverMemory?.(slot);
  }

  private readonly readyListeners = new Map<WorkerProcess, () => void>();

  private startWorker(slot: WorkerSlot, isRestart: boolean, asSuccessor = false): WorkerProcess {
    slot.retryTimer = undefined;
    slot.nextAttemptAt = undefined;
    if (isRestart) {
      slot.restarts++;
      slot.lastRestartReason = slot.pendingRestartReason ?? 'exited';
    }
    slot.pendingRestartReason = undefined;
    const worker = new WorkerProcess(slot.index, this.options.spawn, this.logFor(slot.index), {
      onReady: (w) => {
        const listener = this.readyListeners.get(w);
        if (listener) listener();
        if (slot.current === w) slot.settleWaiters();
      },
      onExit: (w, exit) => {
        this.live.delete(w);
        if (w.counters) addCounters(this.retiredCounters, w.counters);
        this.onWorkerExit(slot, w, exit);
      },
      onFatal: (w) => {
        // A worker that declared itself dead must not linger.
        setTimeout(() => w.signal('SIGKILL'), 2000).unref();
      },
      onInvalidMessage: (w, problem) =>
        this.options.logger.warn(
          `worker ${w.index} (pid ${w.pid}) sent an invalid message: ${problem}`,
        ),
    });
    if (worker.alive) this.live.add(worker);
    if (asSuccessor) slot.successor = worker;
    else slot.current = worker;
    this.options.logger.info(
      `worker ${slot.index} started (pid ${worker.pid ?? '?'}${isRestart ? `, restart ${slot.restarts}, reason ${slot.lastRestartReason}` : ''}${asSuccessor ? ', as replacement' : ''})`,
    );
    return worker;
  }

  private onWorkerExit(slot: WorkerSlot, worker: WorkerProcess, exit: WorkerExit): void {
    if (slot.successor === worker) {
      slot.successor = undefined;
      this.options.logger.warn(
        `replacement for worker ${slot.index} ${describeExit(exit)} before it took over`,
      );
      return;
    }
    if (slot.retiring.delete(worker) || (slot.removed && slot.current === worker)) {
      if (slot.current === worker) slot.current = undefined;
      this.options.logger.info(
        `worker ${slot.index} (pid ${worker.pid}) stopped (${describeExit(exit)})`,
      );
      return;
    }
    if (slot.current !== worker) return;
    slot.current = undefined;
    if (slot.removed || this.stopping) {
      slot.settleWaiters(
        new SupervisorError(ErrorCodes.shuttingDown, `worker ${slot.index} was stopped`),
      );
      return;
    }
    slot.failures = nextFailureCount(slot.failures, worker.readyFor());
    slot.lastFailureStderr = [...worker.stderrTail];
    if (worker.fatal !== undefined) slot.lastFailureStderr.push(worker.fatal);
    const failure = worker.describeFailure();
    slot.settleWaiters(new SupervisorError(ErrorCodes.workerFailed, failure));
    if (this.options.onUnexpectedExit?.(slot, worker) === false) return;
    if (slot.removed || this.stopping) return;
    if (slot.successor) {
      // A replacement is already starting: it takes the slot over.
      slot.current = slot.successor;
      slot.successor = undefined;
      this.options.logger.warn(`worker ${slot.index} died during its replacement: ${failure}`);
      return;
    }
    slot.pendingRestartReason = worker.unresponsiveFor === undefined ? 'exited' : 'unresponsive';
    const delay = crashBackoffDelay(slot.failures, this.options.backoff);
    if (delay === 0 && this.promoteSpare(slot)) {
      this.options.logger.warn(`${failure}; the warm spare took its place`);
      return;
    }
    if (delay === 0) {
      this.options.logger.warn(`${failure}; reviving it`);
      this.startWorker(slot, true);
      return;
    }
    slot.nextAttemptAt = new Date(Date.now() + delay * 1000);
    this.options.logger.warn(
      `${failure}; worker ${slot.index} is crash-looping (${slot.failures} quick failures), next attempt in ${delay} s`,
    );
    slot.retryTimer = setTimeout(() => {
      if (!slot.removed && !this.stopping && slot.current === undefined)
        this.startWorker(slot, true);
    }, delay * 1000);
  }

  /** Stops everything of a removed slot; resolves with the number of SIGKILLed workers. */
  private async retireSlot(slot: WorkerSlot, gracefulTimeout: number): Promise<number> {
    if (slot.retryTimer) clearTimeout(slot.retryTimer);
    slot.retryTimer = undefined;
    const workers = [slot.current, slot.successor, ...slot.retiring].filter(
      (w): w is WorkerProcess => w !== undefined,
    );
    for (const worker of workers) if (worker !== slot.current) slot.retiring.add(worker);
    const killed = await Promise.all(workers.map((w) => this.stopWorker(w, gracefulTimeout)));
    slot.settleWaiters(
      new SupervisorError(ErrorCodes.shuttingDown, `worker ${slot.index} was stopped`),
    );
    return killed.filter(Boolean).length;
  }

  /**
   * Stops the warm spare. One still starting holds nothing and may not even read its channel
   * yet (it is loading its modules, which takes longer than a stop should): SIGTERM ends it at
   * once then, or drains it like `shutdown` once its handlers are installed.
   */
  private stopSpare(spare: WorkerProcess, gracefulTimeout: number): Promise<boolean> {
    return this.stopWorker(spare, gracefulTimeout, spare.standbyAt === undefined);
  }

  /**
   * `shutdown` (or SIGTERM when `bySignal`), then SIGKILL after `gracefulTimeout`; resolves true
   * when it had to kill.
   */
  private async stopWorker(
    worker: WorkerProcess,
    gracefulTimeout: number,
    bySignal = false,
  ): Promise<boolean> {
    if (!worker.alive) {
      await worker.exited;
      return false;
    }
    if (bySignal) {
      worker.state = 'stopping';
      worker.signal('SIGTERM');
    } else worker.requestShutdown(gracefulTimeout);
    if ((await within(worker.exited, gracefulTimeout * 1000)) !== 'timeout') return false;
    this.options.logger.warn(
      `worker ${worker.index} (pid ${worker.pid}) still runs ${gracefulTimeout} s after shutdown: SIGKILL`,
    );
    worker.signal('SIGKILL');
    await within(worker.exited, 5000);
    return true;
  }

  private processes(): WorkerProcess[] {
    const all: WorkerProcess[] = [];
    for (const slot of this.slots.values()) {
      if (slot.current) all.push(slot.current);
      if (slot.successor) all.push(slot.successor);
      all.push(...slot.retiring);
    }
    return all;
  }

  private freeIndex(): number {
    let index = 0;
    while (this.slots.has(index)) index++;
    return index;
  }

  private logFor(index: number): WorkerLog {
    let log = this.logs.get(index);
    if (!log) {
      log = new WorkerLog(
        new RotatingLog(
          join(this.options.logDir, index < 0 ? 'worker-spare.log' : `worker-${index}.log`),
          this.options.logRotation,
        ),
        index,
        this.options.logFormat,
        this.options.logLevel,
      );
      this.logs.set(index, log);
    }
    return log;
  }

  private assertRunning(): void {
    if (this.stopping) {
      throw new SupervisorError(ErrorCodes.shuttingDown, 'the daemon is shutting down');
    }
  }
}

function emptyCounters(): WorkerCounters {
  return { claims: 0, leaseLosses: 0, redispatches: 0, finished: 0, excepted: 0, killed: 0 };
}

function addCounters(into: WorkerCounters, more: WorkerCounters): void {
  for (const key of Object.keys(into) as (keyof WorkerCounters)[]) into[key] += more[key];
}

/** Seconds between two unresponsiveness checks: a quarter of the timeout, within [0.25, 1]. */
function watchInterval(timeout: number): number {
  return Math.min(1, Math.max(0.25, timeout / 4));
}

function age(slot: WorkerSlot): number {
  // Smaller = younger. Slots without a ready worker count as youngest.
  const worker = slot.current;
  if (worker?.state !== 'ready') return Number.NEGATIVE_INFINITY;
  return -worker.startedAt.getTime();
}

function workerFields(worker: WorkerProcess) {
  return {
    pid: worker.pid ?? null,
    state: worker.state,
    startedAt: worker.startedAt.toISOString(),
    lastHeartbeatAt: worker.lastHeartbeatAt?.toISOString() ?? null,
    cpu: worker.cpu,
    memory: worker.memory,
    slotsUsed: worker.slotsUsed,
    slotsTotal: worker.slotsTotal,
    activePks: [...worker.activePks],
  };
}
