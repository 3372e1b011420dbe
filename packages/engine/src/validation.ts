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
