import { type ConfigLocationOptions, readConfig, updateConfig } from './config-file.js';
import type { ConfigFile } from './config-schema.js';
import { ConfigError, ConfigErrorCodes } from './errors.js';
import {
  assertOptionName,
  leaseRuleProblem,
  type OptionSource,
  parseOptionValue,
  resolveOptionValue,
} from './option-values.js';
import {
  OPTION_NAMES,
  OPTIONS,
  type OptionName,
  type OptionScope,
  type OptionUnit,
  type OptionValue,
} from './options.js';
import { getConfigFilePath, resolveAiidaPath } from './paths.js';
import { type Profile, requireProfile } from './profiles.js';

/** Options of {@link getOption} and {@link listOptionValues}. */
export interface GetOptionOptions extends ConfigLocationOptions {
  /**
   * The profile whose overrides apply: a loaded {@link Profile} (its `options` and `aiidaPath`
   * are used) or a profile name. Without it only global values and defaults apply.
   */
  profile?: Profile | string;
}

/** Options of {@link setOption} and {@link unsetOption}. */
export interface SetOptionOptions extends ConfigLocationOptions {
  /** Name of the profile to change; without it the global value changes. */
  profile?: string;
}

/** One option with its resolved value, for listings such as `aiida config list`. */
export interface ResolvedOption {
  name: OptionName;
  value: unknown;
  /** Where the value came from. */
  source: OptionSource;
  unit: OptionUnit;
  default: unknown;
  description: string;
  needsRestart: boolean;
  scope: OptionScope;
}

/**
 * The value of option `name`: the profile's override, else the global value, else the default.
 * Throws {@link ConfigError} `option_unknown` for an unknown name, and `option_invalid` when the
 * resolved `daemon.lease_timeout` is less than 3 × `daemon.worker_heartbeat_interval`.
 */
export function getOption<N extends OptionName>(
  name: N,
  opts: GetOptionOptions = {},
): OptionValue<N> {
  assertOptionName(name);
  const { profileOptions, globalOptions, where } = loadScopes(opts);
  if (name === 'daemon.lease_timeout' || name === 'daemon.worker_heartbeat_interval') {
    const problem = leaseRuleProblem(profileOptions, globalOptions);
    if (problem !== undefined) {
      throw new ConfigError(
        ConfigErrorCodes.optionInvalid,
        `The options of ${where} break a rule: ${problem}`,
        { filePath: getConfigFilePath(aiidaPathOf(opts)) },
      );
    }
  }
  return resolveOptionValue(name, profileOptions, globalOptions).value;
}

/**
 * Every option with its resolved value and where it came from, in registry order. Values are not
 * checked against the lease/heartbeat rule here; {@link getOption} does that.
 */
export function listOptionValues(opts: GetOptionOptions = {}): ResolvedOption[] {
  const { profileOptions, globalOptions } = loadScopes(opts);
  return OPTION_NAMES.map((name) => {
    const definition = OPTIONS[name];
    const { value, source } = resolveOptionValue(name, profileOptions, globalOptions);
    return {
      name,
      value,
      source,
      unit: definition.unit,
      default: structuredClone(definition.default),
      description: definition.description,
      needsRestart: definition.needsRestart,
      scope: definition.scope,
    };
  });
}

/**
 * Sets option `name` globally, or on `opts.profile`. The value is checked with the option's type
 * (command-line strings such as `'30'` are accepted, see {@link parseOptionValue}) and against the
 * lease/heartbeat rule for every profile it affects. Throws {@link ConfigError} `option_unknown`
 * (suggesting the closest name), `option_invalid` or `profile_not_found`.
 */
export function setOption(name: string, value: unknown, opts: SetOptionOptions = {}): void {
  const checked = parseOptionValue(name, value, opts.profile === undefined ? 'global' : 'profile');
  changeOptions(opts, (options) => {
    options[name] = checked;
  });
}

/**
 * Removes option `name` from the global options, or from `opts.profile`'s overrides, so the next
 * level applies again. Unsetting a value that isn't set does nothing. Throws like
 * {@link setOption}.
 */
export function unsetOption(name: string, opts: SetOptionOptions = {}): void {
  assertOptionName(name);
  changeOptions(opts, (options) => {
    delete options[name];
  });
}

function changeOptions(
  opts: SetOptionOptions,
  change: (options: Record<string, unknown>) => void,
): void {
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  updateConfig(
    (config) => {
      const before = leaseProblems(config);
      let target: Record<string, unknown>;
      if (opts.profile === undefined) {
        target = config.options;
      } else {
        requireProfile(config, opts.profile, aiidaPath);
        target = (config.profiles[opts.profile] as { options: Record<string, unknown> }).options;
      }
      change(target);
      const after = leaseProblems(config);
      for (const [where, problem] of after) {
        // Only refuse what this change breaks; a pair that was already broken is reported by
        // getOption, and must not block fixing something else.
        if (before.get(where) !== problem) {
          throw new ConfigError(
            ConfigErrorCodes.optionInvalid,
            `Refusing this change: for ${where}, ${problem}`,
            { filePath: getConfigFilePath(aiidaPath) },
          );
        }
      }
    },
    { aiidaPath },
  );
}

/** The lease/heartbeat problem of every scope (global, each profile) that has one. */
function leaseProblems(config: ConfigFile): Map<string, string> {
  const problems = new Map<string, string>();
  const globalProblem = leaseRuleProblem(undefined, config.options);
  if (globalProblem !== undefined) problems.set('the global options', globalProblem);
  for (const [name, profile] of Object.entries(config.profiles)) {
    const problem = leaseRuleProblem(profile.options, config.options);
    if (problem !== undefined) problems.set(`profile '${name}'`, problem);
  }
  return problems;
}

function loadScopes(opts: GetOptionOptions): {
  profileOptions: Record<string, unknown> | undefined;
  globalOptions: Record<string, unknown>;
  where: string;
} {
  const aiidaPath = aiidaPathOf(opts);
  const config = readConfig({ aiidaPath });
  if (opts.profile === undefined) {
    return {
      profileOptions: undefined,
      globalOptions: config.options,
      where: 'the global options',
    };
  }
  const profile =
    typeof opts.profile === 'string'
      ? requireProfile(config, opts.profile, aiidaPath)
      : opts.profile;
  return {
    profileOptions: profile.options,
    globalOptions: config.options,
    where: `profile '${profile.name}'`,
  };
}

function aiidaPathOf(opts: GetOptionOptions): string {
  const fromProfile = typeof opts.profile === 'object' ? opts.profile.aiidaPath : undefined;
  return resolveAiidaPath(opts.aiidaPath ?? fromProfile);
}
