import type { BrokerSettings } from './broker-settings.js';
import type { Profile } from './profiles.js';

/**
 * The AMQP URL of a profile's broker: `amqp://user:pass@host:port/vhost?params`. Credentials and
 * the virtual host are URL-encoded (a vhost `/` becomes `%2F`; an empty one is the broker's
 * default). Contains the password: print or log {@link getRedactedBrokerUrl} instead.
 */
export function getBrokerUrl(source: Profile | BrokerSettings): string {
  const settings = brokerSettingsOf(source);
  return buildUrl(settings, encodeURIComponent(settings.password));
}

/** {@link getBrokerUrl} with the password replaced by `***`: the form to print or log. */
export function getRedactedBrokerUrl(source: Profile | BrokerSettings): string {
  return buildUrl(brokerSettingsOf(source), '***');
}

function brokerSettingsOf(source: Profile | BrokerSettings): BrokerSettings {
  return 'broker' in source ? source.broker.config : source;
}

function buildUrl(settings: BrokerSettings, password: string): string {
  const host =
    settings.host.includes(':') && !settings.host.startsWith('[')
      ? `[${settings.host}]`
      : settings.host;
  const credentials = `${encodeURIComponent(settings.username)}:${password}`;
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(settings.parameters)) query.set(key, String(value));
  const queryText = query.toString() === '' ? '' : `?${query.toString()}`;
  return `${settings.protocol}://${credentials}@${host}:${settings.port}/${encodeURIComponent(settings.virtualHost)}${queryText}`;
}
