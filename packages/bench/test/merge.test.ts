import { mergeResults, profileKey, separateRunNote } from '../src/merge.js';
import type { BenchResults, Figure, ProfileSummary } from '../src/results.js';

const summary = (median: number) => ({ median, min: median, max: median, n: 1, samples: [median] });
const fig = (id: string, section: string, median: number): Figure => ({
  id,
  section,
  title: id,
  unit: 'proc/s',
  better: 'higher',
  ours: summary(median),
});

function results(init: Partial<BenchResults>): BenchResults {
  return {
    startedAt: 's',
    finishedAt: 'f',
    command: 'pnpm bench',
    quick: false,
    config: { sections: 'control, throughput', systems: 'all' },
    machine: { loadAverage: [1, 1, 1], loadAverageAtEnd: [1, 1, 1] },
    versions: { node: 'v20', commit: 'aaa' },
    figures: [],
    throughput: [],
    cpu: [],
    profiles: [],
    notes: [],
    errors: [],
    ...init,
  };
}

describe('mergeResults', () => {
  const earlier = results({
    figures: [
      fig('control.start', 'Control', 1),
      fig('throughput.1.bullmq', 'Throughput', 2000),
      fig('throughput.2.bullmq', 'Throughput', 2500),
      fig('scale.rss.0', 'Scale', 1),
    ],
    throughput: [
      { name: 'ours (aiida daemon)', points: [{ workers: 1, value: summary(2000) }] },
      { name: 'BullMQ (Redis)', points: [{ workers: 1, value: summary(6000) }] },
    ],
    cpu: [{ workers: 1, system: 'bullmq', perItemMs: { bench: summary(0.1) } }],
    notes: ['an old note'],
    errors: ['throughput: timed out', 'control: failed'],
  });
  const run = results({
    command: 'pnpm bench -- --only throughput --systems ours-psql,bullmq --merge',
    config: { sections: 'throughput', systems: 'ours-psql, bullmq' },
    versions: { node: 'v20', commit: 'bbb', 'graphile-worker': '0.17.3' },
    figures: [
      fig('throughput.1.bullmq', 'Throughput', 2100),
      fig('throughput.psql.1.bullmq', 'Throughput', 900),
    ],
    throughput: [
      { name: 'ours (PostgreSQL + RabbitMQ)', points: [{ workers: 1, value: summary(900) }] },
      { name: 'BullMQ (Redis)', points: [{ workers: 1, value: summary(5000) }] },
    ],
    cpu: [{ workers: 1, system: 'bullmq', perItemMs: { bench: summary(0.2) } }],
  });

  test('replaces figures of the same id in place and puts new ones after their section', () => {
    const merged = mergeResults(earlier, run);
    expect(merged.figures.map((f) => [f.id, f.ours.median])).toEqual([
      ['control.start', 1],
      ['throughput.1.bullmq', 2100],
      ['throughput.2.bullmq', 2500],
      ['throughput.psql.1.bullmq', 900],
      ['scale.rss.0', 1],
    ]);
  });

  test('replaces series and CPU rows of the run, keeps the others', () => {
    const merged = mergeResults(earlier, run);
    expect(merged.throughput.map((s) => [s.name, s.points[0]!.value.median])).toEqual([
      ['ours (SQLite + RabbitMQ)', 2000],
      ['ours (PostgreSQL + RabbitMQ)', 900],
      ['BullMQ (Redis)', 5000],
    ]);
    expect(merged.cpu).toEqual(run.cpu);
  });

  test("reads an older report's SQLite series and CPU rows under today's names", () => {
    const sqlite = results({
      config: { sections: 'throughput', systems: 'ours-sqlite' },
      throughput: [
        { name: 'ours (SQLite + RabbitMQ)', points: [{ workers: 1, value: summary(2500) }] },
      ],
      cpu: [{ workers: 1, system: 'ours-sqlite', perItemMs: { bench: summary(0.3) } }],
    });
    const old = { ...earlier, cpu: [{ workers: 1, system: 'ours', perItemMs: {} }] };
    const merged = mergeResults(old, sqlite);
    expect(merged.throughput.map((s) => s.name)).toEqual([
      'BullMQ (Redis)',
      'ours (SQLite + RabbitMQ)',
    ]);
    expect(merged.cpu).toEqual(sqlite.cpu);
  });

  test("keeps the earlier run's commit and config, adds versions, names the run in a note", () => {
    const merged = mergeResults(earlier, run);
    expect(merged.versions).toEqual({ node: 'v20', commit: 'aaa', 'graphile-worker': '0.17.3' });
    expect(merged.config).toEqual(earlier.config);
    const note = separateRunNote('throughput (ours-psql, bullmq)');
    expect(merged.notes[0]).toBe('an old note');
    expect(merged.notes[1]).toContain(note);
    expect(merged.notes[1]).toContain('commit bbb');
    // Merging the same scope again replaces that note rather than adding a second.
    const again = mergeResults(merged, run);
    expect(again.notes.filter((n) => n.startsWith(note))).toHaveLength(1);
  });

  test("drops the earlier errors of the run's sections only", () => {
    expect(mergeResults(earlier, run).errors).toEqual(['control: failed']);
  });

  test('a soak-only run leaves the note the soak merge always left', () => {
    const soak = results({ config: { sections: 'soak', systems: 'all' } });
    expect(mergeResults(earlier, soak).notes.at(-1)).toMatch(
      /^The soak figures come from a separate run \(/,
    );
  });

  test('a line of figures among the profiles replaces the same line of an earlier run', () => {
    const line = (what: string): ProfileSummary => ({
      what,
      file: '',
      totalMs: 0,
      top: [],
      byArea: [],
    });
    const profile = (what: string): ProfileSummary => ({
      what,
      file: 'x.cpuprofile',
      totalMs: 10,
      top: [{ fn: 'f', where: 'a.js:1', selfMs: 10, share: 1 }],
      byArea: [],
    });
    const old = results({
      profiles: [
        line('start-up costs (wall, median of 5): node -e 0 91 ms'),
        line('PostgreSQL during those 10 processes of ours (A): 0.16 transactions'),
        line('PostgreSQL during those 10 processes of ours (B): 0.07 transactions'),
        profile('worker: start, 10 additions'),
      ],
    });
    const next = results({
      profiles: [
        line('start-up costs (wall, median of 5): node -e 0 76 ms'),
        line('PostgreSQL during those 10 processes of ours (B): 0.05 transactions'),
        profile('worker: start, 10 additions'),
      ],
    });
    expect(profileKey(next.profiles[0]!)).toBe('start-up costs (wall, median of 5)');
    expect(mergeResults(old, next).profiles.map((p) => p.what)).toEqual([
      'PostgreSQL during those 10 processes of ours (A): 0.16 transactions',
      'start-up costs (wall, median of 5): node -e 0 76 ms',
      'PostgreSQL during those 10 processes of ours (B): 0.05 transactions',
      'worker: start, 10 additions',
    ]);
  });
});
