import { RabbitBroker } from '@aiida/broker';
import type { Profile } from '@aiida/config';
import { readAmqpServerVersion } from './amqp-version.js';

/** What {@link checkBroker} found out. */
export interface BrokerCheck {
  ok: boolean;
  /** The server's product and version (e.g. `RabbitMQ 3.12.1`), when connected and known. */
  version: string | undefined;
  /** The connection error, when not connected. */
  error: Error | undefined;
}

/**
 * Connects to the profile's broker as every client of the profile does (credentials checked, the
 * profile's topology declared), reads the server's version, and closes again, within `timeout`
 * seconds.
 */
export async function checkBroker(profile: Profile, timeout: number): Promise<BrokerCheck> {
  const broker = new RabbitBroker({
    profile,
    connectionName: `aiida-cli ${process.pid}`,
    // Nothing asynchronous matters once the check is over; connect() reports the failure itself.
    onError: () => {},
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
  try {
    await broker.connect({ timeout });
  } catch (error) {
    return {
      ok: false,
      version: undefined,
      error: error instanceof Error ? error : new Error(String(error)),
    };
  } finally {
    await broker.close({ timeout: 2 }).catch(() => {});
  }
  const { protocol, host, port } = profile.broker.config;
  const version = await readAmqpServerVersion({ protocol, host, port }, Math.min(timeout, 3));
  return { ok: true, version, error: undefined };
}
