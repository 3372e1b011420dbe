import { z } from 'zod';
import type { BrokerConfigFile } from './config-schema.js';

/** Connection settings of a profile's RabbitMQ broker. */
export interface BrokerSettings {
  /** `amqp`, or `amqps` for TLS. @default 'amqp' */
  protocol: 'amqp' | 'amqps';
  /** @default '127.0.0.1' */
  host: string;
  /** @default 5672 */
  port: number;
  /** @default 'guest' */
  username: string;
  /** @default 'guest' */
  password: string;
  /** RabbitMQ virtual host; `''` is the broker's default one (`/`). @default '' */
  virtualHost: string;
  /** Type of the process queue, fixed when the queue is first declared. @default 'classic' */
  queueType: 'classic' | 'quorum';
  /** Extra connection parameters, sent as URL query parameters. @default { heartbeat: 600 } */
  parameters: Record<string, string | number | boolean>;
}

/** Zod type of {@link BrokerSettings}, for settings that come from a user or a file. */
export const brokerSettingsSchema = z.strictObject({
  protocol: z.enum(['amqp', 'amqps']),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  username: z.string(),
  password: z.string(),
  virtualHost: z.string(),
  queueType: z.enum(['classic', 'quorum']),
  parameters: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
});

/** The broker settings of a new profile: a local RabbitMQ with its default guest account. */
export function defaultBrokerSettings(): BrokerSettings {
  return {
    protocol: 'amqp',
    host: '127.0.0.1',
    port: 5672,
    username: 'guest',
    password: 'guest',
    virtualHost: '',
    queueType: 'classic',
    parameters: { heartbeat: 600 },
  };
}

/** Stored (AiiDA) key names to API names. */
export function brokerSettingsFromFile(file: BrokerConfigFile): BrokerSettings {
  return {
    protocol: file.broker_protocol,
    host: file.broker_host,
    port: file.broker_port,
    username: file.broker_username,
    password: file.broker_password,
    virtualHost: file.broker_virtual_host,
    queueType: file.broker_queue_type,
    parameters: { ...file.broker_parameters },
  };
}

/** API names to stored (AiiDA) key names. */
export function brokerSettingsToFile(settings: BrokerSettings): BrokerConfigFile {
  return {
    broker_protocol: settings.protocol,
    broker_username: settings.username,
    broker_password: settings.password,
    broker_host: settings.host,
    broker_port: settings.port,
    broker_virtual_host: settings.virtualHost,
    broker_queue_type: settings.queueType,
    broker_parameters: { ...settings.parameters },
  };
}
