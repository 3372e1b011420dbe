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

/** A logger that writes warnings and errors to stderr (the default outside a worker). */
export const stderrLogger: EngineLogger = {
  debug: () => {},
  info: () => {},
  warn: (message, fields) => process.stderr.write(format('warn', message, fields)),
  error: (message, fields) => process.stderr.write(format('error', message, fields)),
};

function format(level: string, message: string, fields?: Record<string, unknown>): string {
  const suffix = fields && Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  return `[aiida-engine] ${level}: ${message}${suffix}\n`;
}
