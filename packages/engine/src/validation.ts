import type { z } from 'zod';
import { EngineError, EngineErrorCodes } from './errors.js';
import { type JsonValue, toJson } from './json.js';

/** One problem of a value against its schema. */
export interface ValueIssue {
  /** Dotted path of the offending value (`(root)` for the whole value). */
  path: string;
  message: string;
}

function issuesOf(error: z.ZodError): ValueIssue[] {
  return error.issues.map((issue) => ({
    path: issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)',
    message: issue.message,
  }));
}

function describeIssues(issues: ValueIssue[]): string {
  return issues.map((i) => `${i.path}: ${i.message}`).join('; ');
}

/**
 * The names an object schema declares, or undefined when the schema is not a plain object schema
 * (or accepts any other key: `z.looseObject`, `.catchall()`). Read structurally, so a plugin's own
 * copy of zod works too.
 */
function declaredKeys(schema: z.ZodType): string[] | undefined {
  const shape = (schema as { shape?: unknown }).shape;
  if (shape === null || typeof shape !== 'object') return undefined;
  const def = (schema as { _zod?: { def?: { catchall?: unknown } } })._zod?.def;
  if (def?.catchall !== undefined) return undefined;
  return Object.keys(shape);
}

/**
 * AiiDA refuses an input that its process does not declare; zod's object schemas would silently
 * drop it (a typo like `arguments` for `args` would run the command without its arguments).
 */
function rejectUndeclared(schema: z.ZodType, value: unknown, type: string): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const declared = declaredKeys(schema);
  if (declared === undefined) return;
  const unknown = Object.keys(value).filter((key) => !declared.includes(key));
  if (unknown.length === 0) return;
  const issues = unknown.map((key) => ({
    path: key,
    message: `not an input of ${type} (its inputs: ${declared.join(', ') || 'none'})`,
  }));
  throw new EngineError(
    EngineErrorCodes.inputsInvalid,
    `invalid inputs for ${type}: ${describeIssues(issues)}`,
    { details: { type, issues } },
  );
}

/**
 * Validates `value` against `schema` and returns the parsed value as JSON. Throws
 * `EngineError(code)` naming every offending path, e.g. `invalid inputs for core.arithmetic.add:
 * y: Invalid input: expected number, received string`. For inputs, a key that an object schema does
 * not declare is refused too (`arguments: not an input of core.shell (its inputs: ...)`).
 */
export function validateJson(
  schema: z.ZodType,
  value: unknown,
  what: { kind: 'inputs' | 'outputs'; type: string },
): JsonValue {
  const code =
    what.kind === 'inputs' ? EngineErrorCodes.inputsInvalid : EngineErrorCodes.outputsInvalid;
  if (what.kind === 'inputs') rejectUndeclared(schema, value, what.type);
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = issuesOf(parsed.error);
    throw new EngineError(
      code,
      `invalid ${what.kind} for ${what.type}: ${describeIssues(issues)}`,
      {
        cause: parsed.error,
        details: { type: what.type, issues },
      },
    );
  }
  let json: JsonValue;
  try {
    json = toJson(parsed.data);
  } catch (error) {
    throw new EngineError(
      code,
      `invalid ${what.kind} for ${what.type}: not representable as JSON (${(error as Error).message})`,
      { cause: error, details: { type: what.type } },
    );
  }
  // What the store returns must still satisfy the schema (no Dates, Maps, undefined in arrays...).
  const again = schema.safeParse(json);
  if (!again.success) {
    const issues = issuesOf(again.error);
    throw new EngineError(
      code,
      `invalid ${what.kind} for ${what.type}: values must be plain JSON, but after a JSON round trip ` +
        describeIssues(issues),
      { cause: again.error, details: { type: what.type, issues } },
    );
  }
  return json;
}

/** Default of `engine.max_input_bytes` (4 MiB), for an engine opened without a profile. */
export const DEFAULT_MAX_INPUT_BYTES = 4 * 1024 * 1024;

/**
 * Refuses inputs whose JSON is larger than `maxBytes` (`inputs_too_large`), naming the largest
 * input (e.g. a shell job's `stdin`), its size and the limit, so nothing oversized is stored.
 */
export function checkInputSize(type: string, inputs: JsonValue, maxBytes: number): void {
  const total = Buffer.byteLength(JSON.stringify(inputs), 'utf8');
  if (total <= maxBytes) return;
  let largest: { name: string; bytes: number } | undefined;
  if (inputs !== null && typeof inputs === 'object' && !Array.isArray(inputs)) {
    for (const [name, value] of Object.entries(inputs)) {
      const bytes = Buffer.byteLength(JSON.stringify(value), 'utf8');
      if (!largest || bytes > largest.bytes) largest = { name, bytes };
    }
  }
  const culprit = largest
    ? `; the largest input is '${largest.name}', ${formatBytes(largest.bytes)}`
    : '';
  throw new EngineError(
    EngineErrorCodes.inputsTooLarge,
    `inputs of ${type} too large: ${formatBytes(total)} as JSON, above the limit of ` +
      `${formatBytes(maxBytes)} set by the option engine.max_input_bytes${culprit}. Pass large ` +
      'data as a file path instead, or raise the option.',
    {
      details: {
        type,
        bytes: total,
        maxBytes,
        ...(largest ? { input: largest.name, inputBytes: largest.bytes } : {}),
      },
    },
  );
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  const units = ['KiB', 'MiB', 'GiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${bytes} bytes (${Math.round(value * 10) / 10} ${units[unit]})`;
}
