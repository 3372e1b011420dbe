import { readFileSync, rmdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import {
  getDaemonDir,
  getDaemonLogDir,
  getHostname,
  getOption,
  getProfileDaemonDir,
  type LogFormat,
  type Profile,
} from '@aiida/config';
import {
  type ControlRequest,
  type DaemonStateFile,
  type DaemonStatus,
  ErrorCodes,
  type PingResult,
  PROTOCOL_VERSION,
  type ScaleResult,
  type StopResult,
  type WorkersResult,
} from '@aiida/ipc';
import { ControlServer } from './control-server.js';
import {
  chooseSocketPath,
  daemonLockPath,
  daemonStatePath,
  ensurePrivateDir,
  LOCK_FILE_NAME,
  parseDaemonState,
  preparePrivateSocketDir,
  removeQuietly,
  STATE_FILE_VERSION,
  writeFileAtomic,
} from './daemon-files.js';
import { acquireDaemonLock, type DaemonLock, refuseEarlierLayoutDaemon } from './daemon-lock.js';
import { assertLinux, errorMessage, isSupervisorError, SupervisorError } from './errors.js';
import { createLogger, type Logger, type LogLevel, RotatingLog } from './log.js';
import { createSupervisorMetrics, type MetricsServer, startMetricsServer } from './metrics.js';
import { currentIdentity } from './process-identity.js';
import { WORKER_PROGRAM_ENV } from './program-env.js';
import { WorkerPool } from './worker-pool.js';

export { SUPERVISOR_EXEC_ARGV, WORKER_PROGRAM_ENV } from './program-env.js';

/** What {@link runSupervisor} reports once every worker is ready. */
export interface SupervisorStartedInfo {
  pid: number;
  socketPath: string;
}

/** Options of {@link runSupervisor}. */
export interface RunSupervisorOptions {
  /** The profile whose daemon this is (its `aiidaPath` is passed to the workers). */
  profile: Profile;
  /** Workers to start; `runSupervisor` resolves once all of them are ready. */
  numberWorkers: number;
  /** Called once every worker is ready, just before `runSupervisor` resolves. */
  onStarted?: (info: SupervisorStartedInfo) => void;
  /**
   * Install SIGTERM/SIGINT handlers: the first signal stops gracefully, a second one SIGKILLs
   * the workers at once. `done` then resolves with 128 + the signal number.
   * @default true
   */
  handleSignals?: boolean;
  /**
   * Path of the worker program. Defaults to env `AIIDA_DAEMON_WORKER_PROGRAM`, else the
   * `aiida-worker` bin of `@aiida/worker`.
   */
  workerProgram?: string;
  /** Also hand every supervisor log line to this function (e.g. stderr in the foreground). */
  echoLog?: (line: string) => void;
}

/** A running supervisor, as returned by {@link runSupervisor}. */
export interface Supervisor {
  /** The supervisor's pid (this process). */
  readonly pid: number;
  /** Path of the control socket. */
  readonly socketPath: string;
  /**
   * Stops the daemon: `shutdown` to every worker, SIGKILL to those left after `gracefulTimeout`
   * seconds (default `daemon.graceful_timeout`), then removes the state file, socket and lock.
   * Resolves once all that is done.
   */
  stop(opts?: { gracefulTimeout?: number }): Promise<void>;
  /**
   * Resolves with the exit code once the supervisor has stopped, for whatever reason: 0 after a
   * stop request, 128 + signal number after a signal.
   */
  readonly done: Promise<number>;
}

/** The profile options the supervisor uses, resolved once at start. */
export interface SupervisorSettings {
  gracefulTimeout: number;
  /** `daemon.lease_timeout`: a worker silent for longer is unresponsive and replaced. */
  leaseTimeout: number;
  maxMemory: number;
  logMaxBytes: number;
  logBackups: number;
  logLevel: LogLevel | 'trace';
  logFormat: LogFormat;
  /** `daemon.metrics_port`: 0 = no `/metrics`. */
  metricsPort: number;
  /** `daemon.warm_spare`: keep one spare worker loaded and connected. */
  warmSpare: boolean;
}

/** Reads the supervisor's options of a profile (`daemon.*`, `logging.level`). */
function resolveSupervisorSettings(profile: Profile): SupervisorSettings {
  const opts = { profile };
  return {
    gracefulTimeout: getOption('daemon.graceful_timeout', opts),
    leaseTimeout: getOption('daemon.lease_timeout', opts),
    maxMemory: getOption('daemon.worker_max_memory', opts),
    logMaxBytes: getOption('daemon.log_max_bytes', opts),
    logBackups: getOption('daemon.log_backups', opts),
    logLevel: getOption('logging.level', opts),
    logFormat: getOption('logging.format', opts),
    metricsPort: getOption('daemon.metrics_port', opts),
    warmSpare: getOption('daemon.warm_spare', opts),
  };
}

/** Path of the worker program: the option, env `AIIDA_DAEMON_WORKER_PROGRAM`, or `@aiida/worker`'s bin. */
function resolveWorkerProgram(explicit?: string): string {
  if (explicit) return resolve(explicit);
  const fromEnv = process.env[WORKER_PROGRAM_ENV];
  if (fromEnv) return resolve(fromEnv);
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve('@aiida/worker/package.json');
  const manifest = require(manifestPath) as { bin?: Record<string, string> | string };
  const bin = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin?.['aiida-worker'];
  if (!bin) {
    throw new SupervisorError(
      ErrorCodes.daemonError,
      `${manifestPath} declares no 'aiida-worker' bin`,
    );
  }
  return join(dirname(manifestPath), bin);
}

/**
 * Refuses (`too_many_workers`) to grow a daemon of `running` workers by `n` beyond the option
 * `daemon.max_workers`, read afresh so that a changed value applies at once. The last line of
 * defence: the client and the CLI check first.
 */
function assertWithinMaxWorkers(profile: Profile, n: number, running: number): void {
  // By name, so that the profile's options are read from the file now, not from the start's copy.
  const max = getOption('daemon.max_workers', {
    profile: profile.name,
    aiidaPath: profile.aiidaPath,
  });
  if (running + n <= max) return;
  throw new SupervisorError(
    ErrorCodes.tooManyWorkers,
    `${running > 0 ? `adding ${n} workers to the ${running} running` : `starting ${n} workers`} ` +
      `would exceed the option daemon.max_workers (${max}) of profile '${profile.name}'; raise it ` +
      `with \`aiida config set daemon.max_workers N\` if this machine can take more`,
    { details: { requested: n, running, maxWorkers: max } },
  );
}

const SIGNAL_NUMBERS: Record<string, number> = { SIGINT: 2, SIGTERM: 15 };

/**
 * Runs the daemon of a profile in this process: takes the profile's exclusive lock, serves the
 * control socket, writes the state file, starts `numberWorkers` workers and resolves once all are
 * ready. Rejects with a {@link SupervisorError} (`already_running`, `worker_failed`,
 * `unsupported_platform`, …) after cleaning up if the start fails.
 *
 * @example
 * ```ts
 * const supervisor = await runSupervisor({ profile: getProfile('demo'), numberWorkers: 2 });
 * process.exitCode = await supervisor.done; // until SIGTERM/SIGINT or a `stop` request
 * ```
 */
export async function runSupervisor(options: RunSupervisorOptions): Promise<Supervisor> {
  assertLinux();
  if (!Number.isInteger(options.numberWorkers) || options.numberWorkers < 0) {
    throw new SupervisorError(
      ErrorCodes.invalidRequest,
      `numberWorkers must be a non-negative integer, got ${options.numberWorkers}`,
    );
  }
  assertWithinMaxWorkers(options.profile, options.numberWorkers, 0);
  const daemon = new SupervisorRuntime(options);
  await daemon.start();
  return daemon;
}

class SupervisorRuntime implements Supervisor {
  readonly pid = process.pid;
  socketPath = '';
  readonly done: Promise<number>;
  private resolveDone!: (code: number) => void;
  private readonly profile: Profile;
  private readonly settings: SupervisorSettings;
  private readonly daemonDir: string;
  private readonly logDir: string;
  private readonly log: RotatingLog;
  private readonly logger: Logger;
  private readonly startedAt = new Date();
  private lock: DaemonLock | undefined;
  private server: ControlServer | undefined;
  private metrics: MetricsServer | undefined;
  private pool: WorkerPool | undefined;
  private statePath: string;
  private fallbackSocketDir: string | undefined;
  private starting = true;
  private failStart: ((error: Error) => void) | undefined;
  private shutdownPromise: Promise<StopResult> | undefined;
  private exitCode = 0;
  private opChain: Promise<unknown> = Promise.resolve();
  private signalHandlers: Array<[NodeJS.Signals, () => void]> = [];

  constructor(private readonly options: RunSupervisorOptions) {
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    this.profile = options.profile;
    this.settings = resolveSupervisorSettings(this.profile);
    this.daemonDir = getDaemonDir(this.profile);
    this.logDir = getDaemonLogDir(this.profile);
    this.statePath = daemonStatePath(this.profile);
    ensurePrivateDir(this.daemonDir);
    ensurePrivateDir(this.logDir);
    this.log = new RotatingLog(join(this.logDir, 'supervisor.log'), {
      maxBytes: this.settings.logMaxBytes,
      backups: this.settings.logBackups,
    });
    this.logger = createLogger(
      this.log,
      this.settings.logLevel,
      options.echoLog,
      this.settings.logFormat,
    );
  }

  async start(): Promise<void> {
    const { profile } = this;
    this.logger.info(
      `supervisor starting (pid ${this.pid}, profile '${profile.name}', ${this.options.numberWorkers} workers, node ${process.version})`,
    );
    try {
      const identity = currentIdentity();
      this.lock = acquireDaemonLock(daemonLockPath(profile), identity, {
        profileName: profile.name,
        hostname: getHostname(),
      });
      refuseEarlierLayoutDaemon(join(getProfileDaemonDir(profile), LOCK_FILE_NAME), {
        profileName: profile.name,
        hostname: getHostname(),
      });
      const location = chooseSocketPath(this.daemonDir);
      if (location.fallbackDir) {
        preparePrivateSocketDir(location.fallbackDir);
        this.fallbackSocketDir = location.fallbackDir;
        this.logger.info(`socket path too long in ${this.daemonDir}; using ${location.path}`);
      }
      this.socketPath = location.path;
      // We hold the lock: a socket file left here belongs to a dead daemon.
      removeQuietly(this.socketPath);
      this.server = new ControlServer({
        path: this.socketPath,
        handler: (request) => this.handle(request),
        log: (message) => this.logger.warn(message),
      });
      await this.server.listen();
      if (this.settings.metricsPort > 0) {
        const registry = createSupervisorMetrics({
          statuses: async () => {
            await this.pool?.refreshUsage();
            return this.pool?.statuses() ?? [];
          },
          counters: () =>
            this.pool?.counters() ?? {
              claims: 0,
              leaseLosses: 0,
              redispatches: 0,
              finished: 0,
              excepted: 0,
              killed: 0,
            },
        });
        this.metrics = await startMetricsServer(this.settings.metricsPort, registry, (message) =>
          this.logger.warn(message),
        );
        this.logger.info(`metrics at http://127.0.0.1:${this.metrics.port}/metrics`);
      }
      const state: DaemonStateFile = {
        v: STATE_FILE_VERSION,
        pid: this.pid,
        hostname: getHostname(),
        bootId: identity.bootId,
        startTime: identity.startTime,
        socketPath: this.socketPath,
        protocolVersion: PROTOCOL_VERSION,
        profile: profile.name,
        startedAt: this.startedAt.toISOString(),
      };
      writeFileAtomic(this.statePath, `${JSON.stringify(state, null, 2)}\n`);
      if (this.options.handleSignals ?? true) this.installSignalHandlers();

      const program = resolveWorkerProgram(this.options.workerProgram);
      this.logger.info(`worker program: ${program}`);
      this.pool = new WorkerPool({
        spawn: {
          program,
          args: ['--profile', profile.name],
          env: { ...process.env, AIIDA_PATH: profile.aiidaPath },
        },
        logDir: this.logDir,
        logRotation: { maxBytes: this.settings.logMaxBytes, backups: this.settings.logBackups },
        logFormat: this.settings.logFormat,
        logLevel: this.settings.logLevel,
        maxMemory: this.settings.maxMemory,
        gracefulTimeout: this.settings.gracefulTimeout,
        unresponsiveTimeout: this.settings.leaseTimeout,
        warmSpare: this.settings.warmSpare,
        logger: this.logger,
        onUnexpectedExit: (_slot, worker) => {
          if (!this.starting) return true;
          this.failStart?.(new SupervisorError(ErrorCodes.workerFailed, worker.describeFailure()));
          return false;
        },
        onOverMemory: (slot) => {
          void this.enqueue(() => this.requirePool().replace(slot, this.settings.gracefulTimeout))
            .catch((error) =>
              this.logger.error(
                `memory replacement of worker ${slot.index} failed: ${errorMessage(error)}`,
              ),
            )
            .finally(() => {
              slot.replacing = false;
            });
        },
      });
      const failed = new Promise<never>((_, reject) => {
        this.failStart = reject;
      });
      await Promise.race([this.pool.add(this.options.numberWorkers), failed]);
      this.starting = false;
      this.failStart = undefined;
    } catch (error) {
      this.starting = false;
      this.failStart = undefined;
      const failure = isSupervisorError(error)
        ? error
        : new SupervisorError(ErrorCodes.daemonError, errorMessage(error), { cause: error });
      this.logger.error(`start failed: ${failure.message}`);
      // The lock may be another daemon's: only clean up what this start made.
      if (failure.code !== ErrorCodes.alreadyRunning || this.lock) {
        if (this.exitCode === 0) this.exitCode = 1;
        await this.shutdown(Math.min(this.settings.gracefulTimeout, 2), 'start failed');
        await this.done;
      } else {
        await this.log.close();
      }
      throw failure;
    }
    this.logger.info(
      `supervisor ready: ${this.options.numberWorkers} workers, socket ${this.socketPath}`,
    );
    this.options.onStarted?.({ pid: this.pid, socketPath: this.socketPath });
  }

  async stop(opts: { gracefulTimeout?: number } = {}): Promise<void> {
    await this.shutdown(opts.gracefulTimeout ?? this.settings.gracefulTimeout, 'stop()');
  }

  // -- control requests ---------------------------------------------------------------------

  private async handle(request: ControlRequest): Promise<unknown> {
    switch (request.type) {
      case 'ping':
        return { pid: this.pid, protocolVersion: PROTOCOL_VERSION } satisfies PingResult;
      case 'status':
        return this.status();
      case 'workers': {
        await this.pool?.refreshUsage();
        return { workers: this.pool?.statuses() ?? [] } satisfies WorkersResult;
      }
      case 'incr':
        return this.enqueue(async () => {
          const pool = this.requirePool();
          assertWithinMaxWorkers(this.profile, request.n, pool.size);
          await pool.add(request.n);
          return this.scaleResult();
        });
      case 'decr':
        return this.enqueue(async () => {
          await this.requirePool().remove(request.n, this.settings.gracefulTimeout);
          return this.scaleResult();
        });
      case 'restart':
        return this.enqueue(async () => {
          this.logger.info('rolling restart requested');
          await this.requirePool().rollingRestart(this.settings.gracefulTimeout);
          return this.scaleResult();
        });
      case 'stop':
        return this.shutdown(
          request.gracefulTimeout ?? this.settings.gracefulTimeout,
          'stop request',
        );
    }
  }

  private async status(): Promise<DaemonStatus> {
    await this.pool?.refreshUsage();
    return {
      pid: this.pid,
      hostname: getHostname(),
      profile: this.profile.name,
      startedAt: this.startedAt.toISOString(),
      protocolVersion: PROTOCOL_VERSION,
      numberWorkers: this.pool?.size ?? 0,
      workers: this.pool?.statuses() ?? [],
      logDir: this.logDir,
      spare: this.pool?.spareStatus() ?? null,
      gracefulTimeout: this.settings.gracefulTimeout,
    };
  }

  private scaleResult(): ScaleResult {
    return { numberWorkers: this.requirePool().size, workers: this.requirePool().statuses() };
  }

  private requirePool(): WorkerPool {
    if (this.shutdownPromise || !this.pool) {
      throw new SupervisorError(ErrorCodes.shuttingDown, 'the daemon is shutting down');
    }
    return this.pool;
  }

  /** Runs scaling operations one after another (incr, decr, restart, memory replacement). */
  private enqueue<T>(operation: () => Promise<T>): Promise<T> {
    if (this.shutdownPromise) {
      return Promise.reject(
        new SupervisorError(ErrorCodes.shuttingDown, 'the daemon is shutting down'),
      );
    }
    const run = this.opChain.then(operation, operation);
    this.opChain = run.catch(() => {});
    return run;
  }

  // -- shutdown -----------------------------------------------------------------------------

  private shutdown(gracefulTimeout: number, reason: string): Promise<StopResult> {
    this.shutdownPromise ??= this.runShutdown(gracefulTimeout, reason);
    return this.shutdownPromise;
  }

  private async runShutdown(gracefulTimeout: number, reason: string): Promise<StopResult> {
    this.logger.info(`stopping (${reason}), graceful timeout ${gracefulTimeout} s`);
    this.failStart?.(
      new SupervisorError(
        ErrorCodes.shuttingDown,
        `the daemon was stopped during its start (${reason})`,
      ),
    );
    const killedWorkers = (await this.pool?.stopAll(gracefulTimeout)) ?? 0;
    this.removeFiles();
    this.logger.info(`workers stopped (${killedWorkers} killed); files removed`);
    // Answer the stop request(s) first (microtasks), then close connections and finish.
    setImmediate(() => void this.finish());
    return { killedWorkers };
  }

  /** Removes state file, socket and lock, where they are still ours. */
  private removeFiles(): void {
    let text: string | undefined;
    try {
      text = readFileSync(this.statePath, 'utf8');
    } catch {}
    if (text !== undefined && parseDaemonState(text)?.pid === this.pid)
      removeQuietly(this.statePath);
    if (this.server && this.socketPath) removeQuietly(this.socketPath);
    if (this.fallbackSocketDir) {
      try {
        rmdirSync(this.fallbackSocketDir);
      } catch {}
    }
    this.lock?.release();
  }

  private async finish(): Promise<void> {
    await this.server?.close();
    await this.metrics?.close();
    this.removeSignalHandlers();
    this.logger.info(`supervisor exits (code ${this.exitCode})`);
    await this.log.close();
    this.resolveDone(this.exitCode);
  }

  private installSignalHandlers(): void {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const handler = () => this.onSignal(signal);
      process.on(signal, handler);
      this.signalHandlers.push([signal, handler]);
    }
  }

  private removeSignalHandlers(): void {
    for (const [signal, handler] of this.signalHandlers) process.off(signal, handler);
    this.signalHandlers = [];
  }

  private signalCount = 0;

  private onSignal(signal: NodeJS.Signals): void {
    this.signalCount++;
    this.exitCode = 128 + (SIGNAL_NUMBERS[signal] ?? 0);
    if (this.signalCount === 1) {
      this.logger.info(`${signal} received: stopping gracefully (send it again to force)`);
      void this.shutdown(this.settings.gracefulTimeout, signal);
      return;
    }
    this.logger.warn(`${signal} received again: killing the workers now`);
    this.pool?.killAll();
    this.removeFiles();
    this.removeSignalHandlers();
    void this.log.close().finally(() => this.resolveDone(this.exitCode));
  }
}
