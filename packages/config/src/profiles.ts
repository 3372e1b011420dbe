import { randomUUID } from 'node:crypto';
import { join, resolve } from 'node:path';
import {
  type BrokerSettings,
  brokerSettingsFromFile,
  brokerSettingsSchema,
  brokerSettingsToFile,
  defaultBrokerSettings,
} from './broker-settings.js';
import { type ConfigLocationOptions, readConfig, updateConfig } from './config-file.js';
import { type ConfigFile, type ProfileFile, psqlStorageConfigSchema } from './config-schema.js';
import { ConfigError, ConfigErrorCodes } from './errors.js';
import { formatProblems, zodIssuesToProblems } from './format-issues.js';
import { findLegacyProfiles } from './legacy-config.js';
import { assertLeaseRule, parseOptionValue } from './option-values.js';
import {
  CONFIG_FILE_NAME,
  getAiidaConfigFilePath,
  getConfigFilePath,
  getStorageDir,
  resolveAiidaPath,
} from './paths.js';
import { assertValidProfileName } from './profile-name.js';

/** A `core.psql` profile's database (AiiDA's key names). */
export interface PsqlStorageConfig {
  database_hostname: string;
  database_port: number;
  database_username: string;
  /** Never print it: use {@link describeStorage}. */
  database_password: string;
  database_name: string;
}

/** Where a profile's processes are stored (AiiDA's `storage` block). */
export type StorageSettings =
  | { backend: 'core.sqlite'; config: { filepath: string } }
  | { backend: 'core.psql'; config: PsqlStorageConfig };

/** The storage of a profile in words, for output and logs: never the password. */
export function describeStorage(storage: StorageSettings): string {
  if (storage.backend === 'core.sqlite') return `SQLite at ${storage.config.filepath}`;
  const c = storage.config;
  return `PostgreSQL ${c.database_username}@${c.database_hostname}:${c.database_port}/${c.database_name}`;
}

/**
 * How work reaches a profile's workers: `core.rabbitmq` (tasks and control RPC through RabbitMQ)
 * or `core.store` (workers claim runnable rows straight from the store and are woken through it;
 * no broker).
 */
export type ProcessControlBackend = 'core.rabbitmq' | 'core.store';

/** The process control backends, in the order `aiida presto` tries them. */
export const PROCESS_CONTROL_BACKENDS: readonly ProcessControlBackend[] = [
  'core.rabbitmq',
  'core.store',
];

/** A profile: one independent AiiDA installation (its storage, broker, daemon and options). */
export interface Profile {
  /** Unique name, a safe file name. */
  name: string;
  /** UUID given at creation; the broker prefix is `aiida-<uuid>`. */
  uuid: string;
  /** Where its processes are stored: an SQLite file (the default) or a PostgreSQL database. */
  storage: StorageSettings;
  /**
   * Its process control: `backend` says whether RabbitMQ or the store delivers work; `config` is
   * the RabbitMQ settings (kept with `core.store` too, to switch back).
   */
  broker: { backend: ProcessControlBackend; config: BrokerSettings };
  /** Folder that plugin module specifiers (`engine.plugins`) are resolved from. */
  pluginBaseDir: string;
  /** The profile's option overrides (see {@link getOption}). */
  options: Record<string, unknown>;
  /** Not stored: the `AIIDA_PATH` this profile was loaded from. */
  aiidaPath: string;
}

/** What {@link createProfile} needs. */
export interface CreateProfileInput {
  /** The new profile's name; must be a safe file name and not taken. */
  name: string;
  /** Broker settings that differ from {@link defaultBrokerSettings}. */
  broker?: Partial<BrokerSettings>;
  /**
   * How work reaches the workers: through RabbitMQ or straight from the store (no broker).
   * @default 'core.rabbitmq'
   */
  processControl?: ProcessControlBackend;
  /** Folder that plugins are resolved from. @default process.cwd() */
  pluginBaseDir?: string;
  /**
   * Where processes are stored. @default an SQLite file at `storage/<name>/aiida.sqlite`. A
   * `core.psql` database must exist already (`aiida presto --use-postgres` creates one).
   */
  storage?: { backend: 'core.psql'; config: PsqlStorageConfig };
  /** Initial option overrides of the profile, checked like {@link setOption}. @default {} */
  options?: Record<string, unknown>;
  /** Make it the default profile. @default true if there is no default yet, else false */
  setDefault?: boolean;
}

/**
 * Creates a profile and stores it in our config file: a new uuid, an SQLite file under
 * `storage/<name>/aiida.sqlite`, the default broker settings overridden by `input.broker`.
 * The first profile becomes the default. Throws {@link ConfigError} `profile_name_invalid`,
 * `profile_exists`, `option_unknown`/`option_invalid`, or `config_invalid` for bad broker settings.
 */
export function createProfile(
  input: CreateProfileInput,
  opts: ConfigLocationOptions = {},
): Profile {
  assertValidProfileName(input.name);
  const processControl = checkProcessControlBackend(input.processControl ?? 'core.rabbitmq');
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  const broker = checkBrokerSettings(input.name, {
    ...defaultBrokerSettings(),
    ...withoutUndefined(input.broker ?? {}),
  });
  const options: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(input.options ?? {})) {
    options[name] = parseOptionValue(name, value, 'profile');
  }
  const stored: ProfileFile = {
    PROFILE_UUID: randomUUID(),
    storage: input.storage
      ? {
          backend: 'core.psql',
          config: {
            database_engine: 'postgresql_psycopg',
            ...checkPsqlConfig(input.name, input.storage.config),
          },
        }
      : {
          backend: 'core.sqlite',
          config: {
            filepath: join(getStorageDir({ name: input.name, aiidaPath }), 'aiida.sqlite'),
          },
        },
    process_control: { backend: processControl, config: brokerSettingsToFile(broker) },
    plugin_base_dir: resolve(input.pluginBaseDir ?? process.cwd()),
    options,
  };
  updateConfig(
    (config) => {
      if (Object.hasOwn(config.profiles, input.name)) {
        throw new ConfigError(
          ConfigErrorCodes.profileExists,
          `A profile named '${input.name}' already exists in ${getConfigFilePath(aiidaPath)}. ` +
            'Choose another name, or delete that profile first.',
          { filePath: getConfigFilePath(aiidaPath) },
        );
      }
      assertLeaseRule(options, config.options, `profile '${input.name}'`);
      config.profiles[input.name] = stored;
      const makeDefault =
        input.setDefault ??
        (config.default_profile === undefined ||
          !Object.hasOwn(config.profiles, config.default_profile));
      if (makeDefault) config.default_profile = input.name;
    },
    { aiidaPath },
  );
  return profileFromFile(input.name, stored, aiidaPath);
}

/**
 * Loads a profile: `name`, else the environment variable `AIIDA_PROFILE`, else the config's
 * default profile. Throws {@link ConfigError} `profile_not_found` listing the known profiles.
 */
export function getProfile(name?: string, opts: ConfigLocationOptions = {}): Profile {
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  const config = readConfig({ aiidaPath });
  const envName = process.env.AIIDA_PROFILE === '' ? undefined : process.env.AIIDA_PROFILE;
  const chosen = name ?? envName ?? config.default_profile;
  const filePath = getConfigFilePath(aiidaPath);
  if (chosen === undefined) {
    throw new ConfigError(
      ConfigErrorCodes.profileNotFound,
      `No profile given, AIIDA_PROFILE is not set and ${filePath} has no default profile. ` +
        `${knownProfilesText(config, aiidaPath)} Pass a profile name, or set a default profile.`,
      { filePath },
    );
  }
  return requireProfile(config, chosen, aiidaPath, sourceText(name, envName));
}

/** Every profile in our config file, sorted by name. */
export function listProfiles(opts: ConfigLocationOptions = {}): Profile[] {
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  const config = readConfig({ aiidaPath });
  return Object.keys(config.profiles)
    .sort()
    .map((name) => profileFromFile(name, config.profiles[name] as ProfileFile, aiidaPath));
}

/** The name of the default profile, or undefined when none is set. */
export function getDefaultProfileName(opts: ConfigLocationOptions = {}): string | undefined {
  return readConfig(opts).default_profile;
}

/** Makes `name` the default profile. Throws {@link ConfigError} `profile_not_found`. */
export function setDefaultProfile(name: string, opts: ConfigLocationOptions = {}): void {
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  updateConfig(
    (config) => {
      requireProfile(config, name, aiidaPath);
      config.default_profile = name;
    },
    { aiidaPath },
  );
}

/**
 * Removes a profile from our config file (and unsets the default if it was the default). Leaves
 * its storage and daemon folders on disk. Throws {@link ConfigError} `profile_not_found`.
 */
export function deleteProfile(name: string, opts: ConfigLocationOptions = {}): void {
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  updateConfig(
    (config) => {
      requireProfile(config, name, aiidaPath);
      delete config.profiles[name];
      if (config.default_profile === name) delete config.default_profile;
    },
    { aiidaPath },
  );
}

/**
 * Switches how work reaches the workers of profile `name` (`process_control.backend`); the
 * RabbitMQ settings are kept. The caller makes sure no daemon of the profile runs (its workers
 * would keep the old transport). Throws {@link ConfigError} `profile_not_found`, or
 * `config_invalid` for an unknown backend.
 */
export function setProcessControlBackend(
  name: string,
  backend: ProcessControlBackend,
  opts: ConfigLocationOptions = {},
): Profile {
  const chosen = checkProcessControlBackend(backend);
  const aiidaPath = resolveAiidaPath(opts.aiidaPath);
  let profile: Profile | undefined;
  updateConfig(
    (config) => {
      requireProfile(config, name, aiidaPath);
      const stored = config.profiles[name] as ProfileFile;
      stored.process_control.backend = chosen;
      profile = profileFromFile(name, stored, aiidaPath);
    },
    { aiidaPath },
  );
  return profile!;
}

function checkProcessControlBackend(backend: string): ProcessControlBackend {
  if ((PROCESS_CONTROL_BACKENDS as readonly string[]).includes(backend)) {
    return backend as ProcessControlBackend;
  }
  throw new ConfigError(
    ConfigErrorCodes.configInvalid,
    `Unknown process control backend ${JSON.stringify(backend)}: use one of ` +
      `${PROCESS_CONTROL_BACKENDS.join(', ')}.`,
  );
}

/** The profile `name` of an already read config, or a `profile_not_found` error. */
export function requireProfile(
  config: ConfigFile,
  name: string,
  aiidaPath: string,
  source = '',
): Profile {
  const stored = Object.hasOwn(config.profiles, name) ? config.profiles[name] : undefined;
  if (stored === undefined) {
    const filePath = getConfigFilePath(aiidaPath);
    throw new ConfigError(
      ConfigErrorCodes.profileNotFound,
      `Profile '${name}'${source} not found in ${filePath}. ${knownProfilesText(config, aiidaPath)}`,
      { filePath },
    );
  }
  return profileFromFile(name, stored, aiidaPath);
}

function profileFromFile(name: string, stored: ProfileFile, aiidaPath: string): Profile {
  return {
    name,
    uuid: stored.PROFILE_UUID,
    storage:
      stored.storage.backend === 'core.sqlite'
        ? { backend: 'core.sqlite', config: { filepath: stored.storage.config.filepath } }
        : {
            backend: 'core.psql',
            config: {
              database_hostname: stored.storage.config.database_hostname,
              database_port: stored.storage.config.database_port,
              database_username: stored.storage.config.database_username,
              database_password: stored.storage.config.database_password,
              database_name: stored.storage.config.database_name,
            },
          },
    broker: {
      backend: stored.process_control.backend,
      config: brokerSettingsFromFile(stored.process_control.config),
    },
    pluginBaseDir: stored.plugin_base_dir,
    options: structuredClone(stored.options) as Record<string, unknown>,
    aiidaPath,
  };
}

function checkBrokerSettings(profileName: string, settings: BrokerSettings): BrokerSettings {
  const parsed = brokerSettingsSchema.safeParse(settings, { reportInput: true });
  if (!parsed.success) {
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `Invalid broker settings for profile '${profileName}':\n` +
        formatProblems(zodIssuesToProblems(parsed.error.issues, ['broker'])),
      { cause: parsed.error },
    );
  }
  return parsed.data;
}

function checkPsqlConfig(profileName: string, config: PsqlStorageConfig): PsqlStorageConfig {
  const parsed = psqlStorageConfigSchema.safeParse(config);
  if (!parsed.success) {
    // Not reportInput: the input holds the password.
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `Invalid PostgreSQL storage settings for profile '${profileName}':\n` +
        formatProblems(zodIssuesToProblems(parsed.error.issues, ['storage', 'config'])),
      { cause: parsed.error },
    );
  }
  const { database_engine: _engine, repository_uri: _uri, ...fields } = parsed.data;
  return fields;
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function knownProfilesText(config: ConfigFile, aiidaPath: string): string {
  const names = Object.keys(config.profiles).sort();
  if (names.length > 0) return `Known profiles: ${names.join(', ')}.`;
  const legacy = findLegacyProfiles(aiidaPath);
  if (legacy === undefined) return 'There are no profiles yet; create one first.';
  return (
    `There are no profiles yet, but ${getAiidaConfigFilePath(aiidaPath)} holds profiles that an ` +
    `earlier version of this package wrote there (${legacy.join(', ')}); rename that file to ` +
    `${CONFIG_FILE_NAME} to use them (it is not Python AiiDA's).`
  );
}

function sourceText(name: string | undefined, envName: string | undefined): string {
  if (name !== undefined) return '';
  if (envName !== undefined) return ' (from AIIDA_PROFILE)';
  return ' (the default profile)';
}
