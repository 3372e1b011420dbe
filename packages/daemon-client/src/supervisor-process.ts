import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { SUPERVISOR_EXEC_ARGV } from '@aiida/daemon-supervisor';
import {
  describeVersionMismatch,
  NdjsonDecoder,
  PROTOCOL_VERSION,
  type SerializedError,
  supervisorStartReportSchema,
} from '@aiida/ipc';

/** The supervisor's one line on fd 3 once its start is settled: ready, with its socket. */
export interface SupervisorStartedReport {
  ok: true;
  pid: number;
  socketPath: string;
}

/** The supervisor's one line on fd 3 when its start failed (it then exits non-zero). */
export interface SupervisorFailedReport {
  ok: false;
  error: SerializedError;
}

/** What the client learnt from fd 3. */
export type SupervisorReport =
  | SupervisorStartedReport
  | SupervisorFailedReport
  /** fd 3 closed without a line, or the line was not a report. */
  | { ok: false; error?: undefined; problem: string };

/**
 * Interprets the supervisor's report line. Unknown fields or another shape are a `problem`, never
 * a success.
 */
export function parseSupervisorReport(value: unknown): SupervisorReport {
  const parsed = supervisorStartReportSchema.safeParse(value);
  if (parsed.success && parsed.data.v === PROTOCOL_VERSION) {
    const report = parsed.data;
    return report.ok
      ? { ok: true, pid: report.pid, socketPath: report.socketPath }
      : { ok: false, error: report.error };
  }
  if (parsed.success && !parsed.data.ok) return { ok: false, error: parsed.data.error };
  if (parsed.success) {
    return {
      ok: false,
      problem: describeVersionMismatch(
        { role: 'client', version: PROTOCOL_VERSION },
        { role: 'supervisor', version: parsed.data.v },
      ),
    };
  }
  return {
    ok: false,
    problem: `the supervisor reported an unreadable start result: ${JSON.stringify(value).slice(0, 500)}`,
  };
}

/**
 * Path of the supervisor program: the `bin` of `@aiida/daemon-supervisor`, resolved through this
 * package's declared dependency (never a deep import of its code).
 */
export function resolveSupervisorProgram(): string {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve('@aiida/daemon-supervisor/package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
    bin?: string | Record<string, string>;
  };
  const bin =
    typeof manifest.bin === 'string'
      ? manifest.bin
      : (manifest.bin?.['aiida-daemon-supervisor'] ?? Object.values(manifest.bin ?? {})[0]);
  if (bin === undefined) {
    throw new Error(`${manifestPath} names no bin for the daemon supervisor`);
  }
  return resolve(dirname(manifestPath), bin);
}

/** A supervisor this client spawned, detached. */
export interface SpawnedSupervisor {
  /** Pid of the supervisor; also its process group and session id (it is detached). */
  pid: number;
  /** Resolves with the first report line on fd 3, or a `problem` when fd 3 closed without one. */
  report: Promise<SupervisorReport>;
  /** True until the process exited (and was reaped), so its pid can't have been reused. */
  readonly running: boolean;
  /** Stops listening on fd 3 and lets this process exit without waiting for the supervisor. */
  release(): void;
}

/** Options of {@link spawnSupervisor}. */
export interface SpawnSupervisorOptions {
  /** Path of the supervisor's JavaScript entry. */
  program: string;
  profileName: string;
  aiidaPath: string;
  numberWorkers: number;
  /** The supervisor's stdout and stderr go here (appended). */
  logFile: string;
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Spawns the supervisor as the contract says: `node <bin> --profile <name> --workers <n>
 * --report-fd 3`, `AIIDA_PATH` set, in a new session (`detached`), stdout and stderr appended to
 * its log, fd 3 a pipe for the one report line; the child is `unref`'d at once.
 */
export function spawnSupervisor(options: SpawnSupervisorOptions): SpawnedSupervisor {
  if (!existsSync(options.program)) {
    throw new Error(
      `the daemon supervisor program ${options.program} does not exist (is @aiida/daemon-supervisor built?)`,
    );
  }
  mkdirSync(dirname(options.logFile), { recursive: true, mode: 0o700 });
  const logFd = openSync(options.logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(
      process.execPath,
      [
        ...SUPERVISOR_EXEC_ARGV,
        options.program,
        '--profile',
        options.profileName,
        '--workers',
        String(options.numberWorkers),
        '--report-fd',
        '3',
      ],
      {
        detached: true,
        stdio: ['ignore', logFd, logFd, 'pipe'],
        env: { ...process.env, ...options.env, AIIDA_PATH: options.aiidaPath },
      },
    );
  } finally {
    closeSync(logFd);
  }
  child.unref();
  // A spawn that fails (ENOENT, EAGAIN) emits 'error'; without a pid there is nothing to watch.
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (child.pid === undefined) {
    const fd3 = child.stdio[3] as Readable | null;
    fd3?.destroy();
    return {
      pid: 0,
      running: false,
      report: spawnError.then((error) => ({
        ok: false,
        problem: `the daemon supervisor could not be spawned: ${error.message}`,
      })),
      release: () => {},
    };
  }
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const fd3 = child.stdio[3] as Readable;
  const report = readReport(fd3);
  return {
    pid: child.pid,
    report,
    get running() {
      return !exited && child.exitCode === null && child.signalCode === null;
    },
    release() {
      fd3.destroy();
    },
  };
}

/** Reads the first NDJSON line of `stream`; closing without one is a `problem`. */
function readReport(stream: Readable): Promise<SupervisorReport> {
  return new Promise((resolve) => {
    const decoder = new NdjsonDecoder({ maxLineBytes: 64 * 1024 });
    let done = false;
    const finish = (report: SupervisorReport) => {
      if (done) return;
      done = true;
      stream.removeAllListeners('data');
      // Keep one 'error' handler: our end may still see EPIPE-like errors after destroy().
      stream.on('error', () => {});
      resolve(report);
    };
    stream.on('data', (chunk: Buffer) => {
      for (const event of decoder.push(chunk)) {
        if (event.kind === 'message') finish(parseSupervisorReport(event.value));
        else
          finish({
            ok: false,
            problem: `unreadable report from the supervisor: ${event.error.message}`,
          });
        return;
      }
    });
    stream.on('error', (error) => {
      finish({ ok: false, problem: `reading the supervisor's report failed: ${error.message}` });
    });
    stream.on('close', () => {
      finish({
        ok: false,
        problem: 'the supervisor exited without reporting the outcome of its start',
      });
    });
    stream.on('end', () => {
      finish({
        ok: false,
        problem: 'the supervisor exited without reporting the outcome of its start',
      });
    });
  });
}

/** The last `lines` lines of a log file, or a note when there is none. */
export function tailOfFile(path: string, lines = 20): string {
  try {
    const text = readFileSync(path, 'utf8').trimEnd();
    if (text === '') return `(${path} is empty)`;
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return `(no log at ${path})`;
  }
}
