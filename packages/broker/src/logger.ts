/**
 * Where the broker writes its log lines (invalid messages, reconnects, handler failures). Inject the
 * worker's logger; the default writes to stderr with `console.error`.
 */
export interface BrokerLogger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** The default {@link BrokerLogger}: one line per message on stderr, prefixed by its level. */
export const consoleBrokerLogger: BrokerLogger = {
  info: (message) => console.error(`[broker] info: ${message}`),
  warn: (message) => console.error(`[broker] warn: ${message}`),
  error: (message) => console.error(`[broker] error: ${message}`),
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
