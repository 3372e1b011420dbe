/**
 * A raw `rabbitmq-client` consumer for the throughput ceiling: acks every message of a durable
 * queue as soon as it arrives, with `prefetch` unacked at most (and as many handlers at once).
 * Argv: <amqp url> <queue> <prefetch>. Talks to the bench over IPC: `ready` once consuming,
 * `acked` with the running count (at most every 20 ms), `stop` to close and exit.
 */
import { Connection } from 'rabbitmq-client';

const [url, queue, prefetchText] = process.argv.slice(2);
if (!url || !queue || !prefetchText) {
  process.stderr.write('usage: raw-consumer <url> <queue> <prefetch>\n');
  process.exit(2);
}
const prefetch = Number(prefetchText);
const send = (message: Record<string, unknown>) => {
  if (process.connected) process.send?.(message);
};

const connection = new Connection({ url, connectionName: 'aiida-bench-raw-consumer' });
let acked = 0;
let reported = 0;
const consumer = connection.createConsumer(
  {
    queue,
    queueOptions: { durable: true },
    qos: { prefetchCount: prefetch },
    concurrency: prefetch,
  },
  async () => {
    acked++;
  },
);
consumer.on('error', (error) => process.stderr.write(`raw consumer: ${error}\n`));
consumer.once('ready', () => send({ type: 'ready' }));
const timer = setInterval(() => {
  if (acked !== reported) {
    reported = acked;
    send({ type: 'acked', n: acked });
  }
}, 20);
process.on('message', async (message: { type?: string }) => {
  if (message.type !== 'stop') return;
  clearInterval(timer);
  await consumer.close();
  await connection.close();
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));
