import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { BrokerSettings } from './broker-settings.js';
import type { ConfigLocationOptions } from './config-file.js';
import { ConfigError, ConfigErrorCodes } from './errors.js';
import { formatProblems, zodIssuesToProblems } from './format-issues.js';
import { getAiidaConfigFilePath } from './paths.js';
import { type CreateProfileInput, createProfile, type Profile } from './profiles.js';

/**
 * Python AiiDA's `config.json` is only ever read here, never written: these functions open it
 * read-only and accept every config version AiiDA has written (1 to 10, and later ones that keep
 * the `process_control` block), so nothing about it can be damaged or refused by us.
 */

/** The RabbitMQ settings of one of Python AiiDA's profiles, as found in its `config.json`. */
export interface AiidaBrokerSettings {
  /** The AiiDA profile they came from. */
  profile: string;
  /** AiiDA's config file they were read from. */
  filePath: string;
  /** The file's `CONFIG_VERSION.CURRENT` (0 when it has none, as AiiDA counts). */
  configVersion: number;
  /** The settings, in our names; AiiDA's defaults fill keys the file leaves out. */
  broker: Omit<BrokerSettings, 'queueType'>;
}

/** AiiDA's `BROKER_DEFAULTS` (`aiida.brokers.rabbitmq.defaults`), for keys a file leaves out. */
const AIIDA_BROKER_DEFAULTS = {
  broker_protocol: 'amqp',
  broker_username: 'guest',
  broker_password: 'guest',
  broker_host: '127.0.0.1',
  broker_port: 5672,
  broker_virtual_host: '',
  /** `get_rmq_url` adds `heartbeat=600` unless the parameters set it. */
  broker_parameters: { heartbeat: 600 },
} as const;

/** The broker keys we copy; AiiDA allows more (it ignores unknown ones), and so do we. */
const aiidaBrokerBlockSchema = z.looseObject({
  broker_protocol: z.enum(['amqp', 'amqps']).default(AIIDA_BROKER_DEFAULTS.broker_protocol),
  broker_username: z.string().default(AIIDA_BROKER_DEFAULTS.broker_username),
  broker_password: z.string().default(AIIDA_BROKER_DEFAULTS.broker_password),
  broker_host: z.string().min(1).default(AIIDA_BROKER_DEFAULTS.broker_host),
  broker_port: z.coerce.number().int().min(1).max(65535).default(AIIDA_BROKER_DEFAULTS.broker_port),
  broker_virtual_host: z.string().default(AIIDA_BROKER_DEFAULTS.broker_virtual_host),
  broker_parameters: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
    .default({}),
});

/** `process_control.backend` values that mean RabbitMQ (config v6 to v8 wrote `rabbitmq`). */
const RABBITMQ_BACKENDS = new Set(['core.rabbitmq', 'rabbitmq']);

/** Options of {@link readAiidaBrokerSettings} and {@link importAiidaProfile}. */
export interface AiidaConfigLocationOptions extends ConfigLocationOptions {
  /** AiiDA's config file to read. @default `<config folder>/config.json` */
  aiidaConfigFile?: string;
}

/**
 * What one of Python AiiDA's profiles says about its broker: its RabbitMQ settings, or `null` for
 * a profile set up without a broker (`process_control.backend: null`, which AiiDA allows since
 * 2.6, e.g. `verdi presto` on a machine without RabbitMQ).
 */
export interface AiidaProcessControl extends Omit<AiidaBrokerSettings, 'broker'> {
  broker: AiidaBrokerSettings['broker'] | null;
}

/**
 * Reads the RabbitMQ settings of Python AiiDA's profile `profile` (default: AiiDA's default
 * profile) from AiiDA's `config.json`, without writing anything. Throws {@link ConfigError}:
 * `config_unreadable` (no such file), `config_invalid` (not JSON, or bad broker values, named by
 * JSON path), `profile_not_found` (listing AiiDA's profiles) or `profile_without_broker` (a
 * profile set up without RabbitMQ).
 */
export function readAiidaBrokerSettings(
  profile?: string,
  opts: AiidaConfigLocationOptions = {},
): AiidaBrokerSettings {
  const read = readAiidaProcessControl(profile, opts);
  if (read.broker === null) {
    throw withoutBrokerError(read.profile, read.filePath, null);
  }
  return { ...read, broker: read.broker };
}

/**
 * As {@link readAiidaBrokerSettings}, but a profile set up without a broker
 * (`process_control.backend: null`) gives `broker: null` instead of an error. A backend other than
 * RabbitMQ or none is still `profile_without_broker`.
 */
export function readAiidaProcessControl(
  profile?: string,
  opts: AiidaConfigLocationOptions = {},
): AiidaProcessControl {
  const filePath = opts.aiidaConfigFile ?? getAiidaConfigFilePath(opts.aiidaPath);
  const raw = readAiidaConfigJson(filePath);
  const configVersion = readCurrentVersion(raw);
  const profiles = isRecord(raw.profiles) ? raw.profiles : {};
  const names = Object.keys(profiles).sort();
  const chosen =
    profile ?? (typeof raw.default_profile === 'string' ? raw.default_profile : undefined);
  const known = names.length === 0 ? 'It has no profiles.' : `Its profiles: ${names.join(', ')}.`;
  if (chosen === undefined) {
    throw new ConfigError(
      ConfigErrorCodes.profileNotFound,
      `No AiiDA profile given and AiiDA's config file ${filePath} has no default profile. ${known}`,
      { filePath, jsonPaths: ['default_profile'] },
    );
  }
  const stored = Object.hasOwn(profiles, chosen) ? profiles[chosen] : undefined;
  if (!isRecord(stored)) {
    throw new ConfigError(
      ConfigErrorCodes.profileNotFound,
      `AiiDA profile '${chosen}' not found in AiiDA's config file ${filePath}. ${known}`,
      { filePath, jsonPaths: [`profiles.${chosen}`] },
    );
  }
  const found = brokerBlockOf(stored, chosen, filePath);
  if (found === null) return { profile: chosen, filePath, configVersion, broker: null };
  const { block, jsonPath } = found;
  const parsed = aiidaBrokerBlockSchema.safeParse(block, { reportInput: true });
  if (!parsed.success) {
    const problems = zodIssuesToProblems(parsed.error.issues, jsonPath);
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `The RabbitMQ settings of AiiDA profile '${chosen}' in ${filePath} are invalid:\n` +
        `${formatProblems(problems)}\nNothing was imported; the file was left unchanged.`,
      { cause: parsed.error, filePath, jsonPaths: problems.map((p) => p.path) },
    );
  }
  const settings = parsed.data;
  return {
    profile: chosen,
    filePath,
    configVersion,
    broker: {
      protocol: settings.broker_protocol,
      username: settings.broker_username,
      password: settings.broker_password,
      host: settings.broker_host,
      port: settings.broker_port,
      virtualHost: settings.broker_virtual_host,
      parameters: { ...AIIDA_BROKER_DEFAULTS.broker_parameters, ...settings.broker_parameters },
    },
  };
}

/** What {@link importAiidaProfile} needs. */
export interface ImportAiidaProfileInput
  extends Omit<CreateProfileInput, 'broker' | 'name' | 'processControl'> {
  /** Python AiiDA's profile to copy the RabbitMQ settings of. @default AiiDA's default profile */
  aiidaProfile?: string;
  /** Name of our new profile. @default the AiiDA profile's name */
  name?: string;
  /** Queue type of our new profile (AiiDA has no such setting). @default 'classic' */
  queueType?: BrokerSettings['queueType'];
}

/**
 * Creates a profile of ours whose broker is Python AiiDA's profile's RabbitMQ (protocol, user,
 * password, host, port, virtual host, parameters), so both use the broker the user already has.
 * An AiiDA profile without a broker (`process_control.backend: null`) gives a `core.store`
 * profile (the store is the queue; `source.broker` is `null`). Everything else is a new profile's
 * default (see {@link createProfile}); AiiDA's file is only read. Throws what
 * {@link readAiidaProcessControl} and {@link createProfile} throw.
 */
export function importAiidaProfile(
  input: ImportAiidaProfileInput = {},
  opts: AiidaConfigLocationOptions = {},
): { profile: Profile; source: AiidaProcessControl } {
  const source = readAiidaProcessControl(input.aiidaProfile, opts);
  const { aiidaProfile: _ignored, queueType, ...rest } = input;
  const queue = queueType === undefined ? {} : { queueType };
  const profile = createProfile(
    {
      ...rest,
      name: input.name ?? source.profile,
      ...(source.broker === null
        ? { processControl: 'core.store' as const, broker: queue }
        : { broker: { ...source.broker, ...queue } }),
    },
    { aiidaPath: opts.aiidaPath },
  );
  return { profile, source };
}

function readAiidaConfigJson(filePath: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(filePath, 'utf8');
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ConfigError(
      ConfigErrorCodes.configUnreadable,
      missing
        ? `There is no AiiDA config file at ${filePath}. Set AIIDA_PATH to the folder AiiDA uses ` +
            '(as for verdi), or set up an AiiDA profile first.'
        : `Cannot read AiiDA's config file ${filePath}: ${(error as Error).message}.`,
      { cause: error, filePath },
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `AiiDA's config file ${filePath} is not valid JSON: ${(error as Error).message}. ` +
        'Nothing was imported; the file was left unchanged.',
      { cause: error, filePath, jsonPaths: [''] },
    );
  }
  if (!isRecord(raw)) {
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `AiiDA's config file ${filePath} is not a JSON object. Nothing was imported; the file was ` +
        'left unchanged.',
      { filePath, jsonPaths: [''] },
    );
  }
  return raw;
}

/**
 * Where a profile keeps its broker settings: `process_control.config` from config version 6 on,
 * top-level `broker_*` keys in versions 4 and 5, nothing (AiiDA's defaults) before; `null` for a
 * profile without a broker (`process_control.backend: null`).
 */
function brokerBlockOf(
  stored: Record<string, unknown>,
  name: string,
  filePath: string,
): { block: Record<string, unknown>; jsonPath: PropertyKey[] } | null {
  if (!Object.hasOwn(stored, 'process_control')) {
    const block = Object.fromEntries(
      Object.entries(stored).filter(([key]) => key.startsWith('broker_')),
    );
    return { block, jsonPath: ['profiles', name] };
  }
  const control = stored.process_control;
  const backend = isRecord(control) ? control.backend : undefined;
  if (isRecord(control) && backend === null) return null;
  if (!isRecord(control) || typeof backend !== 'string' || !RABBITMQ_BACKENDS.has(backend)) {
    throw withoutBrokerError(name, filePath, backend ?? null);
  }
  const block = isRecord(control.config) ? control.config : {};
  return { block, jsonPath: ['profiles', name, 'process_control', 'config'] };
}

/** `profile_without_broker`: AiiDA's profile `name` has no RabbitMQ whose settings we could copy. */
function withoutBrokerError(name: string, filePath: string, backend: unknown): ConfigError {
  return new ConfigError(
    ConfigErrorCodes.profileWithoutBroker,
    `AiiDA profile '${name}' in ${filePath} has no RabbitMQ broker ` +
      `(its process_control.backend is ${JSON.stringify(backend)}), so there are no ` +
      'broker settings to import. Configure RabbitMQ for it in AiiDA (`verdi profile ' +
      'configure-rabbitmq`), or create a profile of ours with `aiida presto`.',
    { filePath, jsonPaths: [`profiles.${name}.process_control.backend`] },
  );
}

function readCurrentVersion(raw: Record<string, unknown>): number {
  const block = raw.CONFIG_VERSION;
  const current = isRecord(block) ? block.CURRENT : undefined;
  return typeof current === 'number' ? current : 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
