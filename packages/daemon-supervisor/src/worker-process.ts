import { type ChildProcess, fork } from 'node:child_process';
import { createInterface } from 'node:readline';
import { renderLogLine } from '@aiida/config';
import {
  PROTOCOL_VERSION,
  type WorkerCounters,
  type WorkerState,
  type WorkerToSupervisorMessage,
  workerToSupervisorMessageSchema,
} from '@aiida/ipc';
import type { WorkerLog } from './log.js';

/** Lines of a worker's stderr kept for status and error messages. */
export const STDERR_TAIL_LINES = 20;
const MAX_TAIL_LINE_CHARS = 2000;
/** How long to wait for a dead worker's last output after its exit, in milliseconds. */
const OUTPUT_GRACE_MS = 300;

/** How a worker process ended. */
export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** How to start a worker process. */
export interface WorkerSpawnSpec {
  program: string;
  args: readonly string[];
  env: NodeJS.ProcessEnv;
}

/** Callbacks of a {@link WorkerProcess} to its pool. */
export interface WorkerProcessEvents {
  onReady(worker: WorkerProcess): void;
  /** A warm spare is loaded and connected (its `standby` message). */
  onStandby?(worker: WorkerProcess): void;
  onExit(worker: WorkerProcess, exit: WorkerExit): void;
  onFatal(worker: WorkerProcess): void;
  onInvalidMessage(worker: WorkerProcess, problem: string): void;
}

/**
 * One forked worker process as the supervisor sees it: its channel messages (ready, heartbeat,
 * fatal), its output lines (into the slot's log, the last stderr lines kept), its end.
 */
export class WorkerProcess {
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  state: Exclude<WorkerState, 'crash-looping'> = 'starting';
  readonly startedAt = new Date();
  readyAt: Date | undefined;
  /** When a worker started as the warm spare reported `standby` (undefined until then). */
  standbyAt: Date | undefined;
  lastHeartbeatAt: Date | undefined;
  cpu: number | null = null;
  memory: number | null = null;
  slotsUsed = 0;
  slotsTotal = 0;
  activePks: number[] = [];
  /** Consecutive memory samples above the cap. */
  overMemorySamples = 0;
  /**
   * Set when the supervisor found this worker unresponsive (no heartbeat for longer than
   * `daemon.lease_timeout`) and signalled it: the seconds it had been silent.
   */
  unresponsiveFor: number | undefined;
  /** The counters of its last heartbeat (cumulative since it started), if it sends them. */
  counters: WorkerCounters | undefined;
  /** The text of a `fatal` message, if one came. */
  fatal: string | undefined;
  readonly stderrTail: string[] = [];
  exit: WorkerExit | undefined;
  /** Resolves once the process is gone and its output read. */
  readonly exited: Promise<WorkerExit>;

  constructor(
    /** The slot it serves; -1 for the warm spare until its promotion. */
    public index: number,
    spec: WorkerSpawnSpec,
    private log: WorkerLog,
    private readonly events: WorkerProcessEvents,
  ) {
    let resolveExited!: (exit: WorkerExit) => void;
    this.exited = new Promise((resolve) => {
      resolveExited = resolve;
    });
    this.child = fork(spec.program, [...spec.args], {
      env: spec.env,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      execArgv: [],
      serialization: 'json',
    });
    this.pid = this.child.pid;
    this.log.supervisor(this.pid, `started ${spec.program}`);

    let stdioClosed = 0;
    let exitInfo: WorkerExit | undefined;
    let finished = false;
    const finish = () => {
      if (finished || exitInfo === undefined) return;
      finished = true;
      this.exit = exitInfo;
      this.log.supervisor(this.pid, `exited (${describeExit(exitInfo)})`);
      resolveExited(exitInfo);
      this.events.onExit(this, exitInfo);
    };
    const onStdioClosed = () => {
      stdioClosed++;
      if (stdioClosed === 2) finish();
    };
    if (this.child.stdout) {
      const lines = createInterface({ input: this.child.stdout, crlfDelay: Infinity });
      lines.on('line', (line) => this.log.output(this.pid, 'stdout', line));
      lines.on('close', onStdioClosed);
    } else stdioClosed++;
    if (this.child.stderr) {
      const lines = createInterface({ input: this.child.stderr, crlfDelay: Infinity });
      lines.on('line', (line) => {
        this.log.output(this.pid, 'stderr', line);
        // A JSON log line (logging.format json) is kept as a text line, for status and errors.
        this.pushStderr(renderLogLine(line));
      });
      lines.on('close', onStdioClosed);
    } else stdioClosed++;

    this.child.on('message', (raw) => this.onMessage(raw));
    this.child.on('error', (error) => {
      this.pushStderr(`supervisor: ${error.message}`);
      if (this.pid === undefined && exitInfo === undefined) {
        // The spawn itself failed: there is no process to wait for.
        exitInfo = { code: null, signal: null };
        finish();
      }
    });
    this.child.on('exit', (code, signal) => {
      exitInfo = { code, signal };
      // Output may still be in flight; a grandchild holding the pipes must not delay us long.
      setTimeout(finish, OUTPUT_GRACE_MS).unref();
      if (stdioClosed === 2) finish();
    });
  }

  /** True until the process has exited. */
  get alive(): boolean {
    return (
      this.exit === undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  /** Seconds since `ready`, or undefined if it never was. */
  readyFor(now = Date.now()): number | undefined {
    return this.readyAt === undefined ? undefined : (now - this.readyAt.getTime()) / 1000;
  }

  /**
   * Asks the worker to drain and exit within `gracefulTimeout` seconds (the `shutdown` message;
   * SIGTERM if its channel is gone).
   */
  requestShutdown(gracefulTimeout: number): void {
    if (!this.alive) return;
    this.state = 'stopping';
    if (this.child.connected) {
      this.child.send({ v: PROTOCOL_VERSION, type: 'shutdown', gracefulTimeout }, (error) => {
        if (error) this.signal('SIGTERM');
      });
    } else {
      this.signal('SIGTERM');
    }
  }

  /**
   * Makes a warm spare in standby the worker of slot `index`: its output goes to that slot's log
   * from now on, and it is sent `promote` (it starts taking work, then sends `ready`). Returns
   * false if it can't be reached (then it should be stopped, not used).
   */
  promote(index: number, log: WorkerLog): boolean {
    if (!this.alive || !this.child.connected || this.standbyAt === undefined) return false;
    this.log.supervisor(this.pid, `promoted to worker ${index}`);
    this.index = index;
    this.log = log;
    this.log.supervisor(this.pid, `the warm spare was promoted to worker ${index}`);
    try {
      this.child.send({ v: PROTOCOL_VERSION, type: 'promote' }, (error) => {
        if (error) this.signal('SIGKILL');
      });
    } catch {
      return false;
    }
    return true;
  }

  /** Sends a signal if the process still runs. */
  signal(signal: NodeJS.Signals): void {
    if (!this.alive) return;
    try {
      this.child.kill(signal);
    } catch {}
  }

  /** A sentence on why this worker failed: its `fatal` text, or its exit and last stderr lines. */
  describeFailure(): string {
    const who =
      this.index < 0
        ? `the warm spare (pid ${this.pid ?? '?'})`
        : `worker ${this.index} (pid ${this.pid ?? '?'})`;
    if (this.fatal !== undefined) return `${who} failed: ${this.fatal}`;
    if (this.unresponsiveFor !== undefined) {
      const how = this.exit ? describeExit(this.exit) : 'was signalled';
      return `${who} was unresponsive (no heartbeat for ${this.unresponsiveFor.toFixed(1)} s) and ${how}`;
    }
    const how = this.exit ? describeExit(this.exit) : 'did not start';
    const before = this.readyAt === undefined ? ' before it was ready' : '';
    const tail = this.stderrTail.length
      ? `; last stderr lines:\n${this.stderrTail.join('\n')}`
      : '; it wrote nothing to stderr';
    return `${who} ${how}${before}${tail}`;
  }

  private pushStderr(line: string): void {
    this.stderrTail.push(
      line.length > MAX_TAIL_LINE_CHARS ? line.slice(0, MAX_TAIL_LINE_CHARS) : line,
    );
    if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
  }

  private onMessage(raw: unknown): void {
    const parsed = workerToSupervisorMessageSchema.safeParse(raw);
    if (!parsed.success) {
      this.events.onInvalidMessage(this, parsed.error.issues.map((i) => i.message).join('; '));
      return;
    }
    const message: WorkerToSupervisorMessage = parsed.data;
    switch (message.type) {
      case 'ready':
        this.slotsTotal = message.slotsTotal;
        if (this.state === 'starting') {
          this.state = 'ready';
          this.readyAt = new Date();
          this.log.supervisor(this.pid, 'ready');
          this.events.onReady(this);
        }
        break;
      case 'standby':
        if (this.state === 'starting' && this.standbyAt === undefined) {
          this.standbyAt = new Date();
          this.log.supervisor(this.pid, 'standby (warm spare)');
          this.events.onStandby?.(this);
        }
        break;
      case 'heartbeat':
        this.lastHeartbeatAt = new Date();
        this.slotsUsed = message.slotsUsed;
        this.slotsTotal = message.slotsTotal;
        this.activePks = message.activePks;
        if (message.counters) this.counters = message.counters;
        break;
      case 'fatal':
        this.fatal = message.error;
        this.log.supervisor(this.pid, `fatal: ${message.error}`, 'error');
        this.events.onFatal(this);
        break;
    }
  }
}

/** "exited with code 1" / "was killed by SIGKILL". */
export function describeExit(exit: WorkerExit): string {
  if (exit.signal) return `was killed by ${exit.signal}`;
  if (exit.code === null) return 'could not be started';
  return `exited with code ${exit.code}`;
}
