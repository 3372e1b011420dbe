import type { z } from 'zod';
import { OPTION_NAMES } from './options.js';
import { closestMatch } from './suggest.js';

/** One problem found in a value: where (JSON path) and what was expected. */
export interface ValueProblem {
  /** JSON path such as `profiles.foo.process_control.config.broker_port` (`` for the root). */
  path: string;
  /** What was wrong and what was expected there. */
  message: string;
}

/**
 * A JSON path for humans: `a.b.c`, with `["..."]` for keys that aren't plain words (option
 * names contain dots) and `[0]` for array indices.
 */
function formatJsonPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (typeof segment === 'symbol') out += `[${String(segment)}]`;
    else if (/^[A-Za-z0-9_-]+$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** Zod issues turned into {@link ValueProblem}s, one per offending location. */
export function zodIssuesToProblems(
  issues: readonly z.core.$ZodIssue[],
  prefix: readonly PropertyKey[] = [],
): ValueProblem[] {
  const problems: ValueProblem[] = [];
  for (const issue of issues) {
    const path = [...prefix, ...issue.path];
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({
          path: formatJsonPath([...path, key]),
          message: unknownKeyMessage(path, key),
        });
      }
      continue;
    }
    problems.push({ path: formatJsonPath(path), message: issueMessage(issue) });
  }
  return problems;
}

/** Problems as an indented list, one per line. */
export function formatProblems(problems: readonly ValueProblem[]): string {
  return problems.map((p) => `  - ${p.path === '' ? '(root)' : p.path}: ${p.message}`).join('\n');
}

function unknownKeyMessage(parentPath: readonly PropertyKey[], key: string): string {
  if (parentPath[parentPath.length - 1] === 'options') {
    const suggestion = closestMatch(key, OPTION_NAMES);
    return suggestion === undefined
      ? 'unknown option'
      : `unknown option; did you mean '${suggestion}'?`;
  }
  return 'unknown key, not expected here';
}

function issueMessage(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_type':
      return `expected ${issue.expected === 'int' ? 'integer' : issue.expected}, got ${describeInput(issue.input)}`;
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeInput(issue.input)}`;
    case 'too_small':
    case 'too_big':
      if (issue.origin === 'number' || issue.origin === 'int' || issue.origin === 'bigint') {
        const bound = issue.code === 'too_small' ? issue.minimum : issue.maximum;
        const op =
          issue.code === 'too_small'
            ? issue.inclusive
              ? '>='
              : '>'
            : issue.inclusive
              ? '<='
              : '<';
        return `must be ${op} ${String(bound)}, got ${describeInput(issue.input)}`;
      }
      return issue.message;
    default:
      return issue.message;
  }
}

function describeInput(input: unknown): string {
  if (input === undefined) return 'nothing (missing)';
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'an array';
  if (typeof input === 'object') return 'an object';
  const text = JSON.stringify(input);
  return `${typeof input} ${text !== undefined && text.length > 40 ? `${text.slice(0, 40)}...` : text}`;
}
