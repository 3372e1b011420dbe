// Acceptance 4 (issue 4), chaos: RabbitMQ's consumer_timeout set to 5 s (checked every second)
// cancels a consumer that holds a delivery unacked, which is what happens to AiiDA's long
// processes. First proven on a plain rabbitmq-client consumer; then the daemon runs 20 processes
// of 15 s each: one committed result and one start each, and no channel error in its logs. The
// broker settings are read first and restored in a `finally`.
import { getBrokerUrl } from '@aiida/config';
import { waitFor } from '../support/wait-for.js';
import {
  type E2E,
  groupBy,
  type RabbitEnvValue,
  rabbitmqClient,
  readRabbitEnv,
  restoreRabbitEnv,
  setRabbitEnv,
  setupE2E,
  waitForTerminal,
  withLogs,
} from './helpers.js';

const N = 20;
const BODY_MS = 15_000;
let e2e: E2E;
const previous = new Map<string, RabbitEnvValue>();

beforeAll(async () => {
  e2e = await setupE2E({
    name: 'consumer-timeout',
    // RabbitMQ's consumer_timeout: this file is about the broker transport only.
    processControl: 'core.rabbitmq',
  });
});

afterAll(async () => {
  await e2e?.cleanup();
});

test('consumer_timeout 5 s bites a plain consumer, but not the daemon: 20 processes of 15 s, one start and one result each', async () => {
  try {
    for (const key of ['channel_tick_interval', 'consumer_timeout']) {
      previous.set(key, await readRabbitEnv(key));
    }
    await setRabbitEnv('channel_tick_interval', '1000');
    await setRabbitEnv('consumer_timeout', '5000');
    expect(await readRabbitEnv('consumer_timeout')).toEqual({ set: true, value: '5000' });

    // 1. The setting bites: a delivery held unacked for 10 s is taken back with
    //    PRECONDITION_FAILED and delivered again.
    const { Connection } = rabbitmqClient();
    const connection = new Connection({
      url: getBrokerUrl(e2e.tp.profile),
      connectionName: 'consumer-timeout-proof',
    });
    connection.on('error', () => {});
    const queue = `${e2e.broker!.topology.prefix}.consumer-timeout-proof`;
    const deliveries: { redelivered: boolean; t: number }[] = [];
    const errors: { code?: string; message: string; t: number }[] = [];
    let releaseFirst: () => void = () => {};
    try {
      await connection.queueDeclare({ queue, durable: false, autoDelete: false });
      const publisher = connection.createPublisher({ confirm: true });
      await publisher.send({ routingKey: queue }, { hold: 'me' });
      await publisher.close();
      const t0 = Date.now();
      const consumer = connection.createConsumer(
        { queue, qos: { prefetchCount: 1 } },
        async (msg) => {
          deliveries.push({ redelivered: msg.redelivered, t: Date.now() - t0 });
          if (deliveries.length === 1) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, 10_000);
              releaseFirst = () => {
                clearTimeout(timer);
                resolve();
              };
            });
          }
        },
      );
      consumer.on('error', (error: { code?: string; message: string }) =>
        errors.push({ code: error.code, message: error.message, t: Date.now() - t0 }),
      );
      await waitFor(
        () =>
          errors.some((e) => e.code === 'PRECONDITION_FAILED') &&
          deliveries.some((d) => d.redelivered),
        { timeout: 30, what: 'PRECONDITION_FAILED and a redelivery' },
      );
      releaseFirst();
      await consumer.close();
      await connection.queueDelete({ queue });
    } finally {
      releaseFirst();
      await connection.close();
    }
    const bite = errors.find((e) => e.code === 'PRECONDITION_FAILED')!;
    expect(bite.message).toMatch(/timed? ?out|acknowledg/i);
    expect(deliveries[0]).toMatchObject({ redelivered: false });
    // The broker took it back while the consumer still held it (5 s timeout, 1 s ticks).
    expect(bite.t).toBeGreaterThanOrEqual(4000);
    expect(bite.t).toBeLessThan(10_000);
    const redelivery = deliveries.find((d) => d.redelivered)!;
    expect(redelivery.t).toBeGreaterThan(bite.t);

    // 2. The daemon acks at claim: processes of 15 s run once and end once.
    await withLogs(e2e, async () => {
      const { client, engine } = e2e;
      await client.startDaemon({ numberWorkers: 2 });
      const t0 = Date.now();
      const submitted = await engine.submitMany(
        Array.from({ length: N }, (_, i) => ({
          type: 'test.sleep',
          inputs: { ms: BODY_MS, x: i },
        })),
      );
      await waitForTerminal(engine, N, {
        timeout: 90,
        interval: 0.5,
        what: `all ${N} processes to end`,
      });
      const elapsed = (Date.now() - t0) / 1000;
      const rows = await e2e.rows();
      const starts = groupBy(
        e2e.events().filter((e) => e.event === 'start'),
        (e) => e.pk,
      );
      for (const [i, { pk }] of submitted.entries()) {
        expect(rows.get(pk)).toMatchObject({ state: 'finished', epoch: 1, outputs: { x: i } });
        expect(starts.get(pk)).toHaveLength(1);
      }
      const logs = e2e.tp.logTails(10_000);
      expect(logs).not.toMatch(
        /PRECONDITION_FAILED|acknowledgement .*timed out|channel.*(error|closed)/i,
      );
      console.log(
        `consumer-timeout: proof: PRECONDITION_FAILED after ${(bite.t / 1000).toFixed(1)} s ` +
          `(${bite.message}), redelivered after ${(redelivery.t / 1000).toFixed(1)} s; daemon: ${N} processes of ${BODY_MS / 1000} s ` +
          `finished in ${elapsed.toFixed(1)} s, one start each, no channel error in the logs`,
      );
      await client.stopDaemon();
    });
  } finally {
    for (const [key, value] of previous) await restoreRabbitEnv(key, value);
  }
  expect(await readRabbitEnv('consumer_timeout')).toEqual(previous.get('consumer_timeout'));
}, 180_000);
