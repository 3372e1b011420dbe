import { BenchUsageError, readConfig } from '../src/config.js';
import { controlVariants, storeControlFigures } from '../src/control.js';
import {
  hasLatencyGoal,
  OURS_VARIANTS,
  oursVariants,
  SYSTEMS,
  throughputGoalPeer,
} from '../src/variants.js';

const config = (...argv: string[]) => {
  const c = readConfig(argv, {});
  if (c === 'help') throw new Error('unexpected help');
  return c;
};

describe('readConfig', () => {
  test('runs every system and worker counts 1, 2, 4 by default, replacing the report', () => {
    const c = config();
    expect(c.systems).toEqual([...SYSTEMS]);
    expect(c.systems).toEqual(
      expect.arrayContaining(['ours-sqlite', 'ours-psql', 'bullmq', 'graphile', 'raw']),
    );
    expect(c.workerCounts).toEqual([1, 2, 4]);
    expect(c.merge).toBe(false);
    expect(c.sections).not.toContain('soak');
  });

  test('--systems keeps the given systems in table order; --workers and --merge are read', () => {
    const c = config('--', '--systems', 'graphile, ours-psql', '--workers', '4,1', '--merge');
    expect(c.systems).toEqual(['ours-psql', 'graphile']);
    expect(c.workerCounts).toEqual([4, 1]);
    expect(c.merge).toBe(true);
  });

  test('--quick and BENCH_QUICK give the small run', () => {
    const quick = config('--quick');
    expect([quick.reps, quick.throughputN, quick.latencyTasks]).toEqual([2, 1000, 100]);
    const fromEnv = readConfig(['--n', '300'], { BENCH_QUICK: '1' });
    expect(fromEnv !== 'help' && [fromEnv.quick, fromEnv.throughputN]).toEqual([true, 300]);
  });

  test('an unknown system or section is refused, naming it and what is known', () => {
    expect(() => config('--systems', 'ours-psql,kafka')).toThrow(BenchUsageError);
    expect(() => config('--systems', 'ours-psql,kafka')).toThrow(
      /unknown system\(s\) kafka; known: ours-sqlite, ours-psql/,
    );
    expect(() => config('--only', 'throughput,warp')).toThrow(/unknown benchmark\(s\) warp/);
    expect(() => config('--systems', ' , ')).toThrow(/no system\(s\) given/);
  });

  test('worker counts and N must be positive whole numbers', () => {
    expect(() => config('--workers', '1,0')).toThrow(
      /--workers must be a positive whole number, got '0'/,
    );
    expect(() => config('--n', '2.5')).toThrow(/--n must be a positive whole number, got '2.5'/);
    expect(() => config('--bogus')).toThrow(BenchUsageError);
  });

  test('--help is answered without a configuration', () => {
    expect(readConfig(['-h'], {})).toBe('help');
  });
});

describe('OURS_VARIANTS', () => {
  test('each pair has its own --systems name and figure id prefix, SQLite keeping the old ids', () => {
    const systems = OURS_VARIANTS.map((v) => v.system);
    const prefixes = OURS_VARIANTS.map((v) => v.idPrefix);
    expect(new Set(systems).size).toBe(systems.length);
    expect(new Set(prefixes).size).toBe(prefixes.length);
    expect(OURS_VARIANTS[0]).toMatchObject({
      system: 'ours-sqlite',
      idPrefix: '',
      storage: 'core.sqlite',
      transport: 'core.rabbitmq',
    });
    expect(OURS_VARIANTS.find((v) => v.storage === 'core.psql')).toMatchObject({
      system: 'ours-psql',
      transport: 'core.rabbitmq',
    });
  });

  test('the store as the queue is measured on both stores, held to graphile-worker and BullMQ p50', () => {
    const store = OURS_VARIANTS.filter((v) => v.transport === 'core.store');
    expect(store.map((v) => [v.system, v.storage, v.idPrefix])).toEqual([
      ['ours-store-sqlite', 'core.sqlite', 'store-sqlite.'],
      ['ours-store-psql', 'core.psql', 'store-psql.'],
    ]);
    expect(store.map(throughputGoalPeer)).toEqual(['graphile', 'graphile']);
    expect(store.every(hasLatencyGoal)).toBe(true);
    const rabbit = OURS_VARIANTS.filter((v) => v.transport === 'core.rabbitmq');
    expect(rabbit.map(throughputGoalPeer)).toEqual(['bullmq', 'bullmq']);
    expect(rabbit.some(hasLatencyGoal)).toBe(false);
    expect(oursVariants(['graphile', 'ours-store-psql']).map((v) => v.system)).toEqual([
      'ours-store-psql',
    ]);
  });
});

describe('control of the store as the queue', () => {
  test('times the core.store pairs of --systems only', () => {
    expect(controlVariants(SYSTEMS).map((v) => v.system)).toEqual([
      'ours-store-sqlite',
      'ours-store-psql',
    ]);
    expect(controlVariants(['ours-sqlite', 'ours-psql', 'bullmq'])).toEqual([]);
  });

  test('start and revival against PM2, faster than PM2 to meet the goal', () => {
    const [start, revive] = storeControlFigures(
      OURS_VARIANTS.find((v) => v.system === 'ours-store-psql')!,
      { start: [300, 200, 250], revive: [100, 100, 100] },
      { start: [500, 500, 500], revive: [100, 100, 100] },
    );
    expect(start).toMatchObject({
      id: 'control.store-psql.start',
      ratio: 0.5,
      ours: { median: 250, min: 200, max: 300, n: 3 },
      goal: { met: true },
    });
    // Equal is not faster.
    expect(revive).toMatchObject({
      id: 'control.store-psql.revive',
      ratio: 1,
      goal: { met: false },
    });
  });
});
