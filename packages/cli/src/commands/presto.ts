import { rmSync } from 'node:fs';
import {
  type BrokerSettings,
  createProfile,
  deleteProfile,
  describeStorage,
  getConfigFilePath,
  getProfileDaemonDir,
  getRedactedBrokerUrl,
  getStorageDir,
  listProfiles,
  type Profile,
  setDefaultProfile,
  setProcessControlBackend,
} from '@aiida/config';
import type { Command } from 'commander';
import { brokerFailureReason, checkBroker, checkBrokerOfNewProfile } from '../broker-check.js';
import { globalOptions } from '../context.js';
import { CliError, ExitCodes } from '../errors.js';
import { withExamples } from '../help.js';
import { echo, echoInline, echoReport, echoSuccess, okMark } from '../output.js';
import { parseChoice, parsePort, parseSeconds } from '../parse.js';
import {
  createPostgresDatabase,
  dropPostgresDatabase,
  POSTGRES_ADMIN_DEFAULTS,
  type PostgresAdmin,
} from '../postgres-setup.js';
import { initialiseStorage } from '../storage-check.js';

interface PrestoOptions {
  /** Force the process control: `rabbitmq` or `store`; by default RabbitMQ when it answers. */
  broker?: 'rabbitmq' | 'store';
  brokerHost?: string;
  brokerPort?: number;
  brokerUsername?: string;
  brokerPassword?: string;
  brokerVirtualHost?: string;
  usePostgres?: boolean;
  postgresHostname?: string;
  postgresPort?: number;
  postgresUsername?: string;
  postgresPassword?: string;
  timeout: number;
}

/** `aiida presto`: a working profile from defaults, checked against the broker, made default. */
export function registerPrestoCommand(program: Command): void {
  const command = program
    .command('presto')
    .summary('Create a working profile with defaults, and make it the default profile.')
    .description(
      'Create a working profile with defaults: an SQLite store under $AIIDA_PATH/.aiida/storage ' +
        '(or, with --use-postgres, a PostgreSQL database and role of its own), ' +
        'and RabbitMQ at 127.0.0.1:5672 (guest/guest), or what the environment variables ' +
        'AIIDA_BROKER_HOST, AIIDA_BROKER_PORT, AIIDA_BROKER_USERNAME, AIIDA_BROKER_PASSWORD and ' +
        'AIIDA_BROKER_VIRTUAL_HOST say (the --broker-* options win over them). Without any of ' +
        'those and without --broker, RabbitMQ is used when it answers, else the profile uses ' +
        'core.store (the store is the queue, no broker to install), and says which and why. ' +
        '--broker rabbitmq|store forces one; with RabbitMQ chosen or configured, a broker that ' +
        'does not answer fails the command and nothing is left behind. The profile is named by ' +
        '-p/--profile, else `presto` (or `presto-2`, ... when taken).',
    )
    .option(
      '--broker <kind>',
      'Force the process control: rabbitmq, or store (the store is the queue, no broker). ' +
        '(default: rabbitmq when it answers, else store)',
      parseChoice(['rabbitmq', 'store']),
    )
    .option('--broker-host <host>', 'Broker host (default: $AIIDA_BROKER_HOST, else 127.0.0.1).')
    .option(
      '--broker-port <port>',
      'Broker port (default: $AIIDA_BROKER_PORT, else 5672).',
      parsePort,
    )
    .option(
      '--broker-username <name>',
      'Broker user (default: $AIIDA_BROKER_USERNAME, else guest).',
    )
    .option(
      '--broker-password <password>',
      'Broker password (default: $AIIDA_BROKER_PASSWORD, else guest).',
    )
    .option(
      '--broker-virtual-host <vhost>',
      'Broker virtual host (default: $AIIDA_BROKER_VIRTUAL_HOST, else the default one).',
    )
    .option(
      '--use-postgres',
      'Keep the processes in PostgreSQL instead of SQLite: creates a role and a database of the ' +
        "profile's own on the server of the --postgres-* options (needed to run daemons on several hosts).",
    )
    .option(
      '--postgres-hostname <host>',
      `PostgreSQL host, with --use-postgres. (default: ${POSTGRES_ADMIN_DEFAULTS.hostname})`,
    )
    .option(
      '--postgres-port <port>',
      `PostgreSQL port, with --use-postgres. (default: ${POSTGRES_ADMIN_DEFAULTS.port})`,
      parsePort,
    )
    .option(
      '--postgres-username <name>',
      'A PostgreSQL user that may create roles and databases, with --use-postgres. ' +
        `(default: ${POSTGRES_ADMIN_DEFAULTS.username})`,
    )
    .option(
      '--postgres-password <password>',
      'Password of --postgres-username, with --use-postgres. (default: none)',
    )
    .option(
      '-t, --timeout <seconds>',
      'How long to wait for the broker (and PostgreSQL) to answer, in seconds.',
      parseSeconds,
      5,
    )
    .action(async (options: PrestoOptions, cmd: Command) => {
      await presto(globalOptions(cmd).profile, options);
    });
  withExamples(command, [
    'aiida presto',
    'aiida presto --broker store',
    'aiida -p work presto',
    'AIIDA_BROKER_HOST=rabbit.local AIIDA_BROKER_PORT=5673 aiida presto',
    'aiida presto --use-postgres --postgres-hostname db.local --postgres-password secret',
  ]);
}

/**
 * Creates a profile named `requestedName` (else a free `presto[-N]`) from the broker settings of
 * the options and environment, checks the broker answers, initialises the store and makes it the
 * default. On failure nothing of the profile is left behind.
 */
export async function presto(
  requestedName: string | undefined,
  options: PrestoOptions,
): Promise<Profile> {
  const broker = brokerSettingsFromEnvironment(options);
  // Broker settings given by flag or environment say that RabbitMQ is wanted: no fallback then.
  const choice =
    options.broker ?? (Object.keys(broker).length > 0 ? ('rabbitmq' as const) : undefined);
  const name = requestedName ?? freePrestoName();
  if (!options.usePostgres) {
    const stray = (
      ['postgresHostname', 'postgresPort', 'postgresUsername', 'postgresPassword'] as const
    )
      .filter((key) => options[key] !== undefined)
      .map((key) => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
    if (stray.length > 0) {
      throw new CliError('option_invalid', `${stray.join(', ')} only apply with --use-postgres.`, {
        hint: 'Add --use-postgres to keep the processes in PostgreSQL, or drop those options.',
        exitCode: ExitCodes.usage,
      });
    }
  }
  // The database first: when it can't be made, no profile entry is written at all.
  const admin = options.usePostgres
    ? {
        hostname: options.postgresHostname ?? POSTGRES_ADMIN_DEFAULTS.hostname,
        port: options.postgresPort ?? POSTGRES_ADMIN_DEFAULTS.port,
        username: options.postgresUsername ?? POSTGRES_ADMIN_DEFAULTS.username,
        password: options.postgresPassword,
      }
    : undefined;
  const storage = admin
    ? {
        backend: 'core.psql' as const,
        config: await createPostgresDatabase(admin, name, options.timeout),
      }
    : undefined;
  let profile: Profile;
  try {
    profile = createProfile({
      name,
      broker,
      processControl: choice === 'store' ? 'core.store' : 'core.rabbitmq',
      storage,
      setDefault: false,
      pluginBaseDir: process.cwd(),
    });
  } catch (error) {
    if (storage) {
      await dropPostgresDatabase(storage.config, options.timeout, admin).catch(() => undefined);
    }
    throw error;
  }
  if (choice === 'rabbitmq') {
    await checkBrokerOfNewProfile(profile, options.timeout, {
      discard: () => removeProfileEverywhere(profile, options.timeout, admin),
      hint:
        'Is RabbitMQ running there? Point to it with AIIDA_BROKER_HOST/_PORT/_USERNAME/' +
        '_PASSWORD/_VIRTUAL_HOST or --broker-host/--broker-port, or use --broker store.',
      showVersion: true,
    });
    echoReport(
      `Process control: core.rabbitmq (${options.broker ? 'chosen with --broker rabbitmq' : 'broker settings given'}).`,
    );
  } else if (choice === 'store') {
    echoReport(
      'Process control: core.store (chosen with --broker store): the store is the queue, no broker.',
    );
  } else {
    profile = await chooseProcessControl(profile, options.timeout);
  }
  try {
    await initialiseStorage(profile);
  } catch (error) {
    await removeProfileEverywhere(profile, options.timeout, admin);
    throw error;
  }
  setDefaultProfile(name);
  echoReport(`Storage: ${describeStorage(profile.storage)}`);
  echoSuccess(`Created new profile \`${name}\` in ${getConfigFilePath(profile.aiidaPath)}.`);
  echoSuccess('Configured the new profile as default.');
  return profile;
}

/**
 * Without `--broker`: RabbitMQ when it answers at the profile's broker settings, else
 * `core.store`; says which and why.
 */
async function chooseProcessControl(profile: Profile, timeout: number): Promise<Profile> {
  const url = getRedactedBrokerUrl(profile);
  echoInline(`Checking the broker at ${url}... `);
  const check = await checkBroker(profile, timeout);
  if (check.ok) {
    echo(`${okMark()}${check.version ? ` (${check.version})` : ''}`);
    echoReport(`Process control: core.rabbitmq, since RabbitMQ answers at ${url}.`);
    return profile;
  }
  echo('no answer');
  const switched = setProcessControlBackend(profile.name, 'core.store');
  echoReport(
    `Process control: core.store (the store is the queue, no broker), since RabbitMQ at ${url} ` +
      `did not answer (${brokerFailureReason(check.error)}). Switch later with ` +
      '`aiida profile configure-broker core.rabbitmq`, or force a choice with --broker.',
  );
  return switched;
}

/** `presto`, or `presto-2`, `presto-3`, ... when taken (as `verdi presto` does). */
function freePrestoName(): string {
  const taken = new Set(listProfiles().map((p) => p.name));
  if (!taken.has('presto')) return 'presto';
  for (let i = 2; ; i += 1) if (!taken.has(`presto-${i}`)) return `presto-${i}`;
}

/** Broker settings from the `--broker-*` options, else the `AIIDA_BROKER_*` variables. */
export function brokerSettingsFromEnvironment(
  options: Partial<PrestoOptions> = {},
  env: NodeJS.ProcessEnv = process.env,
): Partial<BrokerSettings> {
  const settings: Partial<BrokerSettings> = {};
  const pick = (flag: string | undefined, variable: string): string | undefined =>
    flag ?? (env[variable] === '' ? undefined : env[variable]);
  const host = pick(options.brokerHost, 'AIIDA_BROKER_HOST');
  if (host !== undefined) settings.host = host;
  if (options.brokerPort !== undefined) settings.port = options.brokerPort;
  else if (env.AIIDA_BROKER_PORT !== undefined && env.AIIDA_BROKER_PORT !== '') {
    const port = Number(env.AIIDA_BROKER_PORT);
    if (!Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new CliError(
        'option_invalid',
        `AIIDA_BROKER_PORT='${env.AIIDA_BROKER_PORT}' is not a port number (expected 1 to 65535).`,
        {
          hint: 'Fix or unset the environment variable AIIDA_BROKER_PORT.',
          exitCode: ExitCodes.usage,
        },
      );
    }
    settings.port = port;
  }
  const username = pick(options.brokerUsername, 'AIIDA_BROKER_USERNAME');
  if (username !== undefined) settings.username = username;
  const password = pick(options.brokerPassword, 'AIIDA_BROKER_PASSWORD');
  if (password !== undefined) settings.password = password;
  const vhost = options.brokerVirtualHost ?? env.AIIDA_BROKER_VIRTUAL_HOST;
  if (vhost !== undefined) settings.virtualHost = vhost;
  return settings;
}

/**
 * Removes a profile that must not stay: its config entry, any folder made for it, and its
 * database and role (dropped as `admin`, who created them).
 */
async function removeProfileEverywhere(
  profile: Profile,
  timeout: number,
  admin: PostgresAdmin | undefined,
): Promise<void> {
  try {
    deleteProfile(profile.name);
  } catch {
    // Already gone.
  }
  rmSync(getStorageDir(profile), { recursive: true, force: true });
  rmSync(getProfileDaemonDir(profile), { recursive: true, force: true });
  if (profile.storage.backend === 'core.psql') {
    await dropPostgresDatabase(profile.storage.config, timeout, admin).catch(() => undefined);
  }
}
