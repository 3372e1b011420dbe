import type { z } from 'zod';
import { ConfigError, ConfigErrorCodes } from './errors.js';
import { formatProblems, zodIssuesToProblems } from './format-issues.js';
import {
  isOptionName,
  LEASE_HEARTBEAT_RATIO,
  OPTION_NAMES,
  OPTIONS,
  type OptionName,
  type OptionValue,
} from './options.js';
import { closestMatch } from './suggest.js';

/** Where a resolved option value came from. */
export type OptionSource = 'profile' | 'global' | 'default';

/**
 * Throws {@link ConfigError} `option_unknown` unless `name` is a registered option; the message
 * suggests the closest known name, e.g. "Unknown option 'daemon.timout'. Did you mean
 * 'daemon.timeout'?".
 */
export function assertOptionName(name: string): asserts name is OptionName {
  if (isOptionName(name)) return;
  const suggestion = closestMatch(name, OPTION_NAMES);
  const hint =
    suggestion === undefined
      ? ` Known options: ${OPTION_NAMES.join(', ')}.`
      : ` Did you mean '${suggestion}'?`;
  throw new ConfigError(ConfigErrorCodes.optionUnknown, `Unknown option '${name}'.${hint}`);
}

/**
 * Checks `value` against option `name`'s type and returns the typed value. Strings as typed on a
 * command line are accepted when they parse (as JSON) into the right type: `'30'` for a number,
 * `'true'`, `'["my-plugin"]'` for a list. With a `scope`, also refuses an option that can't be
 * set there. Throws {@link ConfigError} `option_unknown` or `option_invalid`.
 */
export function parseOptionValue<N extends OptionName>(
  name: N,
  value: unknown,
  scope?: 'global' | 'profile',
): OptionValue<N>;
export function parseOptionValue(
  name: string,
  value: unknown,
  scope?: 'global' | 'profile',
): unknown;
export function parseOptionValue(
  name: string,
  value: unknown,
  scope?: 'global' | 'profile',
): unknown {
  assertOptionName(name);
  const definition = OPTIONS[name];
  if (scope !== undefined && definition.scope !== 'both' && definition.scope !== scope) {
    throw new ConfigError(
      ConfigErrorCodes.optionInvalid,
      `Option '${name}' can only be set ${definition.scope === 'global' ? 'globally' : 'on a profile'}.`,
    );
  }
  const direct = definition.schema.safeParse(value, { reportInput: true });
  if (direct.success) return direct.data;
  if (typeof value === 'string') {
    let decoded: unknown;
    let decodedOk = false;
    try {
      decoded = JSON.parse(value);
      decodedOk = true;
    } catch {
      // Not JSON: report the error of the value as given.
    }
    if (decodedOk) {
      const parsed = definition.schema.safeParse(decoded, { reportInput: true });
      if (parsed.success) return parsed.data;
      // '-5' on a command line is the number -5: say which rule the number broke (a range, a
      // whole number), not that a string is not a number.
      if (typeof decoded !== 'string') return invalidValue(name, value, parsed.error);
    }
  }
  return invalidValue(name, value, direct.error);
}

function invalidValue(name: OptionName, value: unknown, error: z.ZodError): never {
  const problems = zodIssuesToProblems(error.issues);
  const detail =
    problems.length === 1 && problems[0]?.path === ''
      ? ` ${problems[0].message}`
      : `\n${formatProblems(problems)}`;
  throw new ConfigError(
    ConfigErrorCodes.optionInvalid,
    `Invalid value ${describeValue(value)} for option '${name}'${unitText(name)}:${detail}`,
    { cause: error },
  );
}

/** Resolves one option: the profile's override, else the global value, else the default. */
export function resolveOptionValue<N extends OptionName>(
  name: N,
  profileOptions: Record<string, unknown> | undefined,
  globalOptions: Record<string, unknown>,
): { value: OptionValue<N>; source: OptionSource } {
  if (profileOptions !== undefined && profileOptions[name] !== undefined) {
    return { value: structuredClone(profileOptions[name]) as OptionValue<N>, source: 'profile' };
  }
  if (globalOptions[name] !== undefined) {
    return { value: structuredClone(globalOptions[name]) as OptionValue<N>, source: 'global' };
  }
  return { value: structuredClone(OPTIONS[name].default) as OptionValue<N>, source: 'default' };
}

/** Why the resolved lease/heartbeat pair breaks the rule, or undefined when it doesn't. */
export function leaseRuleProblem(
  profileOptions: Record<string, unknown> | undefined,
  globalOptions: Record<string, unknown>,
): string | undefined {
  const heartbeat = resolveOptionValue(
    'daemon.worker_heartbeat_interval',
    profileOptions,
    globalOptions,
  );
  const lease = resolveOptionValue('daemon.lease_timeout', profileOptions, globalOptions);
  if (lease.value >= LEASE_HEARTBEAT_RATIO * heartbeat.value) return undefined;
  return (
    `daemon.lease_timeout (${lease.value} s, ${sourceText(lease.source)}) must be at least ` +
    `${LEASE_HEARTBEAT_RATIO} x daemon.worker_heartbeat_interval (${heartbeat.value} s, ` +
    `${sourceText(heartbeat.source)}) = ${LEASE_HEARTBEAT_RATIO * heartbeat.value} s, so a lease ` +
    'survives missed heartbeats. Raise daemon.lease_timeout or lower daemon.worker_heartbeat_interval.'
  );
}

/**
 * Throws {@link ConfigError} `option_invalid` when the lease/heartbeat pair resolved from these
 * options breaks the rule `daemon.lease_timeout >= 3 x daemon.worker_heartbeat_interval`.
 */
export function assertLeaseRule(
  profileOptions: Record<string, unknown> | undefined,
  globalOptions: Record<string, unknown>,
  where: string,
): void {
  const problem = leaseRuleProblem(profileOptions, globalOptions);
  if (problem !== undefined) {
    throw new ConfigError(
      ConfigErrorCodes.optionInvalid,
      `Invalid options for ${where}: ${problem}`,
    );
  }
}

/**
 * An option's value for people: durations with `s`, sizes in bytes with a binary-prefixed
 * approximation (`10485760 bytes (10 MiB)`), lists and strings as JSON.
 */
export function formatOptionValue(name: string, value: unknown): string {
  const unit = isOptionName(name) ? OPTIONS[name].unit : null;
  if (typeof value === 'number' && unit === 's') return `${value} s`;
  if (typeof value === 'number' && unit === 'bytes') {
    const human = humanBytes(value);
    return human === undefined ? `${value} bytes` : `${value} bytes (${human})`;
  }
  if (typeof value === 'string') return value;
  return JSON.stringify(value) ?? String(value);
}

function humanBytes(bytes: number): string | undefined {
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let size = bytes;
  let unit: string | undefined;
  for (const next of units) {
    if (size < 1024) break;
    size /= 1024;
    unit = next;
  }
  if (unit === undefined) return undefined;
  return `${Number.isInteger(size) ? size : size.toFixed(1)} ${unit}`;
}

function unitText(name: OptionName): string {
  const unit = OPTIONS[name].unit;
  if (unit === 's') return ' (seconds)';
  if (unit === 'bytes') return ' (bytes)';
  return '';
}

function describeValue(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}

function sourceText(source: OptionSource): string {
  if (source === 'profile') return "the profile's value";
  if (source === 'global') return 'the global value';
  return 'the default';
}
