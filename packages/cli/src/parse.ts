import { InvalidArgumentError } from 'commander';

// Parsers for option and argument values. Commander puts the message of an InvalidArgumentError
// after the option's or argument's name and the bad value, so each says what was expected.

/** A whole number of at least 1, e.g. a number of workers. */
export function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('Expected a positive integer (e.g. 4).');
  }
  return n;
}

/** A whole number of at least 0. */
export function parseNonNegativeInt(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) {
    throw new InvalidArgumentError('Expected a non-negative integer (e.g. 0 or 3).');
  }
  return n;
}

/** A duration in seconds, a number of at least 0 (e.g. `2.5`). */
export function parseSeconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError('Expected a number of seconds (e.g. 10 or 2.5).');
  }
  return n;
}

/** A number of days, at least 0 (e.g. `7` or `0.5`). */
export function parseDays(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError('Expected a number of days (e.g. 7 or 0.5).');
  }
  return n;
}

/** A TCP port, 1 to 65535. */
export function parsePort(value: string): number {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || n < 1 || n > 65_535) {
    throw new InvalidArgumentError('Expected a port number from 1 to 65535.');
  }
  return n;
}

/** A process pk, for a variadic argument (collects into a list). */
export function parsePk(value: string, previous: number[] = []): number[] {
  const n = Number(value);
  if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('Expected a process pk, a positive integer (e.g. 42).');
  }
  return [...previous, n];
}

/** One of `choices`. */
export function parseChoice<T extends string>(choices: readonly T[]) {
  return (value: string): T => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`Expected one of: ${choices.join(', ')}.`);
    }
    return value as T;
  };
}

/**
 * The value of an input given on the command line: JSON when it parses as JSON (`3`, `true`,
 * `[1,2]`, `{"a":1}`, `"quoted"`), else the text as a string.
 */
function parseInputValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** One `-i key=value` (repeatable): adds the pair to the inputs collected so far. */
export function parseKeyValue(
  value: string,
  previous: Record<string, unknown> = {},
): Record<string, unknown> {
  const eq = value.indexOf('=');
  if (eq <= 0) {
    throw new InvalidArgumentError('Expected key=value (e.g. x=1; the value parses as JSON).');
  }
  const key = value.slice(0, eq).trim();
  if (key === '') {
    throw new InvalidArgumentError('Expected key=value with a non-empty key.');
  }
  return { ...previous, [key]: parseInputValue(value.slice(eq + 1)) };
}
