/**
 * The figures of the publish and throughput runs from their medians, and the goals they are held
 * to: pure, so the goal rules are unit-tested (test/figures.test.ts).
 */
import type { BenchConfig } from './config.js';
import { atLeast, type Figure, figure } from './results.js';
import type { Summary } from './stats.js';
import { oursVariants, throughputGoalPeer } from './variants.js';

/** ours / peer for the rates, with the goal `ratio >= min` when `goal` is given. */
export function rateFigure(init: {
  id: string;
  section: string;
  title: string;
  ours: Summary;
  peerName: string;
  peer: Summary;
  goal?: { min: number; text: string };
  note?: string;
}): Figure {
  const f = figure({
    id: init.id,
    section: init.section,
    title: init.title,
    unit: 'proc/s',
    better: 'higher',
    ours: init.ours,
    peerName: init.peerName,
    peer: init.peer,
    ...(init.note ? { note: init.note } : {}),
  });
  if (init.goal) f.goal = atLeast(f.ratio, init.goal.min, init.goal.text);
  return f;
}

/** The figures of one worker count from the medians of the sides that ran (by system key). */
export function throughputFigures(
  config: Pick<BenchConfig, 'systems' | 'throughputN'>,
  workers: number,
  summary: Map<string, Summary>,
): Figure[] {
  const n = config.throughputN;
  const section = 'Throughput of trivial processes (end to end)';
  const figures: Figure[] = [];
  for (const [index, variant] of oursVariants(config.systems).entries()) {
    const ours = summary.get(variant.system);
    if (!ours) continue;
    const id = (peer: string) => `throughput.${variant.idPrefix}${workers}.${peer}`;
    const goalPeer = throughputGoalPeer(variant);
    const bullmq = summary.get('bullmq');
    if (bullmq) {
      figures.push(
        rateFigure({
          id: id('bullmq'),
          section,
          title: `${workers} worker(s), ${n} core.arithmetic.add: ${variant.label} vs BullMQ`,
          ours,
          peerName: 'BullMQ',
          peer: bullmq,
          ...(goalPeer === 'bullmq'
            ? { goal: { min: 1, text: 'at least BullMQ (ratio >= 1)' } }
            : {}),
        }),
      );
    }
    const graphile = summary.get('graphile');
    if (graphile) {
      figures.push(
        rateFigure({
          id: id('graphile'),
          section,
          title: `${workers} worker(s): ${variant.label} vs graphile-worker (jobs/s)`,
          ours,
          peerName: 'graphile-worker',
          peer: graphile,
          ...(goalPeer === 'graphile'
            ? {
                goal: {
                  min: 1,
                  text: 'at least graphile-worker with as many worker processes (ratio >= 1)',
                },
              }
            : {}),
        }),
      );
    }
    const raw = summary.get('raw');
    // The raw ceiling and its goal (issue 4) belong to the first pair, SQLite + RabbitMQ.
    if (raw && index === 0 && variant.idPrefix === '') {
      figures.push(
        rateFigure({
          id: id('raw'),
          section,
          title: `${workers} worker(s): ${variant.label} vs raw rabbitmq-client ceiling (msg/s)`,
          ours,
          peerName: 'raw',
          peer: raw,
          goal: { min: 0.45, text: 'at least 0.45 of raw (issue 4; BullMQ reaches about 0.47)' },
        }),
      );
    }
  }
  const shipped = summary.get('ours-sqlite');
  const nodelay = summary.get('nodelay');
  if (shipped && nodelay) {
    figures.push(
      rateFigure({
        id: `throughput.${workers}.nodelay`,
        section,
        title: `${workers} worker(s): experiment, ours with TCP_NODELAY forced vs ours as shipped`,
        ours: nodelay,
        peerName: 'ours as shipped',
        peer: shipped,
        note: 'TCP_NODELAY forced on every socket; equal to as shipped since @aiida/broker sets noDelay',
      }),
    );
  }
  return figures;
}

/** The submit-rate figures from the medians of the systems that ran (by system key). */
export function publishFigures(
  config: Pick<BenchConfig, 'systems' | 'throughputN'>,
  summary: Map<string, Summary>,
): Figure[] {
  const n = config.throughputN;
  const section = 'Submit rate (no workers running)';
  const figures: Figure[] = [];
  for (const [index, variant] of oursVariants(config.systems).entries()) {
    const ours = summary.get(variant.system);
    if (!ours) continue;
    const raw = summary.get('raw');
    if (raw) {
      const first = index === 0 && variant.idPrefix === '';
      figures.push(
        rateFigure({
          id: `publish.${variant.idPrefix}submitMany`,
          section,
          title:
            variant.transport === 'core.store'
              ? `${variant.label}: submitMany of ${n} (commit + wake-up; nothing published) vs raw publish with confirms`
              : `${variant.label}: submitMany of ${n} (commit + publish with confirms) vs raw publish with confirms`,
          ours,
          peerName: 'raw publish',
          peer: raw,
          // The goal of issue 4 is the SQLite store's; the others are reported beside it.
          ...(first
            ? { goal: { min: 0.5, text: 'at least half the raw publish rate (ratio >= 0.5)' } }
            : {}),
        }),
      );
    }
    const graphile = summary.get('graphile');
    if (graphile) {
      figures.push(
        rateFigure({
          id: `publish.${variant.idPrefix}graphile`,
          section,
          title: `${variant.label}: submitMany of ${n} vs graphile-worker addJobs of ${n} (1,000 per call)`,
          ours,
          peerName: 'graphile-worker addJobs',
          peer: graphile,
        }),
      );
    }
  }
  return figures;
}
