import {
  type AiidaLogger,
  createLogger as createAiidaLogger,
  type LogFormat,
  parseLogLine,
} from '@aiida/config';
import { createStream, type RotatingFileStream } from 'rotating-file-stream';

/** Size-based rotation of a log file. */
export interface LogRotation {
  /** Size at which the file is rotated, in bytes (`daemon.log_max_bytes`). */
  maxBytes: number;
  /** Rotated files kept, `<name>.1` … `<name>.<n>` (`daemon.log_backups`; at least 1). */
  backups: number;
}

/** Levels of the supervisor's own log lines. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * A log file rotated by size with `rotating-file-stream` (classic `logrotate` naming: `x.log`,
 * `x.log.1`, …). Every line written is prefixed with an ISO timestamp.
 */
export class RotatingLog {
  private readonly stream: RotatingFileStream;
  private closed = false;

  constructor(
    readonly path: string,
    rotation: LogRotation,
  ) {
    this.stream = createStream(path, {
      size: `${Math.max(1, Math.floor(rotation.maxBytes))}B`,
      rotate: Math.max(1, Math.floor(rotation.backups)),
      mode: 0o600,
    });
    // A log that can't be written must not take the daemon down.
    this.stream.on('error', () => {});
    this.stream.on('warning', () => {});
  }

  /** Writes one line, timestamped. */
  line(text: string): void {
    if (this.closed) return;
    this.stream.write(`${new Date().toISOString()} ${text}\n`);
  }

  /** Writes one line as it is (a JSON log line carries its own time). */
  raw(text: string): void {
    if (this.closed) return;
    this.stream.write(`${text}\n`);
  }

  /** Flushes and closes the file. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, 2000);
      this.stream.end(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** The supervisor's logger: levelled lines into a {@link RotatingLog}. */
export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
}

/**
 * A {@link Logger} (the pino logger of `@aiida/config`) writing the lines at or above `level`:
 * `text` lines read `LEVEL message` behind the file's timestamp, `json` lines are one JSON object
 * each (`level`, `time`, `msg`, fields). Each line is also handed to `echo`.
 */
export function createLogger(
  log: RotatingLog,
  level: LogLevel | 'trace' = 'info',
  echo?: (line: string) => void,
  format: LogFormat = 'text',
): Logger {
  return createAiidaLogger({
    level,
    format,
    textLine: (entry) => `${entry.level.toUpperCase().padEnd(5)} ${entry.msg}`,
    write: (line) => {
      if (format === 'json') log.raw(line);
      else log.line(line);
      echo?.(line);
    },
  });
}

/**
 * The `worker-<index>.log` of a worker slot: the supervisor's own lines about the worker and every
 * line the worker writes to stdout and stderr. In `text` format each line is timestamped and
 * tagged `pid=<pid> supervisor:`, `pid=<pid> stdout|` or `pid=<pid> stderr|`. In `json` format a
 * worker's JSON lines are written as they are and anything else it prints (a crash's stack, a
 * body's `console.log`) becomes a JSON line of its own (`stream`, level `info` for stdout and
 * `error` for stderr, filtered by `level` like every line).
 */
export class WorkerLog {
  private readonly logger: AiidaLogger;

  constructor(
    readonly file: RotatingLog,
    readonly index: number,
    private readonly format: LogFormat = 'text',
    level: LogLevel | 'trace' = 'info',
  ) {
    this.logger = createAiidaLogger({
      level,
      format: 'json',
      write: (line) => file.raw(line),
    });
  }

  /** A line of the supervisor's about worker `pid`. */
  supervisor(pid: number | undefined, text: string, level: 'info' | 'error' = 'info'): void {
    if (this.format === 'text') {
      if (this.logger.isLevelEnabled(level))
        this.file.line(`pid=${pid ?? '?'} supervisor: ${text}`);
      return;
    }
    this.logger[level](text, { component: 'supervisor', worker: this.index, pid: pid ?? null });
  }

  /** A line the worker `pid` wrote to `stream`. */
  output(pid: number | undefined, stream: 'stdout' | 'stderr', line: string): void {
    if (this.format === 'text') {
      this.file.line(`pid=${pid ?? '?'} ${stream}| ${line}`);
      return;
    }
    if (parseLogLine(line)) {
      this.file.raw(line.trim());
      return;
    }
    const level = stream === 'stderr' ? 'error' : 'info';
    this.logger[level](line, { stream, worker: this.index, pid: pid ?? null });
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
