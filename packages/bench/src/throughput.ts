import { BenchProfile } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { CPU_COMPONENTS, type CpuComponent, CpuMeter } from './cpu-meter.js';
import { publishFigures, throughputFigures } from './figures.js';
import { fmt, log } from './log.js';
import { addItems, OursThroughput, submitInBatches } from './ours.js';
import { BullmqPeer, GraphilePeer, RawRabbit } from './peers.js';
import { profiledDaemon } from './profiled-daemon.js';
import type { CpuBreakdown, Figure, ThroughputSeries } from './results.js';
import { nowMs, type Summary, summarize } from './stats.js';
import { oursVariants } from './variants.js';

/** Rotates `items` left by `k`, so each side goes first in turn. */
function rotate<T>(items: T[], k: number): T[] {
  const shift = k % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/** One side of the throughput run: set up with a worker count, run N, report its pids. */
interface Side {
  key: string;
  name: string;
  setup(workers: number): Promise<void>;
  runOnce(n: number): Promise<{ seconds: number }>;
  readonly pids: number[];
  dispose(): Promise<void>;
}

/** The sides `config.systems` asks for (BullMQ only when it can run), in a fixed order. */
function throughputSides(config: BenchConfig, workers: number, withBullmq: boolean): Side[] {
  const sides: Side[] = [];
  for (const variant of oursVariants(config.systems)) {
    const ours = new OursThroughput(
      `bench-tp-${variant.system}-${workers}`,
      config.concurrency,
      {},
      { variant },
    );
    sides.push({
      key: variant.system,
      name: variant.label,
      setup: (w) => ours.setup(w),
      runOnce: (n) => ours.runOnce(n),
      get pids() {
        return ours.pids;
      },
      dispose: () => ours.dispose(),
    });
  }
  const want = (s: string) => config.systems.includes(s);
  if (want('bullmq') && withBullmq) {
    const bullmq = new BullmqPeer();
    sides.push({
      key: 'bullmq',
      name: 'BullMQ (Redis)',
      setup: (w) => bullmq.setup(w, config.concurrency),
      runOnce: (n) => bullmq.runOnce(n),
      get pids() {
        return bullmq.pids;
      },
      dispose: () => bullmq.dispose(),
    });
  }
  if (want('graphile')) {
    const graphile = new GraphilePeer();
    sides.push({
      key: 'graphile',
      name: 'graphile-worker (PostgreSQL)',
      setup: (w) => graphile.setup(w),
      runOnce: (n) => graphile.runOnce(n),
      get pids() {
        return graphile.pids;
      },
      dispose: () => graphile.dispose(),
    });
  }
  if (want('raw')) {
    const raw = new RawRabbit();
    sides.push({
      key: 'raw',
      name: 'raw rabbitmq-client',
      setup: (w) => raw.setup(w, config.concurrency),
      runOnce: (n) => raw.runOnce(n),
      get pids() {
        return raw.pids;
      },
      dispose: () => raw.dispose(),
    });
  }
  if (want('nodelay')) {
    // The experiment: the SQLite daemon with TCP_NODELAY forced on its sockets and on ours.
    const nodelay = new OursThroughput(
      `bench-tpnd${workers}`,
      config.concurrency,
      profiledDaemon(config.repoRoot, '', 'none', { noDelay: true }),
      { noDelay: true },
    );
    sides.push({
      key: 'nodelay',
      name: 'ours, TCP_NODELAY (experiment)',
      setup: (w) => nodelay.setup(w),
      runOnce: (n) => nodelay.runOnce(n),
      get pids() {
        return nodelay.pids;
      },
      dispose: () => nodelay.dispose(),
    });
  }
  return sides;
}

/**
 * End-to-end throughput of trivial processes with 1, 2 and 4 workers: each of our variants
 * (storage + transport, variants.ts: submit N additions, until all finished in the store) against
 * BullMQ (same N, same number of worker processes, same concurrency, removeOnComplete),
 * graphile-worker (same N with addJobs, same number of worker processes, its batching options)
 * and the raw rabbitmq-client ceiling (N persistent messages with confirms, consumers acking with
 * prefetch = concurrency). Only the systems of `config.systems` run. Repetitions rotate the order.
 */
export async function benchThroughput(
  config: BenchConfig,
  withBullmq: boolean,
): Promise<{ figures: Figure[]; series: ThroughputSeries[]; cpu: CpuBreakdown[] }> {
  const n = config.throughputN;
  const series = new Map<string, ThroughputSeries>();
  const figures: Figure[] = [];
  const cpu: CpuBreakdown[] = [];
  for (const workers of config.workerCounts) {
    const sides = throughputSides(config, workers, withBullmq);
    const rates = new Map<string, number[]>(sides.map((s) => [s.key, []]));
    const cpuSamples = new Map<string, Record<CpuComponent, number>[]>(
      sides.map((s) => [s.key, []]),
    );
    try {
      for (const side of sides) await side.setup(workers);
      // One small warm-up each, not measured (JIT, connections, first queue declarations).
      for (const side of sides) await side.runOnce(Math.min(200, n));
      const meters = new Map(sides.map((s) => [s.key, new CpuMeter(() => s.pids)]));
      for (let rep = 0; rep < config.reps; rep++) {
        for (const side of rotate(sides, rep)) {
          const { result, perItem } = await meters.get(side.key)!.measure(n, () => side.runOnce(n));
          rates.get(side.key)!.push(n / result.seconds);
          cpuSamples.get(side.key)!.push(perItem);
        }
        log(
          `throughput ${workers} worker(s) rep ${rep + 1}/${config.reps}: ` +
            sides.map((s) => `${s.name} ${fmt(rates.get(s.key)!.at(-1)!)}/s`).join(', '),
        );
      }
    } finally {
      for (const side of sides) {
        try {
          await side.dispose();
        } catch (error) {
          log(`clean-up of ${side.name}: ${(error as Error).message}`);
        }
      }
    }
    const summary = new Map<string, Summary>();
    for (const side of sides) {
      const perItemMs: Record<string, Summary> = {};
      const samples = cpuSamples.get(side.key)!;
      for (const c of CPU_COMPONENTS) perItemMs[c] = summarize(samples.map((s) => s[c]));
      cpu.push({ workers, system: side.key, perItemMs });
      const s = summarize(rates.get(side.key)!);
      summary.set(side.key, s);
      if (!series.has(side.key)) series.set(side.key, { name: side.name, points: [] });
      series.get(side.key)!.points.push({ workers, value: s });
    }
    figures.push(...throughputFigures(config, workers, summary));
  }
  return { figures, series: [...series.values()], cpu };
}

/**
 * The submit side alone, with no worker running: `submitMany` of N additions on each of our
 * variants (store commit and task publish with confirms, {@link BATCH} per call) against raw
 * publishing of N persistent messages with confirms to a durable queue, and graphile-worker's
 * `addJobs` of N jobs ({@link BATCH} per call). Only the systems of `config.systems` run.
 */
export async function benchPublish(config: BenchConfig): Promise<Figure[]> {
  const n = config.throughputN;
  const variants = oursVariants(config.systems);
  const keys = [
    ...variants.map((v) => v.system),
    ...(['raw', 'graphile'] as const).filter((k) => config.systems.includes(k)),
  ];
  const rates = new Map<string, number[]>(keys.map((k) => [k, []]));
  const timed = async (key: string, warmUp: () => Promise<void>, work: () => Promise<void>) => {
    await warmUp();
    const t0 = nowMs();
    await work();
    rates.get(key)!.push(n / ((nowMs() - t0) / 1000));
  };
  for (let rep = 0; rep < config.reps; rep++) {
    for (const key of rotate(keys, rep)) {
      const variant = variants.find((v) => v.system === key);
      if (variant) {
        const bp = await BenchProfile.open({
          name: `bench-publish-${variant.system}`,
          storage: variant.storage,
          transport: variant.transport,
        });
        try {
          await bp.getEngine();
          await timed(
            key,
            () => submitInBatches(bp, addItems(Math.min(200, n))),
            () => submitInBatches(bp, addItems(n)),
          );
        } finally {
          await bp.dispose();
        }
      } else if (key === 'raw') {
        const rabbit = new RawRabbit();
        try {
          await rabbit.setup(0, 0);
          await timed(
            key,
            () => rabbit.publish(Math.min(200, n)),
            () => rabbit.publish(n),
          );
        } finally {
          await rabbit.dispose();
        }
      } else {
        const graphile = new GraphilePeer();
        try {
          await graphile.setup(0);
          await timed(
            key,
            () => graphile.addMany(Math.min(200, n)),
            () => graphile.addMany(n),
          );
        } finally {
          await graphile.dispose();
        }
      }
    }
    log(
      `publish rep ${rep + 1}/${config.reps}: ` +
        keys.map((k) => `${k} ${fmt(rates.get(k)!.at(-1)!)}/s`).join(', '),
    );
  }
  const summary = new Map([...rates].map(([k, v]) => [k, summarize(v)]));
  return publishFigures(config, summary);
}
