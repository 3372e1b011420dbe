import { getProfile, type Profile } from '@aiida/config';
import type { Command } from 'commander';

/** Options of the root `aiida` command that every subcommand sees. */
export interface GlobalOptions {
  /** `-p/--profile NAME`: the profile to act on. */
  profile?: string;
}

/**
 * The global options as seen from `command`: `-p/--profile` given after the subcommand (every
 * command takes it, except where `-p` means something else, as `process list -p DAYS` in verdi),
 * else before it (`aiida -p NAME ...`).
 */
export function globalOptions(command: Command): GlobalOptions {
  for (let current: Command | null = command; current !== null; current = current.parent) {
    const profile = current.getOptionValue('profile') as string | undefined;
    if (profile !== undefined) return { profile };
  }
  return {};
}

/**
 * The profile a command acts on: `-p/--profile`, else `AIIDA_PROFILE`, else the default profile
 * of `$AIIDA_PATH/.aiida/aiida-ts.json`. Throws `ConfigError` `profile_not_found`.
 */
export function loadProfile(command: Command): Profile {
  return getProfile(globalOptions(command).profile);
}
