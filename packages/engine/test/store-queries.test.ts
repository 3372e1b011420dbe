import { join } from 'node:path';
import type { SqliteProcessStore } from '@aiida/engine';
import Database from 'better-sqlite3';
import { FakeClock, openTestStore, tempDir } from './helpers.js';

// The dashboard's queries: paged and sorted in SQL, counts and histograms over the whole store.
describe('SqliteProcessStore queries for dashboards', () => {
  let tmp: ReturnType<typeof tempDir>;
  let clock: FakeClock;
  let store: SqliteProcessStore;

  beforeEach(() => {
    tmp = tempDir();
    clock = new FakeClock(Date.parse('2026-01-01T00:00:00.000Z'));
    store = openTestStore(tmp.dir, clock);
  });
  afterEach(async () => {
    await store.close();
    tmp.remove();
  });

  /** Creates `n` processes of `type`, one second apart. */
  async function create(n: number, type = 'core.arithmetic.add'): Promise<number[]> {
    const pks: number[] = [];
    for (let i = 0; i < n; i++) {
      const [row] = await store.createProcesses([{ type, inputs: { i } }]);
      pks.push(row!.pk);
      clock.advance(1);
    }
    return pks;
  }

  /** Claims `pk`, waits `startDelay` is already past, runs for `runFor` seconds, ends `state`. */
  async function end(
    pk: number,
    state: 'finished' | 'excepted' | 'killed',
    runFor: number,
    exitStatus: number | null = state === 'finished' ? 0 : null,
  ): Promise<void> {
    const claim = await store.claim(pk, 'w1', 30, { maxAttempts: 3 });
    if (!claim.ok) throw new Error(`claim of ${pk} refused: ${claim.reason}`);
    clock.advance(runFor);
    await store.complete(claim.lease, { state, outputs: {}, exitStatus });
  }

  test('queryProcesses pages and sorts in the store and counts every match', async () => {
    const pks = await create(7);
    const first = await store.queryProcesses({ limit: 3 });
    expect(first.total).toBe(7);
    expect(first.processes.map((p) => p.pk)).toEqual([pks[6], pks[5], pks[4]]);
    const second = await store.queryProcesses({ limit: 3, offset: 3 });
    expect(second.processes.map((p) => p.pk)).toEqual([pks[3], pks[2], pks[1]]);
    const asc = await store.queryProcesses({ limit: 2, order: 'asc', sort: 'created' });
    expect(asc.processes.map((p) => p.pk)).toEqual([pks[0], pks[1]]);
    expect((await store.queryProcesses({ limit: 0 })).processes).toEqual([]);
  });

  test('queryProcesses filters by state, type, exit status, paused and creation time', async () => {
    const adds = await create(3);
    const [shell] = await create(1, 'core.shell');
    await end(adds[0]!, 'finished', 1, 0);
    await end(adds[1]!, 'finished', 1, 410);
    await store.requestPause(shell!);
    const finished = await store.queryProcesses({ states: ['finished'] });
    expect(finished.processes.map((p) => p.pk).sort()).toEqual([adds[0], adds[1]].sort());
    expect((await store.queryProcesses({ exitStatus: 410 })).processes.map((p) => p.pk)).toEqual([
      adds[1],
    ]);
    expect((await store.queryProcesses({ type: 'core.shell' })).total).toBe(1);
    expect((await store.queryProcesses({ paused: true })).processes.map((p) => p.pk)).toEqual([
      shell,
    ]);
    const created = (await store.getProcess(adds[1]!))!.createdAt;
    const window = await store.queryProcesses({
      createdAfter: created,
      createdBefore: (await store.getProcess(shell!))!.createdAt,
    });
    expect(window.processes.map((p) => p.pk).sort()).toEqual([adds[1], adds[2]].sort());
  });

  test('summarizeProcesses counts by state and type, and sums claims and owner losses', async () => {
    const adds = await create(3);
    await create(2, 'core.shell');
    await end(adds[0]!, 'finished', 1);
    await end(adds[1]!, 'excepted', 1);
    // An owner that lost its lease: claimed, expired, claimed again by another worker.
    await store.claim(adds[2]!, 'w1', 5, { maxAttempts: 3 });
    clock.advance(10);
    await store.claim(adds[2]!, 'w2', 5, { maxAttempts: 3 });
    const summary = await store.summarizeProcesses();
    expect(summary.total).toBe(5);
    expect(summary.counts).toEqual([
      { state: 'created', type: 'core.shell', count: 2, paused: 0 },
      { state: 'excepted', type: 'core.arithmetic.add', count: 1, paused: 0 },
      { state: 'finished', type: 'core.arithmetic.add', count: 1, paused: 0 },
      { state: 'running', type: 'core.arithmetic.add', count: 1, paused: 0 },
    ]);
    expect(summary.claims).toBe(4);
    expect(summary.ownerLosses).toBe(1);
    expect(summary.lastModifiedAt).toBe(new Date(clock.now()).toISOString());
  });

  test('processDurations builds cumulative histograms of queue and run times', async () => {
    const [a, b, c] = await create(3); // a waits 3 s before its claim, b 2 s, c 1 s (then runs)
    await end(a!, 'finished', 0.5);
    await end(b!, 'finished', 4);
    await end(c!, 'killed', 20);
    const d = await store.processDurations([10, 1, 5]);
    expect(d.bounds).toEqual([1, 5, 10]);
    expect(d.queued.count).toBe(3);
    expect(d.run).toEqual({ counts: [1, 2, 2], count: 3, sum: 24.5 });
    expect(d.queued.counts[2]).toBe(3);
  });

  test('processActivity counts ended processes per interval', async () => {
    const since = new Date(clock.now()).toISOString();
    const pks = await create(3); // now since + 3 s
    await end(pks[0]!, 'finished', 0);
    await end(pks[1]!, 'finished', 0);
    clock.advance(5); // since + 8 s: the third bucket [10, 15) has not begun
    await end(pks[2]!, 'excepted', 0);
    const buckets = await store.processActivity({ since, interval: 5 });
    expect(buckets.length).toBe(2);
    expect(buckets[0]!.time).toBe(since);
    expect(buckets.map((b) => [b.finished, b.excepted, b.killed])).toEqual([
      [2, 0, 0],
      [0, 1, 0],
    ]);
  });

  test('changeToken changes on a commit through this handle or another one, not on reads', async () => {
    const before = await store.changeToken();
    await store.queryProcesses({});
    expect(await store.changeToken()).toBe(before);
    const [row] = await store.createProcesses([{ type: 'core.arithmetic.add', inputs: {} }]);
    const afterOwn = await store.changeToken();
    expect(afterOwn).not.toBe(before);
    const other = openTestStore(tmp.dir, clock);
    try {
      await other.requestPause(row!.pk);
    } finally {
      await other.close();
    }
    expect(await store.changeToken()).not.toBe(afterOwn);
  });

  test('counts by state and type come from an index (no scan of the rows)', () => {
    const db = new Database(join(tmp.dir, 'store', 'aiida.sqlite'), { readonly: true });
    try {
      const plan = db
        .prepare(
          `EXPLAIN QUERY PLAN SELECT state, type, COUNT(*) AS count, SUM(paused) AS paused
           FROM processes GROUP BY state, type ORDER BY state, type`,
        )
        .all() as { detail: string }[];
      expect(plan.map((p) => p.detail).join('; ')).toContain(
        'USING COVERING INDEX processes_state_type',
      );
    } finally {
      db.close();
    }
  });
});
