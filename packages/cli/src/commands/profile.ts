import { rmSync } from 'node:fs';
import {
  type BrokerSettings,
  createProfile,
  deleteProfile,
  describeStorage,
  formatOptionValue,
  getConfigDir,
  getDaemonDir,
  getDefaultProfileName,
  getProfile,
  getProfileDaemonDir,
  getRedactedBrokerUrl,
  getStorageDir,
  importAiidaProfile,
  isConfigError,
  listProfiles,
  PROCESS_CONTROL_BACKENDS,
  type ProcessControlBackend,
  type Profile,
  type PsqlStorageConfig,
  setDefaultProfile,
  setProcessControlBackend,
} from '@aiida/config';
import type { Command } from 'commander';
import { checkBrokerOfNewProfile, deleteBrokerTopology } from '../broker-check.js';
import { confirm } from '../confirm.js';
import { globalOptions } from '../context.js';
import { isDaemonRunning } from '../daemon-access.js';
import { CliError, ExitCodes } from '../errors.js';
import { withExamples } from '../help.js';
import { echo, echoJson, echoReport, echoSuccess, echoWarning, paint } from '../output.js';
import { parseChoice, parseKeyValue, parsePort, parseSeconds } from '../parse.js';
import { dropPostgresDatabase } from '../postgres-setup.js';
import { initialiseStorage } from '../storage-check.js';

/** `aiida profile list|show|setup|import-aiida|set-default|configure-broker|delete`. */
export function registerProfileCommands(program: Command): void {
  const group = program
    .command('profile')
    .summary('Inspect and manage the profiles.')
    .description(
      'Inspect and manage the profiles of $AIIDA_PATH/.aiida/aiida-ts.json. A profile is one ' +
        'independent installation: its store, its broker settings, its daemon and its options.',
    );
  withExamples(group, [
    'aiida profile list',
    'aiida profile show',
    'aiida profile import-aiida research',
    'aiida profile set-default work',
  ]);

  const list = group
    .command('list')
    .description('List the profiles; the default one is marked with `*`.')
    .option('--json', 'Print the profiles as JSON.')
    .action((options: { json?: boolean }) => {
      const profiles = listProfiles();
      const defaultName = getDefaultProfileName();
      if (options.json) {
        echoJson(profiles.map((p) => ({ ...redactedProfile(p), default: p.name === defaultName })));
        return;
      }
      echoReport(`configuration folder: ${getConfigDir()}`);
      if (profiles.length === 0) {
        echoWarning('no profiles configured: run `aiida presto` to create one.');
        return;
      }
      for (const profile of profiles) {
        echo(
          profile.name === defaultName
            ? `${paint('*', 'green')} ${paint(profile.name, 'bold')}`
            : `  ${profile.name}`,
        );
      }
    });
  withExamples(list, ['aiida profile list', 'aiida profile list --json']);

  const show = group
    .command('show')
    .description('Show the settings of a profile (the password redacted).')
    .argument('[name]', 'The profile (default: -p/--profile, else the default profile).')
    .option('--json', 'Print the profile as JSON.')
    .action((name: string | undefined, options: { json?: boolean }, cmd: Command) => {
      const profile = getProfile(name ?? globalOptions(cmd).profile);
      const isDefault = getDefaultProfileName() === profile.name;
      if (options.json) {
        echoJson({ ...redactedProfile(profile), default: isDefault });
        return;
      }
      echoReport(`Profile: ${profile.name}${isDefault ? ' (default)' : ''}`);
      const broker = profile.broker.config;
      const lines: [string, string][] = [
        ['uuid', profile.uuid],
        ['storage', `${profile.storage.backend} (${describeStorage(profile.storage)})`],
        [
          'broker',
          profile.broker.backend === 'core.store'
            ? `core.store (the store is the queue; kept to switch back: ${getRedactedBrokerUrl(profile)})`
            : `${profile.broker.backend} ${getRedactedBrokerUrl(profile)}`,
        ],
        ['broker queue type', broker.queueType],
        ['plugin base dir', profile.pluginBaseDir],
        ['daemon folder', getDaemonDir(profile)],
      ];
      const width = Math.max(...lines.map(([key]) => key.length)) + 1;
      for (const [key, value] of lines) echo(`${`${key}:`.padEnd(width)} ${value}`);
      const options_ = Object.entries(profile.options);
      echo(`options:${options_.length === 0 ? ' (none set; see `aiida config list`)' : ''}`);
      for (const [option, value] of options_) {
        echo(`  ${option}: ${formatOptionValue(option, value)}`);
      }
    });
  withExamples(show, ['aiida profile show', 'aiida profile show work --json']);

  const setup = group
    .command('setup')
    .description(
      'Create a profile with explicit settings, without prompting. Unlike `aiida presto` it ' +
        'reads no environment variables and checks the broker only with --check.',
    )
    .argument('<name>', 'Name of the new profile (letters, digits, ., _ and -).')
    .option('--broker-protocol <protocol>', 'amqp or amqps.', parseChoice(['amqp', 'amqps']))
    .option('--broker-host <host>', 'Broker host. (default: 127.0.0.1)')
    .option('--broker-port <port>', 'Broker port. (default: 5672)', parsePort)
    .option('--broker-username <name>', 'Broker user. (default: guest)')
    .option('--broker-password <password>', 'Broker password. (default: guest)')
    .option('--broker-virtual-host <vhost>', 'Broker virtual host. (default: the default one)')
    .option(
      '--broker-queue-type <type>',
      'Type of the process queue, fixed once created: classic or quorum. (default: classic)',
      parseChoice(['classic', 'quorum']),
    )
    .option(
      '--storage-backend <backend>',
      'Where processes are stored: core.sqlite (a file under $AIIDA_PATH) or core.psql (an ' +
        'existing PostgreSQL database, given by the --database-* options). (default: core.sqlite)',
      parseChoice(['core.sqlite', 'core.psql']),
    )
    .option('--database-hostname <host>', 'core.psql: PostgreSQL host. (default: localhost)')
    .option('--database-port <port>', 'core.psql: PostgreSQL port. (default: 5432)', parsePort)
    .option('--database-username <name>', 'core.psql: the role the daemon logs in as.')
    .option('--database-password <password>', 'core.psql: its password. (default: none)')
    .option('--database-name <name>', 'core.psql: the database (it must exist).')
    .option(
      '--plugin-base-dir <dir>',
      'Folder that plugin modules are resolved from. (default: the current folder)',
    )
    .option(
      '-o, --option <name=value>',
      'Set an option on the profile (repeatable; see `aiida config list`).',
      parseKeyValue,
    )
    .option('--set-default', 'Make it the default profile.')
    .option('--check', 'Check that the broker answers; on failure nothing is created.')
    .option('-t, --timeout <seconds>', 'How long --check waits for the broker.', parseSeconds, 5)
    .action(async (name: string, options: SetupOptions) => {
      const broker: Partial<BrokerSettings> = {};
      if (options.brokerProtocol) broker.protocol = options.brokerProtocol;
      if (options.brokerHost) broker.host = options.brokerHost;
      if (options.brokerPort) broker.port = options.brokerPort;
      if (options.brokerUsername !== undefined) broker.username = options.brokerUsername;
      if (options.brokerPassword !== undefined) broker.password = options.brokerPassword;
      if (options.brokerVirtualHost !== undefined) broker.virtualHost = options.brokerVirtualHost;
      if (options.brokerQueueType) broker.queueType = options.brokerQueueType;
      const storage = storageFromSetupOptions(options);
      const profile = createProfile({
        name,
        broker,
        storage,
        pluginBaseDir: options.pluginBaseDir ?? process.cwd(),
        options: options.option ?? {},
        setDefault: false,
      });
      if (options.check) {
        await checkBrokerOfNewProfile(profile, options.timeout, {
          discard: () => deleteProfile(name),
          hint: 'Check --broker-host and --broker-port, and that RabbitMQ is running.',
          showVersion: false,
        });
      }
      try {
        await initialiseStorage(profile);
      } catch (error) {
        // A database that can't be reached or used leaves no profile behind.
        deleteProfile(name);
        throw error;
      }
      if (options.setDefault) setDefaultProfile(name);
      echoSuccess(`Created new profile \`${name}\`.`);
      if (options.setDefault || getDefaultProfileName() === name) {
        echoSuccess(`\`${name}\` is the default profile.`);
      }
    });
  withExamples(setup, [
    'aiida profile setup work --broker-host 10.0.0.5 --set-default',
    'aiida profile setup ci -o daemon.default_workers=2 -o daemon.timeout=20 --check',
    'aiida profile setup shared --storage-backend core.psql --database-hostname db.local ' +
      '--database-username aiida --database-password secret --database-name aiida',
  ]);

  const importAiida = group
    .command('import-aiida')
    .description(
      "Create a profile that uses the RabbitMQ of one of Python AiiDA's profiles: its broker " +
        'settings (protocol, user, password, host, port, virtual host, parameters) are copied from ' +
        "AiiDA's $AIIDA_PATH/.aiida/config.json, which is only read. An AiiDA profile without a " +
        'broker (process_control.backend null, as `verdi presto` makes without RabbitMQ) gives a ' +
        "core.store profile: the store is the queue, no broker. The rest is a new profile's " +
        'default (an SQLite store of its own).',
    )
    .argument('[aiida-profile]', "AiiDA's profile (default: AiiDA's default profile).")
    .option('--as <name>', "Name of the new profile. (default: the AiiDA profile's name)")
    .option(
      '--broker-queue-type <type>',
      'Type of the process queue, fixed once created: classic or quorum. (default: classic)',
      parseChoice(['classic', 'quorum']),
    )
    .option(
      '--plugin-base-dir <dir>',
      'Folder that plugin modules are resolved from. (default: the current folder)',
    )
    .option('--set-default', 'Make it the default profile.')
    .option('--check', 'Check that the broker answers; on failure nothing is created.')
    .option('-t, --timeout <seconds>', 'How long --check waits for the broker.', parseSeconds, 5)
    .action(async (aiidaProfile: string | undefined, options: ImportAiidaOptions) => {
      const { profile, source } = importFromAiida(aiidaProfile, options);
      if (options.check && source.broker !== null) {
        await checkBrokerOfNewProfile(profile, options.timeout, {
          discard: () => deleteProfile(profile.name),
          hint: "Is AiiDA's RabbitMQ running? `verdi status` checks it from AiiDA's side.",
          showVersion: false,
        });
      }
      await initialiseStorage(profile);
      if (options.setDefault) setDefaultProfile(profile.name);
      const from =
        `AiiDA profile \`${source.profile}\` ` +
        `(${source.filePath}, config version ${source.configVersion})`;
      if (source.broker === null) {
        echoSuccess(`Created new profile \`${profile.name}\` from ${from}.`);
        echoReport(
          `Process control: core.store (AiiDA profile \`${source.profile}\` has no broker: its ` +
            'process_control.backend is null): the store is the queue, no broker' +
            `${options.check ? ', so there is no broker to check' : ''}. ` +
            '`aiida profile configure-broker core.rabbitmq` switches it to RabbitMQ.',
        );
      } else {
        echoSuccess(
          `Created new profile \`${profile.name}\` with the broker of ${from}: ` +
            `${getRedactedBrokerUrl(profile)}.`,
        );
      }
      if (options.setDefault || getDefaultProfileName() === profile.name) {
        echoSuccess(`\`${profile.name}\` is the default profile.`);
      }
    });
  withExamples(importAiida, [
    'aiida profile import-aiida',
    'aiida profile import-aiida research --as research-ts --check --set-default',
  ]);

  const setDefault = group
    .command('set-default')
    .description('Make a profile the default one.')
    .argument('<name>', 'The profile.')
    .action((name: string) => {
      setDefaultProfile(name);
      echoSuccess(`\`${name}\` is now the default profile.`);
    });
  withExamples(setDefault, ['aiida profile set-default work']);

  const configureBroker = group
    .command('configure-broker')
    .description(
      'Switch how work reaches the workers of a profile: core.store (the store is the queue; ' +
        'no broker) or core.rabbitmq (through RabbitMQ, whose settings are kept while the ' +
        "profile uses the store). Refused while the profile's daemon runs.",
    )
    .argument(
      '<backend>',
      'core.store or core.rabbitmq.',
      parseChoice([...PROCESS_CONTROL_BACKENDS]),
    )
    .argument('[name]', 'The profile (default: -p/--profile, else the default profile).')
    .action(async (backend: ProcessControlBackend, name: string | undefined, _o, cmd: Command) => {
      const profile = getProfile(name ?? globalOptions(cmd).profile);
      if (profile.broker.backend === backend) {
        echoReport(`Profile \`${profile.name}\` already uses ${backend}; nothing changed.`);
        return;
      }
      if (await isDaemonRunning(profile)) {
        throw new CliError(
          'daemon_running',
          `The daemon of profile '${profile.name}' is running with ${profile.broker.backend}; ` +
            `its workers would keep taking work that way, so the profile was not switched to ${backend}.`,
          { hint: `Stop it first: \`aiida -p ${profile.name} daemon stop\`, then run this again.` },
        );
      }
      const switched = setProcessControlBackend(profile.name, backend);
      echoSuccess(
        backend === 'core.store'
          ? `Profile \`${profile.name}\` now uses core.store: the store is the queue, no broker.`
          : `Profile \`${profile.name}\` now uses core.rabbitmq at ${getRedactedBrokerUrl(switched)}.`,
      );
    });
  withExamples(configureBroker, [
    'aiida profile configure-broker core.store',
    'aiida profile configure-broker core.rabbitmq work',
  ]);

  const del = group
    .command('delete')
    .description(
      'Delete profiles from the config. Their store and daemon folders stay on disk unless ' +
        '--delete-data is given. Refuses a profile whose daemon is running.',
    )
    .argument('<name...>', 'The profiles to delete.')
    .option(
      '--delete-data',
      "Also delete the profiles' store (SQLite file or PostgreSQL database) and daemon folders, " +
        'and their queues on the broker.',
    )
    .option('-y, --yes', 'Do not ask for confirmation.')
    .action(async (names: string[], options: { deleteData?: boolean; yes?: boolean }) => {
      const profiles = names.map((name) => getProfile(name));
      for (const profile of profiles) {
        if (await isDaemonRunning(profile)) {
          throw new CliError(
            'daemon_running',
            `The daemon of profile '${profile.name}' is running; it was not deleted.`,
            { hint: `Stop it first: \`aiida -p ${profile.name} daemon stop\`.` },
          );
        }
      }
      const what = options.deleteData ? 'and all their data ' : '';
      const ok = await confirm(`Delete the profiles ${names.join(', ')} ${what}?`, !!options.yes);
      if (!ok) {
        echoReport('Nothing was deleted.');
        return;
      }
      for (const profile of profiles) {
        deleteProfile(profile.name);
        if (options.deleteData) {
          if (profile.broker.backend === 'core.rabbitmq') await deleteBrokerTopology(profile);
          if (profile.storage.backend === 'core.psql') {
            const dropped = await dropPostgresDatabase(profile.storage.config, 10);
            echoReport(
              `Dropped the PostgreSQL ${dropped.join(' and ')}; the role ` +
                `${profile.storage.config.database_username} stays (a superuser may DROP ROLE it).`,
            );
          }
          rmSync(getStorageDir(profile), { recursive: true, force: true });
          rmSync(getProfileDaemonDir(profile), { recursive: true, force: true });
          echoSuccess(`Deleted profile \`${profile.name}\` and its data.`);
        } else {
          echoSuccess(
            `Deleted profile \`${profile.name}\`; its data stays in ${getStorageDir(profile)}.`,
          );
        }
      }
    });
  withExamples(del, ['aiida profile delete old -y', 'aiida profile delete a b --delete-data -y']);
}

interface SetupOptions {
  brokerProtocol?: 'amqp' | 'amqps';
  brokerHost?: string;
  brokerPort?: number;
  brokerUsername?: string;
  brokerPassword?: string;
  brokerVirtualHost?: string;
  brokerQueueType?: 'classic' | 'quorum';
  storageBackend?: 'core.sqlite' | 'core.psql';
  databaseHostname?: string;
  databasePort?: number;
  databaseUsername?: string;
  databasePassword?: string;
  databaseName?: string;
  pluginBaseDir?: string;
  option?: Record<string, unknown>;
  setDefault?: boolean;
  check?: boolean;
  timeout: number;
}

interface ImportAiidaOptions {
  as?: string;
  brokerQueueType?: 'classic' | 'quorum';
  pluginBaseDir?: string;
  setDefault?: boolean;
  check?: boolean;
  timeout: number;
}

/** {@link importAiidaProfile} with hints for the command line on the errors it can throw. */
function importFromAiida(
  aiidaProfile: string | undefined,
  options: ImportAiidaOptions,
): ReturnType<typeof importAiidaProfile> {
  try {
    return importAiidaProfile({
      aiidaProfile,
      name: options.as,
      queueType: options.brokerQueueType,
      pluginBaseDir: options.pluginBaseDir ?? process.cwd(),
      // As createProfile: the first profile becomes the default; --set-default waits for --check.
    });
  } catch (error) {
    if (!isConfigError(error) || error.code === 'profile_exists') throw error;
    const hints: Record<string, string> = {
      config_unreadable:
        'Point AIIDA_PATH at the folder `verdi` uses (`verdi status` shows its config folder).',
      config_invalid: "Check AiiDA's config file with `verdi status`; nothing was imported.",
      profile_not_found: "See AiiDA's profiles with `verdi profile list`.",
      profile_without_broker:
        "Give AiiDA's profile a RabbitMQ first, or create one of ours with `aiida presto`.",
    };
    throw new CliError(error.code, error.message, { hint: hints[error.code], cause: error });
  }
}

/** The `storage` of `profile setup`: none for SQLite, the `--database-*` fields for core.psql. */
function storageFromSetupOptions(
  options: SetupOptions,
): { backend: 'core.psql'; config: PsqlStorageConfig } | undefined {
  const fields = [
    ['databaseHostname', '--database-hostname'],
    ['databasePort', '--database-port'],
    ['databaseUsername', '--database-username'],
    ['databasePassword', '--database-password'],
    ['databaseName', '--database-name'],
  ] as const;
  if (options.storageBackend !== 'core.psql') {
    const stray = fields.filter(([key]) => options[key] !== undefined).map(([, flag]) => flag);
    if (stray.length > 0) {
      throw new CliError(
        'option_invalid',
        `${stray.join(', ')} only apply with --storage-backend core.psql.`,
        {
          hint: 'Add --storage-backend core.psql, or drop those options.',
          exitCode: ExitCodes.usage,
        },
      );
    }
    return undefined;
  }
  const missing = [
    options.databaseUsername === undefined ? '--database-username' : undefined,
    options.databaseName === undefined ? '--database-name' : undefined,
  ].filter((flag) => flag !== undefined);
  if (missing.length > 0) {
    throw new CliError(
      'option_invalid',
      `--storage-backend core.psql needs ${missing.join(' and ')}: the role and the database ` +
        'the daemon uses (the database must exist).',
      {
        hint: 'Or let `aiida presto --use-postgres` create a role and a database for the profile.',
        exitCode: ExitCodes.usage,
      },
    );
  }
  return {
    backend: 'core.psql',
    config: {
      database_hostname: options.databaseHostname ?? 'localhost',
      database_port: options.databasePort ?? 5432,
      database_username: options.databaseUsername!,
      database_password: options.databasePassword ?? '',
      database_name: options.databaseName!,
    },
  };
}

/** A profile as JSON for people and scripts: the broker and database passwords replaced by `***`. */
function redactedProfile(profile: Profile): Record<string, unknown> {
  const storage =
    profile.storage.backend === 'core.psql'
      ? { ...profile.storage, config: { ...profile.storage.config, database_password: '***' } }
      : profile.storage;
  return {
    ...profile,
    storage,
    broker: {
      ...profile.broker,
      config: { ...profile.broker.config, password: '***' },
      url: getRedactedBrokerUrl(profile),
    },
  };
}
