import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { defaultBrokerSettings, getBrokerUrl } from '@aiida/config';
import { Queue } from 'bullmq';
import { Logger, makeWorkerUtils, runMigrations, type WorkerUtils } from 'graphile-worker';
import pg from 'pg';
import { Connection, type Publisher } from 'rabbitmq-client';
import { adminUrl, createBenchDatabase, dropBenchDatabase } from './pg-admin.js';
import { type ChildHelper, forkHelper, pollUntil } from './procs.js';
import { nowMs } from './stats.js';

/** Redis for BullMQ (the local one). */
export const REDIS = { host: '127.0.0.1', port: 6379 } as const;
/** Jobs or messages sent per pipelined batch, by every side (the broker's publish window too). */
export const BATCH = 1000;

const BULLMQ_WORKER = fileURLToPath(new URL('./children/bullmq-worker.js', import.meta.url));
const RAW_CONSUMER = fileURLToPath(new URL('./children/raw-consumer.js', import.meta.url));
const GRAPHILE_WORKER = fileURLToPath(new URL('./children/graphile-worker.js', import.meta.url));
/** The channel the latency run's trigger notifies with the ids of completed jobs. */
const DONE_CHANNEL = 'bench_gw_done';

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

/**
 * graphile-worker on the local PostgreSQL: a database of its own (unique name, created and
 * dropped by the bench, migrated once by the bench before any worker starts), `workers` worker
 * processes with the options of graphile-options.ts, jobs added with `addJobs` ({@link BATCH} at
 * a time, one attempt each). A job is done when its row is gone (graphile-worker deletes a job
 * when it completes). With `notifyDone`, a statement trigger on its jobs table notifies the ids
 * of deleted jobs at commit, so the bench hears a completion as it hears ours.
 */
export class GraphilePeer {
  private database: string | undefined;
  private utils: WorkerUtils | undefined;
  private client: pg.Client | undefined;
  private workers: ChildHelper[] = [];
  private readonly doneListeners = new Set<(ids: string[]) => void>();

  /** Creates and migrates the database; with `workers` > 0 forks the workers. */
  async setup(workers: number, options: { notifyDone?: boolean } = {}): Promise<void> {
    this.database = await createBenchDatabase('bench_gw_');
    const connectionString = adminUrl(this.database);
    await runMigrations({ connectionString, logger: quietLogger() });
    this.utils = await makeWorkerUtils({ connectionString, logger: quietLogger() });
    this.client = new pg.Client({ connectionString });
    this.client.on('error', () => undefined);
    await this.client.connect();
    if (options.notifyDone) {
      await this.client.query(`
        create function graphile_worker.bench_done() returns trigger language plpgsql as $$
        begin
          perform pg_notify('${DONE_CHANNEL}', (select string_agg(id::text, ',') from done));
          return null;
        end $$;
        create trigger bench_done after delete on graphile_worker._private_jobs
          referencing old table as done for each statement
          execute function graphile_worker.bench_done();
        listen ${DONE_CHANNEL};`);
      this.client.on('notification', (n) => {
        if (n.channel !== DONE_CHANNEL || !n.payload) return;
        const ids = n.payload.split(',');
        for (const listener of this.doneListeners) listener(ids);
      });
    }
    for (let i = 0; i < workers; i++) {
      this.workers.push(forkHelper(GRAPHILE_WORKER, [connectionString]));
    }
    await Promise.all(this.workers.map((w) => w.next('ready', 30)));
  }

  /** Pids of the worker processes. */
  get pids(): number[] {
    return this.workers.map((w) => w.pid);
  }

  /** Calls `listener` with the ids of jobs as they complete (needs `notifyDone`). */
  onDone(listener: (ids: string[]) => void): void {
    this.doneListeners.add(listener);
  }

  /** Adds one job; returns its id. */
  async add(identifier: string, payload: Record<string, unknown>): Promise<string> {
    const job = await this.utils!.addJob(identifier, payload, { maxAttempts: 1 });
    return String(job.id);
  }

  /** Adds `n` trivial `add` jobs with `addJobs`, {@link BATCH} per call. */
  async addMany(n: number): Promise<void> {
    for (let start = 0; start < n; start += BATCH) {
      const specs = [];
      for (let i = start; i < Math.min(n, start + BATCH); i++) {
        specs.push({ identifier: 'add', payload: { x: i, y: 1 }, maxAttempts: 1 });
      }
      await this.utils!.addJobs(specs);
    }
  }

  /** Jobs still in the table, and how many of them failed. */
  async pending(): Promise<{ left: number; failed: number }> {
    const { rows } = await this.client!.query<{ remaining: number; failed: number }>(
      'select count(*)::int as remaining, count(*) filter (where last_error is not null)::int ' +
        'as failed from graphile_worker._private_jobs',
    );
    return { left: rows[0]!.remaining, failed: rows[0]!.failed };
  }

  /** Adds `n` trivial jobs, then polls until none is left: seconds from the first add. */
  async runOnce(n: number): Promise<{ seconds: number }> {
    const t0 = nowMs();
    await this.addMany(n);
    let last = { left: n, failed: 0 };
    await pollUntil(
      async () => {
        last = await this.pending();
        if (last.failed > 0) throw new Error(`${last.failed} graphile-worker jobs failed`);
        return last.left === 0;
      },
      {
        timeout: 600,
        interval: 20,
        what: `${n} graphile-worker jobs to complete`,
        describe: () => `${last.left} left`,
      },
    );
    return { seconds: (nowMs() - t0) / 1000 };
  }

  /** Deletes every job (after an add-only run). */
  async purge(): Promise<void> {
    await this.client!.query('delete from graphile_worker._private_jobs');
  }

  /** Stops the workers (by pid if they do not exit), closes, drops the database. */
  async dispose(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop(10)));
    this.workers = [];
    try {
      await this.utils?.release();
      await this.client?.end();
    } finally {
      if (this.database) await dropBenchDatabase(this.database);
    }
  }
}

/** graphile-worker's logger, reduced to warnings and errors (on stderr). */
function quietLogger(): Logger {
  return new Logger(() => (level, message) => {
    if (level === 'error' || level === 'warning') {
      process.stderr.write(`graphile-worker: ${message}\n`);
    }
  });
}
