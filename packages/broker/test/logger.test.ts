import { createTestProfile, type TestProfile } from '../../../tests/support/test-profile.js';
import { stderrBrokerLogger } from '../src/index.js';

let tp: TestProfile | undefined;
const originalWrite = process.stderr.write;
afterEach(() => {
  process.stderr.write = originalWrite;
  tp?.remove();
  tp = undefined;
});

function captureStderr(): string[] {
  const written: string[] = [];
  process.stderr.write = ((chunk: unknown) => {
    written.push(String(chunk));
    return true;
  }) as typeof process.stderr.write;
  return written;
}

test("the default broker logger honours the profile's logging.level (text lines)", () => {
  tp = createTestProfile({ name: 'broker-log-warn', options: { 'logging.level': 'warn' } });
  const written = captureStderr();
  const logger = stderrBrokerLogger(tp.profile);
  logger.info('reconnected to amqp://x');
  logger.warn('RabbitMQ blocked this connection');
  expect(written).toEqual(['warn: broker: RabbitMQ blocked this connection\n']);
});

test('the default broker logger writes JSON lines with logging.format json', () => {
  tp = createTestProfile({ name: 'broker-log-json', options: { 'logging.format': 'json' } });
  const written = captureStderr();
  stderrBrokerLogger(tp.profile).info('reconnected');
  expect(written).toHaveLength(1);
  expect(JSON.parse(written[0] ?? '')).toMatchObject({
    level: 'info',
    component: 'broker',
    msg: 'reconnected',
  });
});
