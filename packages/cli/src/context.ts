import { getProfile, type Profile } from '@aiida/config';
import type { Command } from 'commander';

/** Options of the root `aiida` command that every subcommand sees. */
export interface GlobalOptions {
  /** `-p/--profile NAME`: the profile to act on. */
  profile?: string;
}

/** The global options as seen from `command` (wherever on the line they were given). */
export function globalOptions(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

/**
 * The profile a command acts on: `-p/--profile`, else `AIIDA_PROFILE`, else the default profile
 * of `$AIIDA_PATH/.aiida/aiida-ts.json`. Throws `ConfigError` `profile_not_found`.
 */
export function loadProfile(command: Command): Profile {
  return getProfile(globalOptions(command).profile);
}
