import { createRequire } from 'node:module';
import type { Logger as PinoLogger } from 'pino';

/**
 * pino, loaded by the first {@link createLogger}: a command that logs nothing (`aiida daemon
 * status`, `aiida --version`) does not pay for loading it (about 15 ms).
 */
let pinoModule: typeof import('pino') | undefined;
function loadPino(): typeof import('pino').pino {
  pinoModule ??= createRequire(import.meta.url)('pino') as typeof import('pino');
  return pinoModule.pino;
}

/** Levels of log lines, most severe first (the values of the `logging.level` option). */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

/** How log lines are written (the values of the `logging.format` option). */
export type LogFormat = 'text' | 'json';

const LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug', 'trace'];

/** One log line, as {@link parseLogLine} reads it back. */
export interface LogEntry {
  level: LogLevel | 'fatal';
  /** ISO time of the line. */
  time: string;
  msg: string;
  /** Every other field (`pk`, `worker`, `component`, `pid`, …). */
  fields: Record<string, unknown>;
}

/** Options of {@link createLogger}. */
export interface CreateLoggerOptions {
  /** Lines below this level are dropped before they are formatted. @default 'info' */
  level?: LogLevel;
  /** `text`: {@link CreateLoggerOptions.textLine}; `json`: pino's JSON object. @default 'text' */
  format?: LogFormat;
  /** Fields on every line (e.g. `{ worker: id }`); text lines leave them out. */
  base?: Record<string, unknown>;
  /** Receives each finished line, without its newline, and its level. */
  write: (line: string, level: LogEntry['level']) => void;
  /**
   * Text format of a line. @default `level: message {fields}` (`level: component: message` when
   * the line has a `component` field)
   */
  textLine?: (entry: LogEntry) => string;
}

/**
 * A logger of the daemon's packages: pino underneath, with the `(message, fields?)` calls that
 * the engine's `EngineLogger` and the broker's `BrokerLogger` expect.
 */
export interface AiidaLogger {
  error(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  debug(message: string, fields?: Record<string, unknown>): void;
  trace(message: string, fields?: Record<string, unknown>): void;
  /** A logger whose lines all carry `bindings` (e.g. `{ pk }` or `{ component: 'broker' }`). */
  child(bindings: Record<string, unknown>): AiidaLogger;
  /** True when lines of `level` are written. */
  isLevelEnabled(level: LogLevel): boolean;
  /** The pino logger itself. */
  readonly pino: PinoLogger;
}

/** `level: message {fields}`, or `level: component: message {fields}`. */
export function defaultTextLine(entry: LogEntry): string {
  const { component, ...rest } = entry.fields;
  const prefix = typeof component === 'string' ? `${component}: ` : '';
  return `${entry.level}: ${prefix}${entry.msg}${fieldsSuffix(rest)}`;
}

function fieldsSuffix(fields: Record<string, unknown>): string {
  if (Object.keys(fields).length === 0) return '';
  try {
    return ` ${JSON.stringify(fields)}`;
  } catch {
    return '';
  }
}

const PINO_LEVEL_NAMES: Record<number, LogEntry['level']> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

function levelName(value: unknown): LogEntry['level'] | undefined {
  if (typeof value === 'number') return PINO_LEVEL_NAMES[value];
  if (typeof value !== 'string') return undefined;
  const lower = value.toLowerCase();
  if (lower === 'warning') return 'warn';
  if (lower === 'fatal' || (LEVELS as readonly string[]).includes(lower)) {
    return lower as LogEntry['level'];
  }
  return undefined;
}

/**
 * Reads one JSON log line (ours, or any pino line: numeric levels and epoch times are
 * understood); undefined when the line is not a JSON object with a level and a time.
 */
export function parseLogLine(line: string): LogEntry | undefined {
  const text = line.trim();
  if (!text.startsWith('{')) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const { level, time, msg, ...fields } = value as Record<string, unknown>;
  const name = levelName(level);
  if (name === undefined) return undefined;
  let iso: string;
  if (typeof time === 'number') iso = new Date(time).toISOString();
  else if (typeof time === 'string') iso = time;
  else return undefined;
  return { level: name, time: iso, msg: typeof msg === 'string' ? msg : '', fields };
}

/**
 * A JSON log line rendered as a readable text line, `<time> LEVEL message {fields}`; any other
 * line is returned unchanged (what `aiida daemon logshow` prints).
 */
export function renderLogLine(line: string): string {
  const entry = parseLogLine(line);
  if (!entry) return line;
  return `${entry.time} ${entry.level.toUpperCase().padEnd(5)} ${entry.msg}${fieldsSuffix(entry.fields)}`;
}

/**
 * The one logger factory of the daemon's packages (pino). Lines below `level` cost nothing; each
 * written line is handed to `write` as JSON (`format: 'json'`: `level` as a name, `time` as an ISO
 * string, `msg`, the base fields and the child bindings) or as text.
 */
export function createLogger(options: CreateLoggerOptions): AiidaLogger {
  const format = options.format ?? 'text';
  const textLine = options.textLine ?? defaultTextLine;
  const baseKeys = new Set(Object.keys(options.base ?? {}));
  const destination = {
    write(chunk: string): void {
      const line = chunk.endsWith('\n') ? chunk.slice(0, -1) : chunk;
      const entry = parseLogLine(line);
      if (!entry) return;
      try {
        if (format === 'json') {
          options.write(line, entry.level);
        } else {
          const fields: Record<string, unknown> = {};
          for (const [key, value] of Object.entries(entry.fields)) {
            if (!baseKeys.has(key)) fields[key] = value;
          }
          options.write(textLine({ ...entry, fields }), entry.level);
        }
      } catch {
        // A closed pipe or file must not take the program down.
      }
    },
  };
  const pino = loadPino();
  const logger = pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrap(logger);
}

function wrap(logger: PinoLogger): AiidaLogger {
  const at =
    (level: LogLevel) =>
    (message: string, fields?: Record<string, unknown>): void => {
      if (fields && Object.keys(fields).length > 0) logger[level](fields, message);
      else logger[level](message);
    };
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    child: (bindings) => wrap(logger.child(bindings)),
    isLevelEnabled: (level) => logger.isLevelEnabled(level),
    pino: logger,
  };
}
