import { BenchProfile } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { CPU_COMPONENTS, type CpuComponent, CpuMeter } from './cpu-meter.js';
import { fmt, log } from './log.js';
import { addItems, OursThroughput, submitInBatches } from './ours.js';
import { BullmqPeer, RawRabbit } from './peers.js';
import { profiledDaemon } from './profiled-daemon.js';
import { type CpuBreakdown, type Figure, figure, type ThroughputSeries } from './results.js';
import { nowMs, type Summary, summarize } from './stats.js';

/** Rotates `items` left by `k`, so each side goes first in turn. */
function rotate<T>(items: T[], k: number): T[] {
  const shift = k % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}

/**
 * End-to-end throughput of trivial processes with 1, 2 and 4 workers: ours (submit N additions,
 * until all finished in the store) against BullMQ (same N, same number of worker processes, same
 * concurrency, removeOnComplete) and the raw rabbitmq-client ceiling (N persistent messages with
 * confirms, consumers acking with prefetch = concurrency). Repetitions alternate the order.
 */
export async function benchThroughput(
  config: BenchConfig,
): Promise<{ figures: Figure[]; series: ThroughputSeries[]; cpu: CpuBreakdown[] }> {
  const n = config.throughputN;
  const series: Record<'ours' | 'bullmq' | 'raw' | 'nodelay', ThroughputSeries> = {
    ours: { name: 'ours (aiida daemon)', points: [] },
    bullmq: { name: 'BullMQ (Redis)', points: [] },
    raw: { name: 'raw rabbitmq-client', points: [] },
    nodelay: { name: 'ours, TCP_NODELAY (experiment)', points: [] },
  };
  const figures: Figure[] = [];
  const cpu: CpuBreakdown[] = [];
  for (const workers of config.workerCounts) {
    const rates = {
      ours: [] as number[],
      bullmq: [] as number[],
      raw: [] as number[],
      nodelay: [] as number[],
    };
    const cpuSamples = {
      ours: [] as Record<CpuComponent, number>[],
      bullmq: [] as Record<CpuComponent, number>[],
      raw: [] as Record<CpuComponent, number>[],
      nodelay: [] as Record<CpuComponent, number>[],
    };
    const ours = new OursThroughput(`bench-tp${workers}`, config.concurrency);
    // The experiment: the same daemon with TCP_NODELAY forced on its sockets and on ours.
    const nodelay = new OursThroughput(
      `bench-tpnd${workers}`,
      config.concurrency,
      profiledDaemon(config.repoRoot, '', 'none', { noDelay: true }),
      { noDelay: true },
    );
    const bullmq = new BullmqPeer();
    const raw = new RawRabbit();
    try {
      await ours.setup(workers);
      await nodelay.setup(workers);
      await bullmq.setup(workers, config.concurrency);
      await raw.setup(workers, config.concurrency);
      // One small warm-up each, not measured (JIT, connections, first queue declarations).
      await ours.runOnce(Math.min(200, n));
      await nodelay.runOnce(Math.min(200, n));
      await bullmq.runOnce(Math.min(200, n));
      await raw.runOnce(Math.min(200, n));
      const meters = {
        ours: new CpuMeter(() => ours.pids),
        nodelay: new CpuMeter(() => nodelay.pids),
        bullmq: new CpuMeter(() => bullmq.pids),
        raw: new CpuMeter(() => raw.pids),
      };
      for (let rep = 0; rep < config.reps; rep++) {
        for (const who of rotate(['ours', 'bullmq', 'raw', 'nodelay'] as const, rep)) {
          const { result, perItem } = await meters[who].measure(n, () =>
            who === 'ours'
              ? ours.runOnce(n)
              : who === 'nodelay'
                ? nodelay.runOnce(n)
                : who === 'bullmq'
                  ? bullmq.runOnce(n)
                  : raw.runOnce(n),
          );
          rates[who].push(n / result.seconds);
          cpuSamples[who].push(perItem);
        }
        log(
          `throughput ${workers} worker(s) rep ${rep + 1}/${config.reps}: ours ${fmt(rates.ours.at(-1)!)}/s, ` +
            `BullMQ ${fmt(rates.bullmq.at(-1)!)}/s, raw ${fmt(rates.raw.at(-1)!)}/s; ` +
            `ours with TCP_NODELAY ${fmt(rates.nodelay.at(-1)!)}/s`,
        );
      }
    } finally {
      await ours.dispose();
      await nodelay.dispose();
      await bullmq.dispose();
      await raw.dispose();
    }
    for (const [system, samples] of Object.entries(cpuSamples)) {
      const perItemMs: Record<string, Summary> = {};
      for (const c of CPU_COMPONENTS) perItemMs[c] = summarize(samples.map((s) => s[c]));
      cpu.push({ workers, system, perItemMs });
    }
    const o = summarize(rates.ours);
    const b = summarize(rates.bullmq);
    const r = summarize(rates.raw);
    const nd = summarize(rates.nodelay);
    series.ours.points.push({ workers, value: o });
    series.nodelay.points.push({ workers, value: nd });
    series.bullmq.points.push({ workers, value: b });
    series.raw.points.push({ workers, value: r });
    const section = 'Throughput of trivial processes (end to end)';
    const vsBull = figure({
      id: `throughput.${workers}.bullmq`,
      section,
      title: `${workers} worker(s), ${n} core.arithmetic.add: ours vs BullMQ`,
      unit: 'proc/s',
      better: 'higher',
      ours: o,
      peerName: 'BullMQ',
      peer: b,
    });
    vsBull.goal = {
      text: 'at least BullMQ (ratio >= 1)',
      met: vsBull.ratio === undefined ? null : vsBull.ratio >= 1,
    };
    const vsRaw = figure({
      id: `throughput.${workers}.raw`,
      section,
      title: `${workers} worker(s): ours vs raw rabbitmq-client ceiling (msg/s)`,
      unit: 'proc/s',
      better: 'higher',
      ours: o,
      peerName: 'raw',
      peer: r,
    });
    vsRaw.goal = {
      text: 'at least 0.45 of raw (issue 4; BullMQ reaches about 0.47)',
      met: vsRaw.ratio === undefined ? null : vsRaw.ratio >= 0.45,
    };
    const vsNd = figure({
      id: `throughput.${workers}.nodelay`,
      section,
      title: `${workers} worker(s): experiment, ours with TCP_NODELAY forced vs ours as shipped`,
      unit: 'proc/s',
      better: 'higher',
      ours: nd,
      peerName: 'ours as shipped',
      peer: o,
      note: 'TCP_NODELAY forced on every socket; equal to as shipped since @aiida/broker sets noDelay',
    });
    figures.push(vsBull, vsRaw, vsNd);
  }
  return { figures, series: [series.ours, series.bullmq, series.raw, series.nodelay], cpu };
}

/**
 * The submit side alone, with no worker running: `submitMany` of N additions (store commit and
 * task publish with confirms, {@link BATCH} per call) against raw publishing of N persistent
 * messages with confirms to a durable queue.
 */
export async function benchPublish(config: BenchConfig): Promise<Figure[]> {
  const n = config.throughputN;
  const ours: number[] = [];
  const raw: number[] = [];
  for (let rep = 0; rep < config.reps; rep++) {
    for (const who of rotate(['ours', 'raw'] as const, rep)) {
      if (who === 'ours') {
        const bp = BenchProfile.create({ name: 'bench-publish' });
        try {
          await bp.getEngine();
          await submitInBatches(bp, addItems(Math.min(200, n))); // warm-up
          const items = addItems(n);
          const t0 = nowMs();
          await submitInBatches(bp, items);
          ours.push(n / ((nowMs() - t0) / 1000));
        } finally {
          await bp.dispose();
        }
      } else {
        const rabbit = new RawRabbit();
        try {
          await rabbit.setup(0, 0);
          await rabbit.publish(Math.min(200, n)); // warm-up
          const t0 = nowMs();
          await rabbit.publish(n);
          raw.push(n / ((nowMs() - t0) / 1000));
        } finally {
          await rabbit.dispose();
        }
      }
    }
    log(
      `publish rep ${rep + 1}/${config.reps}: submitMany ${fmt(ours.at(-1)!)}/s, raw publish ${fmt(raw.at(-1)!)}/s`,
    );
  }
  const f = figure({
    id: 'publish.submitMany',
    section: 'Submit rate (no workers running)',
    title: `submitMany of ${n} (commit + publish with confirms) vs raw publish with confirms`,
    unit: 'proc/s',
    better: 'higher',
    ours: summarize(ours),
    peerName: 'raw publish',
    peer: summarize(raw),
  });
  f.goal = {
    text: 'at least half the raw publish rate (ratio >= 0.5)',
    met: f.ratio === undefined ? null : f.ratio >= 0.5,
  };
  return [f];
}
