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
 * Validates `value` against `schema` and returns the parsed value as JSON. Throws
 * `EngineError(code)` naming every offending path, e.g. `invalid inputs for core.arithmetic.add:
 * y: Invalid input: expected number, received string`.
 */
export function validateJson(
  schema: z.ZodType,
  value: unknown,
  what: { kind: 'inputs' | 'outputs'; type: string },
): JsonValue {
  const code =
    what.kind === 'inputs' ? EngineErrorCodes.inputsInvalid : EngineErrorCodes.outputsInvalid;
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
