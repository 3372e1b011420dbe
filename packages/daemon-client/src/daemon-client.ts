import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { getDaemonDir, getDaemonLogDir, getProfile, type Profile } from '@aiida/config';
import { runSupervisor } from '@aiida/daemon-supervisor';
import {
  type ControlRequestType,
  type ControlResult,
  type DaemonStatus,
  describeVersionMismatch,
  ErrorCodes,
  PROTOCOL_VERSION,
  type SerializedError,
  type WorkerStatus,
} from '@aiida/ipc';
import {
  type ClusterStatus,
  type ClusterStatusOptions,
  readClusterStatus,
} from './cluster-status.js';
import {
  type ControlConnector,
  type ControlRequestBody,
  ControlRequestError,
  sendControlRequest,
} from './control-client.js';
import {
  type DaemonStateAccess,
  type DaemonStateReading,
  daemonStateAccess,
  removeStaleStateFile,
} from './daemon-state.js';
import {
  DaemonBusyException,
  DaemonException,
  DaemonNotRunningException,
  DaemonStalePidException,
  DaemonTimeoutException,
  daemonExceptionFromSerialized,
} from './errors.js';
import {
  isSameProcessAlive,
  type ProcessEntry,
  pollUntil,
  processesOfSupervisor,
  signalProcesses,
} from './process-tree.js';
import {
  type DaemonClientSettings,
  resolveDaemonClientSettings,
  workerStartupDeadline,
} from './settings.js';
import {
  resolveSupervisorProgram,
  type SpawnedSupervisor,
  spawnSupervisor,
  tailOfFile,
} from './supervisor-process.js';

/** Options of {@link DaemonClient.startDaemon}. */
export interface StartDaemonOptions {
  /**
   * Number of workers to start.
   * @default the profile's `daemon.default_workers`
   */
  numberWorkers?: number;
  /**
   * Run the supervisor in this process instead of detached, until SIGTERM or SIGINT (for systemd
   * and containers). The promise then resolves when the supervisor stopped.
   * @default false
   */
  foreground?: boolean;
  /**
   * Wait until every worker reported ready. With `false`, resolve once the supervisor is spawned.
   * @default true
   */
  wait?: boolean;
  /**
   * Seconds to wait for the daemon. The start waits `max(timeout, broker.task_timeout + 5)`, since
   * each worker connects to the broker first (see README, "Deadlines").
   * @default the profile's `daemon.timeout`
   */
  timeout?: number;
}

/** Options of {@link DaemonClient.stopDaemon}. */
export interface StopDaemonOptions {
  /**
   * Wait until the daemon answered and exited. With `false`, resolve once the request is sent.
   * @default true
   */
  wait?: boolean;
  /**
   * Seconds to wait for the daemon's answer, on top of `daemon.graceful_timeout` for its workers'
   * drain, and then again for its exit.
   * @default the profile's `daemon.timeout`
   */
  timeout?: number;
}

/** Options of {@link DaemonClient.restartDaemon}. */
export interface RestartDaemonOptions {
  /**
   * Stop the whole daemon and start it again with `daemon.default_workers` workers, instead of a
   * rolling restart of its workers.
   * @default false
   */
  reset?: boolean;
  /** Wait until the restart is done. @default true */
  wait?: boolean;
  /** Seconds to wait for the daemon (per worker replaced, see README). @default `daemon.timeout` */
  timeout?: number;
}

/** Options of the methods that only ask the daemon something. */
export interface CallOptions {
  /** Seconds to wait for the answer. @default the profile's `daemon.timeout` */
  timeout?: number;
}

/** What {@link DaemonClient.startDaemon} did. */
export interface DaemonStartResult {
  /** Pid of the supervisor (this process's pid in the foreground). */
  pid: number;
  numberWorkers: number;
  /** The control socket; `null` with `wait: false` (not known yet). */
  socketPath: string | null;
  /** True once every worker reported ready; false with `wait: false`. */
  ready: boolean;
  foreground: boolean;
  /** Foreground only: the supervisor's exit code once it stopped. */
  exitCode?: number;
}

/** What {@link DaemonClient.stopDaemon} did. */
export interface DaemonStopResult {
  /** False when there was no live daemon (no state file, or a stale one). */
  wasRunning: boolean;
  /** True when a stale state file was found and removed. */
  staleStateRemoved: boolean;
  /** Pid of the supervisor that was asked to stop (or that the stale file named). */
  pid: number | null;
  /** True once the supervisor answered and exited; false with `wait: false` or no daemon. */
  stopped: boolean;
  /** Workers the supervisor had to kill because they outlived `daemon.graceful_timeout`. */
  killedWorkers: number;
}

/** What {@link DaemonClient.restartDaemon} did. */
export interface DaemonRestartResult {
  reset: boolean;
  /** Pid of the supervisor after the restart (a new one after a reset). */
  pid: number;
  numberWorkers: number;
  /** The workers once done; empty with `wait: false`. */
  workers: WorkerStatus[];
}

/** The daemon's own facts, without its workers. */
export interface DaemonInfo extends Omit<DaemonStatus, 'workers'> {
  socketPath: string;
  stateFile: string;
}

/** Advanced options of {@link DaemonClient}; most users need none. */
export interface DaemonClientOptions {
  /**
   * Path of the supervisor's JavaScript entry.
   * @default the `bin` of `@aiida/daemon-supervisor`
   */
  supervisorProgram?: string;
  /** Extra environment variables for the supervisor (and so its workers). */
  env?: NodeJS.ProcessEnv;
  /** @internal Opens control socket connections (tests). */
  connect?: ControlConnector;
  /** @internal Reads the state file (tests). */
  stateAccess?: DaemonStateAccess;
}

/** How long a live daemon's socket may refuse connections before that is an error (start-up). */
const SOCKET_GRACE = 1;
/** Seconds the supervisor gets to exit on its own after a failed start before it is killed. */
const FAILED_START_EXIT_MARGIN = 2;

/**
 * Controls the daemon of one profile (AiiDA's `DaemonClient`): start, stop, restart, scale and
 * inspect it. It talks to the supervisor only, over the control socket named in the profile's state
 * file. Every method takes `timeout` in seconds; its default is the profile's `daemon.timeout`,
 * read once, here.
 *
 * @example
 * ```ts
 * const client = getDaemonClient();
 * await client.startDaemon();
 * console.log(client.isDaemonRunning); // true
 * await client.stopDaemon({ wait: true });
 * ```
 */
export class DaemonClient {
  /** The profile whose daemon this client controls. */
  readonly profile: Profile;
  /** The options read from the profile at construction. */
  readonly settings: Readonly<DaemonClientSettings>;
  private readonly options: DaemonClientOptions;
  private readonly state: DaemonStateAccess;

  constructor(profile: Profile, options: DaemonClientOptions = {}) {
    this.profile = profile;
    this.settings = Object.freeze(resolveDaemonClientSettings(profile));
    this.options = options;
    this.state = options.stateAccess ?? daemonStateAccess;
  }

  /** Default `timeout` of every method, in seconds: the profile's `daemon.timeout`. */
  get timeout(): number {
    return this.settings.timeout;
  }

  // -------------------------------------------------------------------------------------------
  // Paths
  // -------------------------------------------------------------------------------------------

  /** The profile's daemon folder: state file, control socket, logs. */
  get daemonDir(): string {
    return getDaemonDir(this.profile);
  }

  /** The supervisor's state file (`daemon.json`). */
  get stateFilePath(): string {
    return this.state.path(this.profile);
  }

  /** The folder of the daemon's logs. */
  get logDir(): string {
    return getDaemonLogDir(this.profile);
  }

  /** The supervisor's log file. */
  get supervisorLogFile(): string {
    return join(this.logDir, 'supervisor.log');
  }

  /** The log file of the worker in slot `index` (0-based). */
  workerLogFile(index: number): string {
    return join(this.logDir, `worker-${index}.log`);
  }

  /** The worker log files that exist now, by slot index. */
  get workerLogFiles(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.logDir);
    } catch {
      return [];
    }
    return names
      .map((name) => /^worker-(\d+)\.log$/.exec(name))
      .filter((match): match is RegExpExecArray => match !== null)
      .sort((a, b) => Number(a[1]) - Number(b[1]))
      .map((match) => join(this.logDir, match[0]));
  }

  // -------------------------------------------------------------------------------------------
  // Local checks (the state file; nothing is changed on disk)
  // -------------------------------------------------------------------------------------------

  /**
   * True only while the supervisor named in the state file runs and is ours: same pid, process
   * start time and boot id. Reads the state file and `/proc`; changes nothing.
   */
  get isDaemonRunning(): boolean {
    try {
      return this.state.read(this.profile)?.live === true;
    } catch {
      return false;
    }
  }

  /**
   * Pid of the running supervisor, or `null` when there is no state file. Throws
   * {@link DaemonStalePidException} when the state file's process is gone or not ours.
   */
  getDaemonPid(): number | null {
    this.assertLinux();
    const reading = this.state.read(this.profile);
    if (reading === undefined) return null;
    if (!reading.live) throw this.staleException(reading);
    return reading.state.pid;
  }

  // -------------------------------------------------------------------------------------------
  // Start
  // -------------------------------------------------------------------------------------------

  /**
   * Starts the daemon with `numberWorkers` workers (default `daemon.default_workers`) and resolves
   * when every worker reported ready (connected to the broker). A stale state file is removed
   * first. Throws {@link DaemonException} when the daemon already runs, or when it fails to start
   * (with the reason, e.g. a worker's broker connection error); nothing it started is left
   * running then. Throws {@link DaemonTimeoutException} when the workers are not ready within
   * `max(timeout, broker.task_timeout + 5)` seconds, after killing what it started. Throws
   * {@link DaemonException} `too_many_workers`, starting nothing, for more than
   * `daemon.max_workers` workers.
   */
  async startDaemon(options: StartDaemonOptions = {}): Promise<DaemonStartResult> {
    const numberWorkers = options.numberWorkers ?? this.settings.defaultWorkers;
    if (!Number.isInteger(numberWorkers) || numberWorkers < 1) {
      throw new DaemonException(
        `numberWorkers must be a whole number of at least 1, got ${numberWorkers}`,
        { code: ErrorCodes.invalidRequest },
      );
    }
    this.checkMaxWorkers(numberWorkers, 'start the daemon with');
    const timeout = this.checkTimeout(options.timeout);
    this.assertLinux();
    this.clearStaleStateBeforeStart();
    if (options.foreground) return this.runInForeground(numberWorkers);

    let program: string;
    try {
      program = this.options.supervisorProgram ?? resolveSupervisorProgram();
    } catch (error) {
      throw new DaemonException(
        `Cannot find the daemon supervisor program: ${(error as Error).message}`,
        { cause: error },
      );
    }
    let spawned: SpawnedSupervisor;
    try {
      spawned = spawnSupervisor({
        program,
        profileName: this.profile.name,
        aiidaPath: this.profile.aiidaPath,
        numberWorkers,
        logFile: this.supervisorLogFile,
        env: this.options.env,
      });
    } catch (error) {
      throw new DaemonException(
        `The daemon for profile '${this.profile.name}' could not be started: ${(error as Error).message}`,
        { cause: error },
      );
    }
    if (options.wait === false) {
      spawned.release();
      return {
        pid: spawned.pid,
        numberWorkers,
        socketPath: null,
        ready: false,
        foreground: false,
      };
    }

    const deadline = workerStartupDeadline(timeout, this.settings);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), deadline * 1000);
    });
    const report = await Promise.race([spawned.report, timedOut]);
    clearTimeout(timer);

    if (report === 'timeout') {
      await this.terminateSpawned(spawned, { sendTerm: true });
      spawned.release();
      throw new DaemonTimeoutException(
        `The daemon for profile '${this.profile.name}' did not report its ${numberWorkers} ` +
          `worker(s) ready within ${deadline} s (a start waits for the larger of the timeout and ` +
          `broker.task_timeout + 5 s); what it started was stopped. If the machine is just slow, ` +
          `raise the option daemon.timeout (now ${this.settings.timeout} s) or pass a larger ` +
          `timeout. Last lines of ${this.supervisorLogFile}:\n${tailOfFile(this.supervisorLogFile)}`,
        { details: { pid: spawned.pid, timeout: deadline } },
      );
    }
    spawned.release();
    if (report.ok) {
      return {
        pid: report.pid,
        numberWorkers,
        socketPath: report.socketPath,
        ready: true,
        foreground: false,
      };
    }

    // The start failed: the supervisor stops its workers and exits by itself; make sure of it.
    await this.terminateSpawned(spawned, { sendTerm: false });
    if (report.error === undefined) {
      throw new DaemonException(
        `The daemon for profile '${this.profile.name}' failed to start: ${report.problem}. ` +
          `Last lines of ${this.supervisorLogFile}:\n${tailOfFile(this.supervisorLogFile)}`,
        { code: ErrorCodes.daemonError, details: { pid: spawned.pid } },
      );
    }
    throw this.startFailure(report.error, spawned.pid);
  }

  private startFailure(error: SerializedError, supervisorPid: number): DaemonException {
    const name = this.profile.name;
    if (error.code === ErrorCodes.alreadyRunning) {
      let running: number | undefined;
      try {
        const reading = this.state.read(this.profile);
        if (reading?.live) running = reading.state.pid;
      } catch {}
      const holder =
        running ??
        (typeof error.details?.pid === 'number' ? (error.details.pid as number) : undefined);
      return new DaemonException(
        holder === undefined
          ? `The daemon for profile '${name}' is already running: ${error.message}`
          : `The daemon for profile '${name}' is already running (pid ${holder})`,
        { code: ErrorCodes.alreadyRunning, details: { ...error.details, pid: holder } },
      );
    }
    return daemonExceptionFromSerialized(error, {
      prefix: `The daemon for profile '${name}' failed to start: `,
      details: { supervisorPid },
    });
  }

  private async runInForeground(numberWorkers: number): Promise<DaemonStartResult> {
    let supervisor: Awaited<ReturnType<typeof runSupervisor>>;
    let socketPath: string | null = null;
    try {
      supervisor = await runSupervisor({
        profile: this.profile,
        numberWorkers,
        handleSignals: true,
        onStarted: (started: unknown) => {
          const path = (started as { socketPath?: unknown } | undefined)?.socketPath;
          if (typeof path === 'string') socketPath = path;
        },
      });
    } catch (error) {
      throw this.fromSupervisorError(error, 'failed to start in the foreground');
    }
    let exitCode: number;
    try {
      exitCode = await supervisor.done;
    } catch (error) {
      throw this.fromSupervisorError(error, 'stopped with an error');
    }
    return { pid: process.pid, numberWorkers, socketPath, ready: true, foreground: true, exitCode };
  }

  private fromSupervisorError(error: unknown, what: string): DaemonException {
    const code = (error as { code?: unknown })?.code;
    const message = (error as Error)?.message ?? String(error);
    if (typeof code === 'string') {
      const exception = daemonExceptionFromSerialized(
        { code, message, details: (error as { details?: Record<string, unknown> }).details },
        { prefix: `The daemon for profile '${this.profile.name}' ${what}: ` },
      );
      Object.defineProperty(exception, 'cause', { value: error, configurable: true });
      return exception;
    }
    return new DaemonException(
      `The daemon for profile '${this.profile.name}' ${what}: ${message}`,
      {
        cause: error,
      },
    );
  }

  /** Before a start: a live daemon is an error; a stale state file is removed. */
  private clearStaleStateBeforeStart(): void {
    const reading = this.state.read(this.profile);
    if (reading === undefined) return;
    if (reading.foreign) {
      throw new DaemonException(
        `Cannot start the daemon for profile '${this.profile.name}': ${reading.reason}. ` +
          `If that host's daemon is gone, remove ${this.stateFilePath} (or set AIIDA_HOSTNAME ` +
          'to the name this host should use).',
        { code: ErrorCodes.alreadyRunning, details: { pid: reading.state.pid } },
      );
    }
    if (reading.live) {
      throw new DaemonException(
        `The daemon for profile '${this.profile.name}' is already running (pid ${reading.state.pid})`,
        { code: ErrorCodes.alreadyRunning, details: { pid: reading.state.pid } },
      );
    }
    removeStaleStateFile(this.stateFilePath, reading);
  }

  /**
   * Makes sure nothing a spawned supervisor started is left: it gets `daemon.graceful_timeout` +
   * 2 s to exit (after SIGTERM when `sendTerm`), then it and every process of its group or
   * descent still there get SIGKILL, by pid.
   */
  private async terminateSpawned(
    spawned: SpawnedSupervisor,
    { sendTerm }: { sendTerm: boolean },
  ): Promise<void> {
    const pid = spawned.pid;
    if (pid <= 0) return;
    const known = new Map<number, ProcessEntry>();
    const collect = () => {
      for (const entry of processesOfSupervisor(pid)) {
        // Once the supervisor is gone its pid may be reused; only its group is still its own.
        if (!spawned.running && entry.pgrp !== pid) continue;
        known.set(entry.pid, entry);
      }
    };
    collect();
    if (sendTerm && spawned.running) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
    }
    const allGone = () => {
      collect();
      return (
        !spawned.running &&
        processesOfSupervisor(pid).every((e) => e.pgrp !== pid) &&
        [...known.values()].every((e) => !isSameProcessAlive(e))
      );
    };
    if (await pollUntil(allGone, this.settings.gracefulTimeout + FAILED_START_EXIT_MARGIN)) {
      this.removeOwnStateFile(pid);
      return;
    }
    collect();
    signalProcesses([...known.values()], 'SIGKILL');
    await pollUntil(allGone, 5);
    this.removeOwnStateFile(pid);
  }

  /** Removes the state file if it names `pid` and that process is gone. */
  private removeOwnStateFile(pid: number): void {
    try {
      const reading = this.state.read(this.profile);
      if (reading && !reading.live && reading.state?.pid === pid) {
        removeStaleStateFile(this.stateFilePath, reading);
      }
    } catch {}
  }

  // -------------------------------------------------------------------------------------------
  // Stop and restart
  // -------------------------------------------------------------------------------------------

  /**
   * Stops the daemon: the supervisor drains its workers (up to `daemon.graceful_timeout`, then
   * kills what is left), answers, and exits. With `wait` (the default) it resolves when the
   * supervisor has exited: the answer is awaited `timeout + daemon.graceful_timeout` seconds, the
   * exit `timeout` more, so a drain within its grace is never a timeout.
   *
   * Stopping a daemon that does not run is not an error (as in AiiDA): with no state file the
   * result says `wasRunning: false`; a stale state file is removed (`staleStateRemoved: true`).
   */
  async stopDaemon(options: StopDaemonOptions = {}): Promise<DaemonStopResult> {
    const timeout = this.checkTimeout(options.timeout);
    this.assertLinux();
    const reading = this.state.read(this.profile);
    if (reading === undefined) {
      return {
        wasRunning: false,
        staleStateRemoved: false,
        pid: null,
        stopped: false,
        killedWorkers: 0,
      };
    }
    if (!reading.live) {
      const removed = removeStaleStateFile(this.stateFilePath, reading);
      return {
        wasRunning: false,
        staleStateRemoved: removed,
        pid: reading.state?.pid ?? null,
        stopped: false,
        killedWorkers: 0,
      };
    }
    const state = reading.state;
    this.assertProtocolVersion(state.protocolVersion);
    if (options.wait === false) {
      await this.callNoWait({ type: 'stop' }, timeout + this.settings.gracefulTimeout, reading);
      return {
        wasRunning: true,
        staleStateRemoved: false,
        pid: state.pid,
        stopped: false,
        killedWorkers: 0,
      };
    }

    let killedWorkers = 0;
    try {
      const result = await this.call(
        { type: 'stop' },
        {
          timeout,
          deadline: timeout + this.settings.gracefulTimeout,
          reading,
        },
      );
      killedWorkers = result.killedWorkers;
    } catch (error) {
      if (error instanceof DaemonTimeoutException) throw error;
      // A supervisor that exits right after draining may close the connection before its answer
      // arrives, and one that is already stopping for another client refuses with
      // `shutting_down`: either way, gone is what was asked for.
      const grace =
        (error as DaemonException).code === ErrorCodes.shuttingDown
          ? timeout + this.settings.gracefulTimeout
          : timeout;
      if (!(await pollUntil(() => !this.state.isProcessAlive(state), grace))) throw error;
      return {
        wasRunning: true,
        staleStateRemoved: false,
        pid: state.pid,
        stopped: true,
        killedWorkers,
      };
    }
    const exited = await pollUntil(() => !this.state.isProcessAlive(state), timeout);
    if (!exited) {
      throw new DaemonTimeoutException(
        `The daemon for profile '${this.profile.name}' (pid ${state.pid}) answered the stop ` +
          `request but had not exited ${timeout} s later. Look at ${this.supervisorLogFile}; ` +
          `if it is just slow, raise the option daemon.timeout (now ${this.settings.timeout} s).`,
        { details: { pid: state.pid, timeout } },
      );
    }
    return {
      wasRunning: true,
      staleStateRemoved: false,
      pid: state.pid,
      stopped: true,
      killedWorkers,
    };
  }

  /**
   * Restarts the daemon's workers one at a time, keeping their number and the supervisor (a
   * rolling restart: never fewer than N − 1 ready workers). With `reset: true` it stops the whole
   * daemon (waiting for it) and starts it again with `daemon.default_workers` workers.
   *
   * A rolling restart waits `timeout + N × (broker.task_timeout + daemon.graceful_timeout)`
   * seconds for the answer: each of the N workers is replaced by one that must connect, while the
   * old one drains.
   */
  async restartDaemon(options: RestartDaemonOptions = {}): Promise<DaemonRestartResult> {
    const timeout = this.checkTimeout(options.timeout);
    if (options.reset) {
      await this.stopDaemon({ wait: true, timeout });
      const started = await this.startDaemon({
        numberWorkers: this.settings.defaultWorkers,
        wait: options.wait,
        timeout,
      });
      const workers =
        started.ready && options.wait !== false ? await this.getWorkerInfo({ timeout }) : [];
      return { reset: true, pid: started.pid, numberWorkers: started.numberWorkers, workers };
    }
    const reading = this.requireLiveState();
    const before = await this.call({ type: 'status' }, { timeout, reading });
    const perWorker = this.settings.brokerTaskTimeout + this.settings.gracefulTimeout;
    const deadline = timeout + Math.max(1, before.numberWorkers) * perWorker;
    if (options.wait === false) {
      await this.callNoWait({ type: 'restart' }, deadline, reading);
      return { reset: false, pid: before.pid, numberWorkers: before.numberWorkers, workers: [] };
    }
    const result = await this.call({ type: 'restart' }, { timeout, deadline, reading });
    return {
      reset: false,
      pid: reading.state.pid,
      numberWorkers: result.numberWorkers,
      workers: result.workers,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Scale and inspect
  // -------------------------------------------------------------------------------------------

  /**
   * Adds `n` workers; resolves when they reported ready, with the workers then. Waits
   * `max(timeout, broker.task_timeout + 5)` seconds, like a start. Throws {@link DaemonException}
   * `too_many_workers` when the daemon would run more than `daemon.max_workers`.
   */
  async increaseWorkers(n = 1, options: CallOptions = {}): Promise<ControlResult<'incr'>> {
    const timeout = this.checkTimeout(options.timeout);
    this.checkCount(n);
    this.checkMaxWorkers(n, 'add');
    return this.call(
      { type: 'incr', n },
      { timeout, deadline: workerStartupDeadline(timeout, this.settings) },
    );
  }

  /**
   * Stops the `n` youngest workers gracefully; resolves when they are gone, with the workers then.
   * Waits `timeout + daemon.graceful_timeout` seconds (their drain).
   */
  async decreaseWorkers(n = 1, options: CallOptions = {}): Promise<ControlResult<'decr'>> {
    const timeout = this.checkTimeout(options.timeout);
    this.checkCount(n);
    return this.call(
      { type: 'decr', n },
      { timeout, deadline: timeout + this.settings.gracefulTimeout },
    );
  }

  /**
   * The supervisor and all its workers (pid, state, restarts, heartbeat, cpu, memory, slots...).
   * Throws {@link DaemonNotRunningException} without a state file, {@link DaemonStalePidException}
   * with a stale one, {@link DaemonTimeoutException} without an answer within `timeout`.
   */
  async getStatus(options: CallOptions = {}): Promise<DaemonStatus> {
    return this.call({ type: 'status' }, { timeout: this.checkTimeout(options.timeout) });
  }

  /**
   * Every host's workers of this profile, read from the store's worker registry (which each
   * worker writes at its start and every heartbeat), grouped by host; a worker without a
   * heartbeat for `daemon.lease_timeout` is marked `stale`. Needs no daemon on this host: it
   * works while this host's daemon is down. It opens the store for the call, or reads through
   * `options.store` (an open store of the profile, left open). Throws {@link DaemonException}
   * `store_error` when the store can't be read.
   */
  async getClusterStatus(options: ClusterStatusOptions = {}): Promise<ClusterStatus> {
    return readClusterStatus(this.profile, options);
  }

  /** The workers, as {@link getStatus} shows them. */
  async getWorkerInfo(options: CallOptions = {}): Promise<WorkerStatus[]> {
    const result = await this.call(
      { type: 'workers' },
      { timeout: this.checkTimeout(options.timeout) },
    );
    return result.workers;
  }

  /** The supervisor's own facts (pid, start, versions, paths), without its workers. */
  async getDaemonInfo(options: CallOptions = {}): Promise<DaemonInfo> {
    const reading = this.requireLiveState();
    const { workers: _workers, ...status } = await this.call(
      { type: 'status' },
      { timeout: this.checkTimeout(options.timeout), reading },
    );
    return { ...status, socketPath: reading.state.socketPath, stateFile: this.stateFilePath };
  }

  /** The number of workers the daemon is meant to run. */
  async getNumberOfWorkers(options: CallOptions = {}): Promise<number> {
    const status = await this.getStatus(options);
    return status.numberWorkers;
  }

  // -------------------------------------------------------------------------------------------
  // Control socket
  // -------------------------------------------------------------------------------------------

  /** The live state file, or the exception saying why there is no live daemon. */
  private requireLiveState(): DaemonStateReading & { live: true } {
    this.assertLinux();
    const reading = this.state.read(this.profile);
    if (reading === undefined) {
      throw new DaemonNotRunningException(
        `The daemon for profile '${this.profile.name}' is not running (no state file at ` +
          `${this.stateFilePath}).`,
        { details: { stateFile: this.stateFilePath } },
      );
    }
    if (!reading.live) throw this.staleException(reading);
    this.assertProtocolVersion(reading.state.protocolVersion);
    return reading;
  }

  private staleException(reading: DaemonStateReading): DaemonStalePidException {
    const pid = reading.state?.pid;
    if (reading.foreign) {
      return new DaemonStalePidException(
        `The daemon for profile '${this.profile.name}' is not this host's: ${reading.reason}; ` +
          'this host neither uses nor removes that file.',
        { details: { pid, stateFile: this.stateFilePath, reason: reading.reason } },
      );
    }
    return new DaemonStalePidException(
      `The daemon for profile '${this.profile.name}' is not running: its state file ` +
        `${this.stateFilePath} is stale (${reading.reason ?? 'its process is gone'}); starting ` +
        'or stopping the daemon removes it.',
      { details: { pid, stateFile: this.stateFilePath, reason: reading.reason } },
    );
  }

  private assertProtocolVersion(version: number): void {
    if (version === PROTOCOL_VERSION) return;
    throw new DaemonException(
      `Cannot talk to the daemon for profile '${this.profile.name}': ${describeVersionMismatch(
        { role: 'client', version: PROTOCOL_VERSION },
        { role: 'daemon', version },
      )}`,
      {
        code: ErrorCodes.protocolMismatch,
        details: { clientVersion: PROTOCOL_VERSION, daemonVersion: version },
      },
    );
  }

  /**
   * One request to the live daemon: its validated result, or the matching exception. `deadline`
   * (seconds, default `timeout`) bounds the wait; `timeout` is what the message names as the
   * option to raise.
   */
  private async call<T extends ControlRequestType>(
    body: ControlRequestBody<T>,
    opts: { timeout: number; deadline?: number; reading?: DaemonStateReading & { live: true } },
  ): Promise<ControlResult<T>> {
    const reading = opts.reading ?? this.requireLiveState();
    const { pid, socketPath } = reading.state;
    const deadline = opts.deadline ?? opts.timeout;
    const startedAt = performance.now();
    const elapsed = () => (performance.now() - startedAt) / 1000;
    let busyRefusals = 0;
    for (;;) {
      try {
        const reply = await sendControlRequest<T>(socketPath, body, {
          timeout: Math.max(0, deadline - elapsed()),
          connect: this.options.connect,
        });
        if (reply.ok) return reply.result;
        throw daemonExceptionFromSerialized(reply.error, {
          prefix: `The daemon for profile '${this.profile.name}' (pid ${pid}) refused the '${body.type}' request: `,
          details: { pid, request: body.type },
        });
      } catch (error) {
        if (!(error instanceof ControlRequestError)) throw error;
        switch (error.kind) {
          case 'busy':
          case 'unread': {
            // Refused before the request was read: sending it again is safe.
            busyRefusals++;
            const pause = busyBackoff(busyRefusals);
            if (elapsed() + pause / 1000 < deadline) {
              await new Promise((resolve) => setTimeout(resolve, pause));
              continue;
            }
            if (error.kind === 'busy') {
              throw this.busyException(body.type, pid, deadline, busyRefusals, error);
            }
            throw new DaemonTimeoutException(
              `The daemon for profile '${this.profile.name}' (pid ${pid}) closed the connection ` +
                `before the '${body.type}' request arrived whole (${error.message}); this process ` +
                `was too slow to send it for ${formatSeconds(deadline)} s. Is the machine overloaded?`,
              { cause: error, details: { pid, request: body.type, timeout: deadline } },
            );
          }
          case 'timeout':
            throw new DaemonTimeoutException(
              `The daemon for profile '${this.profile.name}' (pid ${pid}) did not answer the ` +
                `'${body.type}' request within ${formatSeconds(deadline)} s. If it is busy, pass ` +
                `a larger timeout or raise the option daemon.timeout (now ${this.settings.timeout} s).`,
              { cause: error, details: { pid, request: body.type, timeout: deadline } },
            );
          case 'connect': {
            // The socket may not be listening yet (a daemon that is starting) or the daemon died.
            const again = this.state.read(this.profile);
            if (again === undefined) {
              throw new DaemonNotRunningException(
                `The daemon for profile '${this.profile.name}' stopped (its state file is gone).`,
                { cause: error },
              );
            }
            if (!again.live) throw this.staleException(again);
            if (elapsed() < Math.min(deadline, SOCKET_GRACE)) {
              await new Promise((resolve) => setTimeout(resolve, 50));
              continue;
            }
            throw new DaemonException(
              `Cannot reach the control socket ${socketPath} of the daemon for profile ` +
                `'${this.profile.name}' (pid ${pid}): ${error.errno ?? error.message}. The daemon ` +
                `runs but does not listen; see ${this.supervisorLogFile}, or stop it and start it again.`,
              { cause: error, details: { pid, socketPath, errno: error.errno } },
            );
          }
          case 'closed':
          case 'io': {
            const again = this.state.read(this.profile);
            if (again === undefined) {
              throw new DaemonNotRunningException(
                `The daemon for profile '${this.profile.name}' (pid ${pid}) stopped while ` +
                  `answering the '${body.type}' request.`,
                { cause: error, details: { pid, request: body.type } },
              );
            }
            if (!again.live) throw this.staleException(again);
            throw new DaemonException(
              `The daemon for profile '${this.profile.name}' (pid ${pid}) ${error.message}` +
                (this.state.isProcessAlive(reading.state) ? '' : ' (it has exited)'),
              { cause: error, details: { pid, request: body.type } },
            );
          }
          case 'version_mismatch':
            throw new DaemonException(
              `Cannot talk to the daemon for profile '${this.profile.name}': ${describeVersionMismatch(
                { role: 'client', version: PROTOCOL_VERSION },
                { role: 'daemon', version: error.remoteVersion },
              )}`,
              {
                code: ErrorCodes.protocolMismatch,
                cause: error,
                details: { clientVersion: PROTOCOL_VERSION, daemonVersion: error.remoteVersion },
              },
            );
          default:
            throw new DaemonException(
              `The daemon for profile '${this.profile.name}' (pid ${pid}) gave an unusable answer: ${error.message}`,
              { cause: error, details: { pid, request: body.type } },
            );
        }
      }
    }
  }

  private busyException(
    type: string,
    pid: number,
    waited: number,
    refusals: number,
    cause: unknown,
  ): DaemonBusyException {
    return new DaemonBusyException(
      `The daemon for profile '${this.profile.name}' (pid ${pid}) runs, but its control socket ` +
        `stayed busy (every connection slot taken) for ${formatSeconds(waited)} s; the ` +
        `'${type}' request was refused ${refusals} time(s) and not carried out. Try again later; ` +
        `if it lasts, other programs are holding or flooding the socket (the daemon counts the ` +
        `connections it refused in ${this.supervisorLogFile}).`,
      { cause, details: { pid, request: type, refusals, timeout: waited } },
    );
  }

  /** Sends a request and resolves once it is written (for `wait: false`). */
  private async callNoWait(
    body: ControlRequestBody,
    linger: number,
    reading: DaemonStateReading & { live: true },
  ): Promise<void> {
    const startedAt = performance.now();
    let busyRefusals = 0;
    try {
      for (;;) {
        try {
          await sendControlRequest(reading.state.socketPath, body, {
            timeout: linger,
            noWait: true,
            connect: this.options.connect,
          });
          return;
        } catch (error) {
          if (!(error instanceof ControlRequestError) || error.kind !== 'busy') throw error;
          busyRefusals++;
          const pause = busyBackoff(busyRefusals);
          const waited = (performance.now() - startedAt) / 1000;
          if (waited + pause / 1000 >= this.settings.timeout) {
            throw this.busyException(body.type, reading.state.pid, waited, busyRefusals, error);
          }
          await new Promise((resolve) => setTimeout(resolve, pause));
        }
      }
    } catch (error) {
      if (!(error instanceof ControlRequestError)) throw error;
      throw new DaemonException(
        `Could not send the '${body.type}' request to the daemon for profile '${this.profile.name}' ` +
          `(pid ${reading.state.pid}): ${error.message}`,
        { cause: error, details: { pid: reading.state.pid } },
      );
    }
  }

  private checkTimeout(timeout: number | undefined): number {
    const value = timeout ?? this.settings.timeout;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new DaemonException(`timeout must be a number of seconds >= 0, got ${String(value)}`, {
        code: ErrorCodes.invalidRequest,
      });
    }
    return value;
  }

  private checkCount(n: number): void {
    if (!Number.isInteger(n) || n < 1 || n > 1000) {
      throw new DaemonException(
        `the number of workers must be a whole number from 1 to 1000, got ${n}`,
        {
          code: ErrorCodes.invalidRequest,
        },
      );
    }
  }

  /**
   * Refuses to ask for more workers than `daemon.max_workers` allows (the daemon refuses a total
   * above it too, counting the workers it already runs).
   */
  private checkMaxWorkers(n: number, verb: string): void {
    const max = this.settings.maxWorkers;
    if (n <= max) return;
    throw new DaemonException(
      `Cannot ${verb} ${n} workers: the option daemon.max_workers of profile ` +
        `'${this.profile.name}' allows at most ${max} workers per daemon. If this machine can ` +
        `really take more, raise it: \`aiida config set daemon.max_workers ${n}\`.`,
      { code: ErrorCodes.tooManyWorkers, details: { requested: n, maxWorkers: max } },
    );
  }

  private assertLinux(): void {
    if (process.platform !== 'linux') {
      throw new DaemonException(
        `The AiiDA daemon runs on Linux only (it needs /proc and the boot id); this is ${process.platform}.`,
        { code: ErrorCodes.unsupportedPlatform },
      );
    }
  }
}

/**
 * Milliseconds to wait before the `attempt`-th retry of a request the daemon refused as `busy`:
 * 25 ms doubling up to 400 ms, with jitter so that refused clients do not come back together.
 */
function busyBackoff(attempt: number): number {
  const base = Math.min(400, 25 * 2 ** Math.min(attempt - 1, 4));
  return base / 2 + Math.random() * (base / 2);
}

function formatSeconds(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Math.round(value * 1000) / 1000);
}

/**
 * A {@link DaemonClient} for the profile named `profile`, or else for `AIIDA_PROFILE`, or else for
 * the default profile of the config under `AIIDA_PATH`. Never changes the default profile.
 * Throws `ConfigError` (`profile_not_found`) from `@aiida/config` for an unknown profile.
 *
 * @example
 * ```ts
 * const client = getDaemonClient('some-profile');
 * ```
 */
export function getDaemonClient(profile?: string, options: DaemonClientOptions = {}): DaemonClient {
  return new DaemonClient(getProfile(profile), options);
}
