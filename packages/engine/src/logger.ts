import { createLogger, defaultTextLine } from '@aiida/config';

/** The logging the engine needs; the worker passes its own (e.g. a pino child logger). */
export interface EngineLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** A logger that drops everything. */
export const silentLogger: EngineLogger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
};

/**
 * A logger that writes warnings and errors to stderr (the default outside a worker): the pino
 * logger of `@aiida/config`, lines `[aiida-engine] warn: message {fields}`.
 */
export const stderrLogger: EngineLogger = createLogger({
  level: 'warn',
  textLine: (entry) => `[aiida-engine] ${defaultTextLine(entry)}`,
  write: (line) => process.stderr.write(`${line}\n`),
});
