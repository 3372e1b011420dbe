/** Minimal shape of a zod schema's `safeParse`, so this package needs no zod of its own. */
interface SafeParser<T> {
  safeParse(value: unknown):
    | { success: true; data: T }
    | {
        success: false;
        error: { issues: ReadonlyArray<{ path: PropertyKey[]; message: string }> };
      };
}

/** A message body that passed its schema, or why it did not. */
export type ParsedBody<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Validates an AMQP message body against an `@aiida/ipc` schema. rabbitmq-client already parsed
 * bodies sent as `application/json`; a body of another content type (or JSON that failed to parse)
 * arrives as a Buffer or string and is parsed here.
 */
export function parseBody<T>(schema: SafeParser<T>, body: unknown): ParsedBody<T> {
  let value = body;
  if (Buffer.isBuffer(value) || typeof value === 'string') {
    const text = Buffer.isBuffer(value) ? value.toString('utf8') : value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      return { ok: false, reason: `body is not JSON (${(error as Error).message})` };
    }
  }
  const result = schema.safeParse(value);
  if (result.success) return { ok: true, value: result.data };
  const reason = result.error.issues
    .map((issue) => {
      const path = issue.path.map(String).join('.');
      return path === '' ? issue.message : `${path}: ${issue.message}`;
    })
    .join('; ');
  return { ok: false, reason: `body fails its schema (${reason})` };
}
