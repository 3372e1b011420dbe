import type { RabbitBroker } from '@aiida/broker';
import { getRedactedBrokerUrl, type Profile } from '@aiida/config';
import { CliError } from './errors.js';
import { echo, echoInline, failedMark, okMark } from './output.js';

/** What {@link checkBroker} found out. */
export interface BrokerCheck {
  ok: boolean;
  /** The server's product and version (e.g. `RabbitMQ 3.12.1`), when connected and known. */
  version: string | undefined;
  /** The connection error, when not connected. */
  error: Error | undefined;
}

/**
 * Reads the server's version (and that it is an AMQP broker at all), then connects to the
 * profile's broker as every client of the profile does (credentials checked, the profile's
 * topology declared) and closes again, within `timeout` seconds.
 */
export async function checkBroker(profile: Profile, timeout: number): Promise<BrokerCheck> {
  // The probe goes first: it tells a server that is not an AMQP broker (a web server on that
  // port, say) from one, which the client library can't be given safely.
  const { probeServer } = await import('@aiida/broker');
  const probe = await probeServer(profile.broker.config, Math.min(timeout, 3), {
    connectionName: `aiida-cli ${process.pid} version probe`,
  });
  if (probe.notAmqp !== undefined) {
    const { host, port } = profile.broker.config;
    return {
      ok: false,
      version: undefined,
      error: new Error(
        `what answers at ${host}:${port} is not an AMQP 0-9-1 broker (it said "${probe.notAmqp}")`,
      ),
    };
  }
  const broker = await quietBroker(profile);
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
  return { ok: true, version: probe.version, error: undefined };
}

/**
 * Checks the broker of a profile that is being created, printing `Checking the broker at <url>...`
 * and `OK` (with the server's version when `showVersion`). When the broker does not answer within
 * `timeout` seconds it prints `FAILED`, calls `discard` so that nothing of the profile is left,
 * and throws `broker_unreachable` with `hint`.
 */
export async function checkBrokerOfNewProfile(
  profile: Profile,
  timeout: number,
  options: { discard: () => void | Promise<void>; hint: string; showVersion: boolean },
): Promise<void> {
  const url = getRedactedBrokerUrl(profile);
  echoInline(`Checking the broker at ${url}... `);
  const check = await checkBroker(profile, timeout);
  if (!check.ok) {
    echo(failedMark());
    await options.discard();
    throw new CliError(
      'broker_unreachable',
      `Could not connect to the broker at ${url}: ${brokerFailureReason(check.error)}. ` +
        'No profile was created.',
      { hint: options.hint, cause: check.error },
    );
  }
  const version = options.showVersion && check.version ? ` (${check.version})` : '';
  echo(`${okMark()}${version}`);
}

/**
 * Why a connection to the broker failed, for a sentence that names the URL itself: the
 * connection error alone (`connect ECONNREFUSED 127.0.0.1:5999`), without the URL the broker's
 * error repeats, and without a final full stop.
 */
export function brokerFailureReason(error: Error | undefined): string {
  const reason = (error as { details?: { reason?: unknown } } | undefined)?.details?.reason;
  const text = typeof reason === 'string' ? reason : (error?.message ?? 'unknown error');
  return text.replace(/\.+$/, '');
}

/**
 * Deletes the profile's queues and exchanges on the broker (best effort: a broker that is not
 * reachable within `timeout` seconds keeps them, and false is returned).
 */
export async function deleteBrokerTopology(profile: Profile, timeout = 5): Promise<boolean> {
  const broker = await quietBroker(profile);
  try {
    await broker.connect({ timeout });
    await broker.deleteTopology();
    return true;
  } catch {
    return false;
  } finally {
    await broker.close({ timeout: 2 }).catch(() => {});
  }
}

/** The broker client is imported only by the commands that talk to the broker. */
async function quietBroker(profile: Profile): Promise<RabbitBroker> {
  const { RabbitBroker } = await import('@aiida/broker');
  return new RabbitBroker({
    profile,
    connectionName: `aiida-cli ${process.pid}`,
    // Nothing asynchronous matters once the call is over; connect() reports a failure itself.
    onError: () => {},
    logger: { info: () => {}, warn: () => {}, error: () => {} },
  });
}
