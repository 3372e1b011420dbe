import {
  assertOptionName,
  formatOptionValue,
  isOptionName,
  listOptionValues,
  OPTIONS,
  type Profile,
  type ResolvedOption,
  setOption,
  unsetOption,
} from '@aiida/config';
import type { Command } from 'commander';
import { globalOptions, loadProfile } from '../context.js';
import { isDaemonRunning } from '../daemon-access.js';
import { codeOf } from '../errors.js';
import { formatValue } from '../format.js';
import { withExamples } from '../help.js';
import { echo, echoJson, echoReport, echoSuccess, echoWarning, paint } from '../output.js';
import { formatTable } from '../table.js';

interface ScopeOptions {
  global?: boolean;
  json?: boolean;
}

const UNIT_NAMES: Record<string, string> = { s: 'seconds', bytes: 'bytes' };

/** `aiida config list|get|set|unset [--global]`. */
export function registerConfigCommands(program: Command): void {
  const group = program
    .command('config')
    .summary('Inspect and change options, globally or for a profile.')
    .description(
      "Inspect and change options. A profile's value wins over the global value, which wins " +
        'over the default. Durations are in seconds, sizes in bytes.',
    );
  withExamples(group, [
    'aiida config list',
    'aiida config set daemon.default_workers 2',
    'aiida config set --global daemon.timeout 20',
    'aiida config unset daemon.default_workers',
  ]);

  const list = group
    .command('list')
    .description(
      'List every option with its value, where the value comes from (profile, global or ' +
        'default), its default, unit and description.',
    )
    .option('--global', 'Show the global values only, ignoring the profile.')
    .option('--json', 'Print the options as JSON.')
    .action((options: ScopeOptions, cmd: Command) => {
      const profile = scopeProfile(cmd, options, true);
      const values = listOptionValues(profile === undefined ? {} : { profile });
      if (options.json) {
        echoJson(values);
        return;
      }
      echoReport(
        profile === undefined
          ? 'global options (a profile may override them)'
          : `options of profile \`${profile.name}\``,
      );
      const rows = values.map((option) => [
        option.name,
        option.source === 'default' ? paint(option.source, 'dim') : option.source,
        formatOptionValue(option.name, option.value),
        formatOptionValue(option.name, option.default),
        describe(option),
      ]);
      echo(formatTable(['name', 'source', 'value', 'default', 'description'], rows));
    });
  withExamples(list, [
    'aiida config list',
    'aiida config list --global',
    'aiida config list --json',
  ]);

  const get = group
    .command('get')
    .description(
      'Print the value of an option for the profile (or, with --global, the global value).',
    )
    .argument('<name>', 'The option, e.g. daemon.timeout.')
    .option('--global', 'The global value, ignoring the profile.')
    .option('--json', 'Print value, source, unit, default and description as JSON.')
    .action((name: string, options: ScopeOptions, cmd: Command) => {
      assertOptionName(name);
      const profile = scopeProfile(cmd, options, true);
      const option = listOptionValues(profile === undefined ? {} : { profile }).find(
        (o) => o.name === name,
      ) as ResolvedOption;
      if (options.json) echoJson(option);
      else echo(formatValue(option.value));
    });
  withExamples(get, ['aiida config get daemon.timeout', 'aiida config get engine.plugins --json']);

  const set = group
    .command('set')
    .description(
      'Set an option on the profile, or with --global for every profile. The value is checked ' +
        'against the option type; JSON is accepted (`["my-plugin"]` for a list).',
    )
    .argument('<name>', 'The option, e.g. daemon.timeout.')
    .argument('<value>', 'The new value.')
    .option('--global', 'Set the global value instead of the profile’s.')
    .action(async (name: string, value: string, options: ScopeOptions, cmd: Command) => {
      const profile = scopeProfile(cmd, options, false);
      setOption(name, value, profile === undefined ? {} : { profile: profile.name });
      const resolved = listOptionValues(
        profile === undefined ? {} : { profile: profile.name },
      ).find((o) => o.name === name);
      echoSuccess(
        `'${name}' set to ${formatOptionValue(name, resolved?.value)} ${where(profile)}.`,
      );
      await warnIfRestartNeeded(name, profile);
    });
  withExamples(set, [
    'aiida config set daemon.worker_process_slots 50',
    'aiida config set --global daemon.timeout 20',
    `aiida config set engine.plugins '["./my-plugin.js"]'`,
  ]);

  const unset = group
    .command('unset')
    .description('Remove an option from the profile (or with --global, the global value).')
    .argument('<name>', 'The option, e.g. daemon.timeout.')
    .option('--global', 'Unset the global value instead of the profile’s.')
    .action(async (name: string, options: ScopeOptions, cmd: Command) => {
      const profile = scopeProfile(cmd, options, false);
      unsetOption(name, profile === undefined ? {} : { profile: profile.name });
      echoSuccess(`'${name}' unset ${where(profile)}.`);
      await warnIfRestartNeeded(name, profile);
    });
  withExamples(unset, [
    'aiida config unset daemon.timeout',
    'aiida config unset --global daemon.timeout',
  ]);
}

/**
 * The profile a config command works on, or undefined for the global options: with `--global`,
 * or (for reading only) when no profile exists yet and none was named.
 */
function scopeProfile(
  cmd: Command,
  options: ScopeOptions,
  globalIfNoProfile: boolean,
): Profile | undefined {
  if (options.global) return undefined;
  try {
    return loadProfile(cmd);
  } catch (error) {
    if (
      globalIfNoProfile &&
      codeOf(error) === 'profile_not_found' &&
      globalOptions(cmd).profile === undefined &&
      !process.env.AIIDA_PROFILE
    ) {
      return undefined;
    }
    throw error;
  }
}

function where(profile: Profile | undefined): string {
  return profile === undefined ? 'globally' : `for profile \`${profile.name}\``;
}

function describe(option: ResolvedOption): string {
  const unit = option.unit === null ? '' : ` [${UNIT_NAMES[option.unit] ?? option.unit}]`;
  const restart = option.needsRestart ? ' (daemon restart needed)' : '';
  return `${option.description}${unit}${restart}`;
}

async function warnIfRestartNeeded(name: string, profile: Profile | undefined): Promise<void> {
  if (!isOptionName(name) || !OPTIONS[name].needsRestart) return;
  if (profile !== undefined && !(await isDaemonRunning(profile))) return;
  echoWarning(
    `a running daemon only picks up '${name}' after \`aiida daemon restart\`${
      profile === undefined ? ' (for each profile whose daemon runs)' : ''
    }.`,
  );
}
