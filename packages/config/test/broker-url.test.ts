import {
  type BrokerSettings,
  createProfile,
  defaultBrokerSettings,
  getBrokerUrl,
  getRedactedBrokerUrl,
} from '@aiida/config';
import { makeTempAiidaPath } from './temp-aiida-path.js';

function settings(overrides: Partial<BrokerSettings> = {}): BrokerSettings {
  return { ...defaultBrokerSettings(), parameters: {}, ...overrides };
}

describe('getBrokerUrl', () => {
  test('defaults give the local broker and its default virtual host', () => {
    expect(getBrokerUrl(settings())).toBe('amqp://guest:guest@127.0.0.1:5672/');
    expect(getBrokerUrl(defaultBrokerSettings())).toBe(
      'amqp://guest:guest@127.0.0.1:5672/?heartbeat=600',
    );
  });

  test('credentials and virtual host are URL-encoded', () => {
    const url = getBrokerUrl(
      settings({ username: 'us@er:x', password: 'p@ss/w:rd?#%', virtualHost: 'my/vhost' }),
    );
    expect(url).toBe('amqp://us%40er%3Ax:p%40ss%2Fw%3Ard%3F%23%25@127.0.0.1:5672/my%2Fvhost');
    const parsed = new URL(url);
    expect(decodeURIComponent(parsed.username)).toBe('us@er:x');
    expect(decodeURIComponent(parsed.password)).toBe('p@ss/w:rd?#%');
    expect(decodeURIComponent(parsed.pathname.slice(1))).toBe('my/vhost');
  });

  test("a virtual host named '/' is %2F, not the empty default", () => {
    expect(getBrokerUrl(settings({ virtualHost: '/' }))).toBe(
      'amqp://guest:guest@127.0.0.1:5672/%2F',
    );
  });

  test('parameters become query parameters; amqps and IPv6 hosts work', () => {
    expect(
      getBrokerUrl(
        settings({
          protocol: 'amqps',
          host: '::1',
          port: 5671,
          parameters: { heartbeat: 30, frame_max: 8192, no_verify_ssl: true, cafile: '/a b' },
        }),
      ),
    ).toBe(
      'amqps://guest:guest@[::1]:5671/?heartbeat=30&frame_max=8192&no_verify_ssl=true&cafile=%2Fa+b',
    );
  });

  test('accepts a Profile as well as settings', () => {
    const tmp = makeTempAiidaPath();
    try {
      const profile = createProfile(
        { name: 'p', broker: { password: 's3cret!' } },
        { aiidaPath: tmp.aiidaPath },
      );
      expect(getBrokerUrl(profile)).toBe('amqp://guest:s3cret!@127.0.0.1:5672/?heartbeat=600');
      expect(getRedactedBrokerUrl(profile)).toBe('amqp://guest:***@127.0.0.1:5672/?heartbeat=600');
    } finally {
      tmp.remove();
    }
  });
});

describe('getRedactedBrokerUrl', () => {
  test('never contains the password, in any encoding', () => {
    const password = 'p@ss/w:rd secret';
    const redacted = getRedactedBrokerUrl(settings({ password }));
    expect(redacted).toBe('amqp://guest:***@127.0.0.1:5672/');
    expect(redacted).not.toContain(password);
    expect(redacted).not.toContain(encodeURIComponent(password));
    expect(redacted).not.toContain('secret');
  });

  test('keeps the encoded user name, host and virtual host', () => {
    expect(
      getRedactedBrokerUrl(settings({ username: 'a b', host: 'mq.example', virtualHost: 'v' })),
    ).toBe('amqp://a%20b:***@mq.example:5672/v');
  });
});
