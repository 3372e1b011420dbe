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

const LEVEL_ORDER: Record<LogLevel | 'trace', number> = {
  error: 0,
  warn: 1,
  info: 2,
  debug: 3,
  trace: 4,
};

/** A {@link Logger} writing `LEVEL message` lines at or above `level`; optionally echoed. */
export function createLogger(
  log: RotatingLog,
  level: LogLevel | 'trace' = 'info',
  echo?: (line: string) => void,
): Logger {
  const at =
    (name: LogLevel) =>
    (message: string): void => {
      if (LEVEL_ORDER[name] > LEVEL_ORDER[level]) return;
      const line = `${name.toUpperCase().padEnd(5)} ${message}`;
      log.line(line);
      echo?.(line);
    };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}
