import { ConfigError, ConfigErrorCodes } from './errors.js';

/**
 * What a profile name may look like: it becomes a folder name (`daemon/<name>`,
 * `storage/<name>`) and part of broker names, so only safe file-name characters.
 */
export const PROFILE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Why `name` is not a valid profile name, or undefined when it is. */
export function profileNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `a profile name must be a string, got ${typeof name}`;
  if (name === '.' || name === '..') return `'${name}' is not allowed`;
  if (!PROFILE_NAME_PATTERN.test(name)) {
    return 'use 1 to 64 letters, digits, dots, underscores or hyphens, starting with a letter or digit';
  }
  return undefined;
}

/** Throws {@link ConfigError} `profile_name_invalid` unless `name` is a safe profile name. */
export function assertValidProfileName(name: unknown): asserts name is string {
  const problem = profileNameProblem(name);
  if (problem !== undefined) {
    throw new ConfigError(
      ConfigErrorCodes.profileNameInvalid,
      `Invalid profile name ${JSON.stringify(name)}: ${problem}.`,
    );
  }
}
