import {
  type AiidaLogger,
  createLogger,
  getOption,
  type LogFormat,
  type LogLevel,
  type Profile,
} from '@aiida/config';

/**
 * Where the broker writes its log lines (invalid messages, reconnects, handler failures). Inject
 * your own (the worker passes a child of its pino logger); the default is
 * {@link stderrBrokerLogger} of the profile.
 */
export interface BrokerLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/**
 * The default {@link BrokerLogger} of a profile: the pino logger of `@aiida/config` on stderr, at
 * the profile's `logging.level` and in its `logging.format` (text lines read
 * `warn: broker: message`).
 */
export function stderrBrokerLogger(profile?: Profile): AiidaLogger {
  const opts = profile ? { profile } : {};
  let level: LogLevel = 'info';
  let format: LogFormat = 'text';
  try {
    level = getOption('logging.level', opts);
    format = getOption('logging.format', opts);
  } catch {
    // No readable config (a profile made in code): the defaults.
  }
  return createLogger({
    level,
    format,
    write: (line) => process.stderr.write(`${line}\n`),
  }).child({ component: 'broker' });
}

/** A {@link BrokerLogger} on stderr with the global `logging.level` and `logging.format`. */
export const consoleBrokerLogger: BrokerLogger = {
  info: (message) => stderrBrokerLogger().info(message),
  warn: (message) => stderrBrokerLogger().warn(message),
  error: (message) => stderrBrokerLogger().error(message),
};

/** At most `max` characters of a message body, for a log line. */
export function previewBody(body: unknown, max = 200): string {
  let text: string;
  if (Buffer.isBuffer(body)) text = body.toString('utf8');
  else if (typeof body === 'string') text = body;
  else {
    try {
      text = JSON.stringify(body) ?? String(body);
    } catch {
      text = String(body);
    }
  }
  return text.length > max ? `${text.slice(0, max)}… (${text.length} chars)` : text;
}
