import type { EngineLogger } from '@aiida/engine';

/** Levels of {@link LineLogger}, most severe first (the `logging.level` option's values). */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3, trace: 4 };

/** Where {@link LineLogger} writes: one call per line, without the newline. */
export interface LineSinks {
  /** Info and debug lines (stdout in the worker program). */
  out: (line: string) => void;
  /** Warnings and errors (stderr in the worker program, whose tail the supervisor shows). */
  err: (line: string) => void;
}

/**
 * The worker's log: one line per event, `level: message {fields}`, filtered by `logging.level`.
 * Errors and warnings go to `err`, the rest to `out`. The supervisor prefixes each line of a
 * worker's output with a timestamp in `worker-<index>.log`. Satisfies the engine's
 * {@link EngineLogger}.
 */
export class LineLogger implements EngineLogger {
  private readonly rank: number;

  constructor(
    private readonly sinks: LineSinks,
    level: LogLevel = 'info',
  ) {
    this.rank = RANK[level] ?? RANK.info;
  }

  error(message: string, fields?: Record<string, unknown>): void {
    this.write('error', message, fields);
  }

  warn(message: string, fields?: Record<string, unknown>): void {
    this.write('warn', message, fields);
  }

  info(message: string, fields?: Record<string, unknown>): void {
    this.write('info', message, fields);
  }

  debug(message: string, fields?: Record<string, unknown>): void {
    this.write('debug', message, fields);
  }

  private write(level: LogLevel, message: string, fields?: Record<string, unknown>): void {
    if (RANK[level] > this.rank) return;
    let suffix = '';
    if (fields && Object.keys(fields).length > 0) {
      try {
        suffix = ` ${JSON.stringify(fields)}`;
      } catch {
        suffix = '';
      }
    }
    const line = `${level}: ${message}${suffix}`;
    try {
      if (RANK[level] <= RANK.warn) this.sinks.err(line);
      else this.sinks.out(line);
    } catch {
      // A closed pipe must not take the worker down.
    }
  }
}
