import { publishFigures, throughputFigures } from '../src/figures.js';
import { atLeast, atMost } from '../src/results.js';
import type { Summary } from '../src/stats.js';
import { SYSTEMS } from '../src/variants.js';

const s = (median: number): Summary => ({
  median,
  min: median,
  max: median,
  n: 3,
  samples: [median],
});
const all = { systems: [...SYSTEMS], throughputN: 10_000 };

describe('atLeast', () => {
  test('is met at the threshold, missed below it, not measured without a ratio', () => {
    expect(atLeast(1, 1, 'g').met).toBe(true);
    expect(atLeast(0.999, 1, 'g').met).toBe(false);
    expect(atLeast(undefined, 1, 'g').met).toBeNull();
    expect(atLeast(Number.NaN, 1, 'g').met).toBeNull();
  });
});

describe('atMost', () => {
  test('is met at the threshold, missed above it, not measured without a ratio', () => {
    expect(atMost(1, 1, 'g').met).toBe(true);
    expect(atMost(1.001, 1, 'g').met).toBe(false);
    expect(atMost(undefined, 1, 'g').met).toBeNull();
    expect(atMost(Number.POSITIVE_INFINITY, 1, 'g').met).toBeNull();
  });
});

describe('throughputFigures', () => {
  const medians = new Map([
    ['ours-sqlite', s(2000)],
    ['ours-psql', s(5000)],
    ['ours-store-sqlite', s(9000)],
    ['ours-store-psql', s(4500)],
    ['bullmq', s(4000)],
    ['graphile', s(9000)],
    ['raw', s(10_000)],
    ['nodelay', s(2000)],
  ]);

  test('holds each store to BullMQ with the same workers, met or missed per store', () => {
    const figures = throughputFigures(all, 2, medians);
    const byId = new Map(figures.map((f) => [f.id, f]));
    expect(byId.get('throughput.2.bullmq')).toMatchObject({ ratio: 0.5, goal: { met: false } });
    expect(byId.get('throughput.psql.2.bullmq')).toMatchObject({
      ratio: 1.25,
      goal: { text: 'at least BullMQ (ratio >= 1)', met: true },
    });
  });

  test('reports graphile-worker beside each store without a goal; raw and nodelay for SQLite only', () => {
    const ids = throughputFigures(all, 4, medians).map((f) => f.id);
    expect(ids).toEqual([
      'throughput.4.bullmq',
      'throughput.4.graphile',
      'throughput.4.raw',
      'throughput.psql.4.bullmq',
      'throughput.psql.4.graphile',
      'throughput.store-sqlite.4.bullmq',
      'throughput.store-sqlite.4.graphile',
      'throughput.store-psql.4.bullmq',
      'throughput.store-psql.4.graphile',
      'throughput.4.nodelay',
    ]);
    const graphile = throughputFigures(all, 4, medians).find((f) => f.id.endsWith('graphile'));
    expect(graphile?.goal).toBeUndefined();
    const raw = throughputFigures(all, 4, medians).find((f) => f.id === 'throughput.4.raw');
    // 2,000 / 10,000 = 0.2 of raw, below the 0.45 of issue 4.
    expect(raw).toMatchObject({ ratio: 0.2, goal: { met: false } });
  });

  test('holds the store as the queue to graphile-worker, not BullMQ, met or missed per store', () => {
    const byId = new Map(throughputFigures(all, 1, medians).map((f) => [f.id, f]));
    // 9,000 / 9,000: equal is enough; 4,500 / 9,000 is half.
    expect(byId.get('throughput.store-sqlite.1.graphile')).toMatchObject({
      ratio: 1,
      goal: {
        text: 'at least graphile-worker with as many worker processes (ratio >= 1)',
        met: true,
      },
    });
    expect(byId.get('throughput.store-psql.1.graphile')).toMatchObject({
      ratio: 0.5,
      goal: { met: false },
    });
    // BullMQ is reported beside it, without a goal.
    expect(byId.get('throughput.store-psql.1.bullmq')).toMatchObject({ ratio: 1.125 });
    expect(byId.get('throughput.store-psql.1.bullmq')?.goal).toBeUndefined();
  });

  test('makes no figure for a system that did not run', () => {
    const only = new Map([
      ['ours-psql', s(1000)],
      ['graphile', s(9000)],
    ]);
    const figures = throughputFigures(
      { systems: ['ours-psql', 'graphile'], throughputN: 500 },
      1,
      only,
    );
    expect(figures.map((f) => f.id)).toEqual(['throughput.psql.1.graphile']);
  });
});

describe('publishFigures', () => {
  test('keeps the raw-publish goal for SQLite and compares each store with addJobs', () => {
    const figures = publishFigures(
      all,
      new Map([
        ['ours-sqlite', s(8000)],
        ['ours-psql', s(6000)],
        ['raw', s(16_000)],
        ['graphile', s(40_000)],
      ]),
    );
    const byId = new Map(figures.map((f) => [f.id, f]));
    expect(byId.get('publish.submitMany')?.goal).toMatchObject({ met: true });
    expect(byId.get('publish.psql.submitMany')?.goal).toBeUndefined();
    expect(byId.get('publish.psql.graphile')).toMatchObject({ ratio: 0.15 });
    expect([...byId.keys()]).toEqual([
      'publish.submitMany',
      'publish.graphile',
      'publish.psql.submitMany',
      'publish.psql.graphile',
    ]);
  });

  test('says that the store as the queue publishes nothing', () => {
    const figures = publishFigures(
      { systems: ['ours-store-sqlite', 'raw'], throughputN: 100 },
      new Map([
        ['ours-store-sqlite', s(9000)],
        ['raw', s(3000)],
      ]),
    );
    expect(figures.map((f) => [f.id, f.ratio, f.goal])).toEqual([
      ['publish.store-sqlite.submitMany', 3, undefined],
    ]);
    expect(figures[0]!.title).toContain('commit + wake-up; nothing published');
  });
});
