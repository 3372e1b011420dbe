import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defaultBrokerSettings, getBrokerUrl } from '@aiida/config';
import { Queue } from 'bullmq';
import { Connection, type Publisher } from 'rabbitmq-client';
import { type ChildHelper, forkHelper, pollUntil } from './procs.js';
import { nowMs } from './stats.js';

/** Redis for BullMQ (the local one). */
export const REDIS = { host: '127.0.0.1', port: 6379 } as const;
/** Jobs or messages sent per pipelined batch, by every side (the broker's publish window too). */
export const BATCH = 1000;

const BULLMQ_WORKER = fileURLToPath(new URL('./children/bullmq-worker.js', import.meta.url));
const RAW_CONSUMER = fileURLToPath(new URL('./children/raw-consumer.js', import.meta.url));

/**
 * Why BullMQ can't run here, or null when it can. BullMQ 6 leaves its Redis client to the user
 * (`ioredis` is an optional peer dependency): without one, every BullMQ figure is skipped.
 */
export function bullmqUnavailable(): string | null {
  const require = createRequire(import.meta.url);
  try {
    createRequire(require.resolve('bullmq')).resolve('ioredis');
    return null;
  } catch {
    return (
      "BullMQ 6 needs the Redis client 'ioredis' (an optional peer dependency), which is not " +
      'installed: the BullMQ figures were not measured'
    );
  }
}

/** Where the `ioredis` BullMQ loads lives, or null. */
export function ioredisPath(): string | null {
  const require = createRequire(import.meta.url);
  try {
    return createRequire(require.resolve('bullmq')).resolve('ioredis');
  } catch {
    return null;
  }
}

/** Version of the `ioredis` BullMQ loads, or null. */
export function ioredisVersion(): string | null {
  const require = createRequire(import.meta.url);
  try {
    const bullmq = createRequire(require.resolve('bullmq'));
    return (bullmq('ioredis/package.json') as { version: string }).version;
  } catch {
    return null;
  }
}

/** The AMQP URL of the local RabbitMQ (the profiles' default broker settings). */
export function rawBrokerUrl(): string {
  return getBrokerUrl(defaultBrokerSettings());
}

/** The same body our tasks carry, so message sizes match. */
function taskBody(pk: number): Record<string, unknown> {
  return { v: 1, type: 'continue', pk };
}

/**
 * The raw ceiling: a durable queue, persistent messages published with confirms (pipelined,
 * {@link BATCH} at a time) from this process, and `workers` consumer processes that ack at once
 * with prefetch = concurrency = `prefetch`.
 */
export class RawRabbit {
  readonly queue = `aiida-bench-raw-${randomUUID()}`;
  private readonly connection: Connection;
  private publisher: Publisher | undefined;
  private consumers: ChildHelper[] = [];
  private acked = new Map<number, number>();

  constructor() {
    this.connection = new Connection({ url: rawBrokerUrl(), connectionName: 'aiida-bench-raw' });
  }

  /** Declares the queue and the publisher; with `workers` > 0 forks the consumers. */
  async setup(workers: number, prefetch: number): Promise<void> {
    await this.connection.queueDeclare({ queue: this.queue, durable: true });
    this.publisher = this.connection.createPublisher({ confirm: true, maxAttempts: 1 });
    for (let i = 0; i < workers; i++) {
      const helper = forkHelper(RAW_CONSUMER, [rawBrokerUrl(), this.queue, String(prefetch)]);
      this.consumers.push(helper);
      this.acked.set(helper.pid, 0);
      helper.on('acked', (m) => this.acked.set(helper.pid, Number(m.n)));
    }
    await Promise.all(this.consumers.map((c) => c.next('ready', 20)));
  }

  /** Pids of the consumer processes. */
  get pids(): number[] {
    return this.consumers.map((c) => c.pid);
  }

  private get totalAcked(): number {
    let sum = 0;
    for (const n of this.acked.values()) sum += n;
    return sum;
  }

  /** Publishes `n` persistent messages with confirms; resolves when all are confirmed. */
  async publish(n: number): Promise<void> {
    const publisher = this.publisher!;
    for (let start = 0; start < n; start += BATCH) {
      const end = Math.min(n, start + BATCH);
      const sends: Promise<void>[] = [];
      for (let i = start; i < end; i++) {
        sends.push(
          publisher.send(
            { routingKey: this.queue, durable: true, contentType: 'application/json' },
            taskBody(i + 1),
          ),
        );
      }
      await Promise.all(sends);
    }
  }

  /** Publishes `n` and waits until the consumers acked them: seconds from first send to last ack. */
  async runOnce(n: number): Promise<{ seconds: number; publishSeconds: number }> {
    const target = this.totalAcked + n;
    const t0 = nowMs();
    await this.publish(n);
    const published = nowMs();
    await pollUntil(() => this.totalAcked >= target, {
      timeout: 600,
      interval: 20,
      what: `${n} raw messages to be acked`,
      describe: () => `${this.totalAcked - (target - n)} acked`,
    });
    return { seconds: (nowMs() - t0) / 1000, publishSeconds: (published - t0) / 1000 };
  }

  /** Empties the queue (after a publish-only run). */
  async purge(): Promise<void> {
    await this.connection.queuePurge({ queue: this.queue });
  }

  /** Stops the consumers (by pid if they do not exit), deletes the queue, closes. */
  async dispose(): Promise<void> {
    await Promise.all(this.consumers.map((c) => c.stop(5)));
    this.consumers = [];
    try {
      await this.publisher?.close();
      await this.connection.queueDelete({ queue: this.queue });
    } finally {
      await this.connection.close();
    }
  }
}

/**
 * BullMQ on the local Redis: a unique queue, `workers` worker processes with `concurrency` each,
 * jobs added with `addBulk` ({@link BATCH} at a time) and `removeOnComplete`. The queue is
 * obliterated at the end.
 */
export class BullmqPeer {
  readonly name = `aiida-bench-${randomUUID()}`;
  readonly queue: Queue;
  private workers: ChildHelper[] = [];

  constructor() {
    this.queue = new Queue(this.name, { connection: { ...REDIS } });
  }

  /** Forks the worker processes and waits until each is connected. */
  async setup(workers: number, concurrency: number): Promise<void> {
    await this.queue.waitUntilReady();
    for (let i = 0; i < workers; i++) {
      this.workers.push(forkHelper(BULLMQ_WORKER, [this.name, String(concurrency)]));
    }
    await Promise.all(this.workers.map((w) => w.next('ready', 20)));
  }

  /** Pids of the worker processes. */
  get pids(): number[] {
    return this.workers.map((w) => w.pid);
  }

  /** Jobs not yet done (waiting, active, delayed, prioritized). */
  async pending(): Promise<number> {
    const counts = await this.queue.getJobCounts(
      'waiting',
      'active',
      'delayed',
      'prioritized',
      'waiting-children',
    );
    return Object.values(counts).reduce((a, b) => a + b, 0);
  }

  /** Adds `n` trivial `add` jobs, then polls until none is pending: seconds from first add. */
  async runOnce(n: number): Promise<{ seconds: number }> {
    const t0 = nowMs();
    for (let start = 0; start < n; start += BATCH) {
      const jobs = [];
      for (let i = start; i < Math.min(n, start + BATCH); i++) {
        jobs.push({ name: 'add', data: { x: i, y: 1 }, opts: { removeOnComplete: true } });
      }
      await this.queue.addBulk(jobs);
    }
    let last = n;
    await pollUntil(
      async () => {
        last = await this.pending();
        return last === 0;
      },
      {
        timeout: 600,
        interval: 20,
        what: `${n} BullMQ jobs to complete`,
        describe: () => `${last} pending`,
      },
    );
    const seconds = (nowMs() - t0) / 1000;
    const failed = await this.queue.getJobCountByTypes('failed');
    if (failed > 0) throw new Error(`${failed} BullMQ jobs failed`);
    return { seconds };
  }

  /** Stops the workers, obliterates the queue, closes the connection. */
  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop(10)));
    this.workers = [];
    try {
      await this.queue.obliterate({ force: true });
    } finally {
      await this.queue.close();
    }
  }
}
