/**
 * A BullMQ worker process for the side-by-side runs. Jobs `add` return x + y; jobs `sleep` wait
 * `ms` milliseconds. Argv: <queue> <concurrency>. Redis at 127.0.0.1:6379. IPC: `ready` once the
 * worker is connected, `stop` to close (waiting for active jobs) and exit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'bullmq';

const [queue, concurrencyText] = process.argv.slice(2);
if (!queue || !concurrencyText) {
  process.stderr.write('usage: bullmq-worker <queue> <concurrency>\n');
  process.exit(2);
}
const send = (message: Record<string, unknown>) => {
  if (process.connected) process.send?.(message);
};

const worker = new Worker(
  queue,
  async (job) => {
    if (job.name === 'sleep') {
      await sleep(job.data.ms as number);
      return { slept: job.data.ms };
    }
    return { sum: (job.data.x as number) + (job.data.y as number) };
  },
  {
    connection: { host: '127.0.0.1', port: 6379, maxRetriesPerRequest: null },
    concurrency: Number(concurrencyText),
  },
);
worker.on('error', (error) => process.stderr.write(`bullmq worker: ${error}\n`));
await worker.waitUntilReady();
send({ type: 'ready' });
process.on('message', async (message: { type?: string }) => {
  if (message.type !== 'stop') return;
  await worker.close();
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));
