import { z } from 'zod';
import { OPTION_NAMES, OPTIONS, type OptionName } from './options.js';
import { PROFILE_NAME_PATTERN } from './profile-name.js';

/**
 * Version of the config file this code reads and writes. A file of a newer version is refused;
 * an older one is migrated in memory on read and written at this version on the next write.
 */
export const CONFIG_VERSION = 1;

/** Oldest code version that can still read files this code writes. */
export const CONFIG_OLDEST_COMPATIBLE_VERSION = 1;

const DEFAULT_BROKER_PARAMETERS = { heartbeat: 600 } as const;

/** Options object of one scope, with every value checked against its option's schema. */
function optionsSchema(scope: 'global' | 'profile') {
  const shape: Record<string, z.ZodType> = {};
  for (const name of OPTION_NAMES) {
    const definition = OPTIONS[name];
    if (definition.scope === 'both' || definition.scope === scope) {
      shape[name] = definition.schema.optional();
    }
  }
  return z.strictObject(shape) as unknown as z.ZodType<
    Partial<Record<OptionName, unknown>>,
    Partial<Record<OptionName, unknown>>
  >;
}

/** The `process_control.config` block of a profile, as stored (AiiDA's key names). */
const brokerConfigFileSchema = z.strictObject({
  broker_protocol: z.enum(['amqp', 'amqps']),
  broker_username: z.string(),
  broker_password: z.string(),
  broker_host: z.string().min(1),
  broker_port: z.number().int().min(1).max(65535),
  broker_virtual_host: z.string().default(''),
  broker_queue_type: z.enum(['classic', 'quorum']).default('classic'),
  broker_parameters: z
    .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
    .default({ ...DEFAULT_BROKER_PARAMETERS }),
});

/** The `storage.config` block of a `core.psql` profile (AiiDA's key names). */
export const psqlStorageConfigSchema = z.strictObject({
  database_engine: z.literal('postgresql_psycopg').optional(),
  database_hostname: z.string().min(1),
  database_port: z.number().int().min(1).max(65535),
  database_username: z.string().min(1),
  database_password: z.string(),
  database_name: z.string().min(1),
  /** AiiDA's file repository; kept as written, not used by the daemon. */
  repository_uri: z.string().optional(),
});

/** One profile as stored in our config file (`aiida-ts.json`). */
const profileFileSchema = z.strictObject({
  PROFILE_UUID: z.uuid(),
  storage: z.discriminatedUnion('backend', [
    z.strictObject({
      backend: z.literal('core.sqlite'),
      config: z.strictObject({ filepath: z.string().min(1) }),
    }),
    z.strictObject({ backend: z.literal('core.psql'), config: psqlStorageConfigSchema }),
  ]),
  process_control: z.strictObject({
    /**
     * `core.rabbitmq`: tasks and RPC through RabbitMQ. `core.store`: the store is the queue (no
     * broker); `config` is then kept only to switch back.
     */
    backend: z.enum(['core.rabbitmq', 'core.store']),
    config: brokerConfigFileSchema,
  }),
  plugin_base_dir: z.string().min(1),
  options: optionsSchema('profile').default({}),
});

/** Our whole config file (`aiida-ts.json`) at {@link CONFIG_VERSION}. */
export const configFileSchema = z.strictObject({
  CONFIG_VERSION: z.strictObject({
    CURRENT: z.number().int().min(1),
    OLDEST_COMPATIBLE: z.number().int().min(1),
  }),
  profiles: z
    .record(
      z.string().regex(PROFILE_NAME_PATTERN, 'a safe profile name (letters, digits, . _ -)'),
      profileFileSchema,
    )
    .default({}),
  default_profile: z.string().optional(),
  options: optionsSchema('global').default({}),
});

/** Our config file as stored: AiiDA's shape and key names, but its own file and version line. */
export type ConfigFile = z.output<typeof configFileSchema>;
/** One profile as stored in our config file (`aiida-ts.json`). */
export type ProfileFile = z.output<typeof profileFileSchema>;
/** A profile's broker block as stored in our config file (`aiida-ts.json`). */
export type BrokerConfigFile = z.output<typeof brokerConfigFileSchema>;

/** The config of a missing file: no profiles, no default, no options. */
export function emptyConfig(): ConfigFile {
  return {
    CONFIG_VERSION: {
      CURRENT: CONFIG_VERSION,
      OLDEST_COMPATIBLE: CONFIG_OLDEST_COMPATIBLE_VERSION,
    },
    profiles: {},
    options: {},
  };
}
