import type { BenchResults, CpuBreakdown, ProfileSummary, ThroughputSeries } from './results.js';

/**
 * Names of reports written before the bench measured more than one store: the series and CPU
 * rows of "ours" were SQLite + RabbitMQ's. An earlier report's names are read as today's.
 */
const RENAMED_SERIES: Record<string, string> = {
  'ours (aiida daemon)': 'ours (SQLite + RabbitMQ)',
};
const RENAMED_CPU_SYSTEMS: Record<string, string> = { ours: 'ours-sqlite' };

/**
 * What identifies a CPU profile entry across runs: its title; for an entry that is a line of
 * figures (no functions: start-up costs, phases of a start, PostgreSQL counters), the words
 * before its figures (up to the first `: `), so a new run's line replaces the earlier one.
 */
export function profileKey(p: ProfileSummary): string {
  if (p.top.length > 0) return p.what;
  const colon = p.what.indexOf(': ');
  return colon < 0 ? p.what : p.what.slice(0, colon);
}

/** The start of the note a merged run leaves, by what it measured. */
export function separateRunNote(what: string): string {
  return `The ${what} figures come from a separate run`;
}

/** What a partial run measured, in words: its sections, and its systems when not all ran. */
export function runScope(run: BenchResults): string {
  const sections = String(run.config.sections ?? '');
  const systems = run.config.systems;
  return systems && systems !== 'all' ? `${sections} (${systems})` : sections;
}

/**
 * `run`'s figures added to the report of an `earlier` run: figures of the same id, throughput
 * series of the same name, CPU rows of the same system and worker count, CPU profiles of the
 * same title, and scale and soak that `run` has are replaced; everything else of `earlier` stays (machine, versions
 * apart from the ones `run` adds, config, commands). A note names the run the new figures come
 * from; a note of an earlier merge of the same scope is replaced, as are errors of its sections.
 */
export function mergeResults(earlier: BenchResults, run: BenchResults): BenchResults {
  // A replaced figure keeps its place; a new one goes after the last figure of its section.
  const byId = new Map(run.figures.map((f) => [f.id, f]));
  const figures = earlier.figures.map((f) => byId.get(f.id) ?? f);
  const had = new Set(earlier.figures.map((f) => f.id));
  for (const f of run.figures) {
    if (had.has(f.id)) continue;
    const last = figures.map((x) => x.section).lastIndexOf(f.section);
    figures.splice(last >= 0 ? last + 1 : figures.length, 0, f);
  }
  const seriesNames = new Set(run.throughput.map((s) => s.name));
  const throughput: ThroughputSeries[] = [
    ...earlier.throughput
      .map((s) => ({ ...s, name: RENAMED_SERIES[s.name] ?? s.name }))
      .filter((s) => !seriesNames.has(s.name)),
    ...run.throughput,
  ];
  const cpuKey = (b: CpuBreakdown) => `${b.system}@${b.workers}`;
  const cpuKeys = new Set(run.cpu.map(cpuKey));
  const cpu = [
    ...earlier.cpu
      .map((b) => ({ ...b, system: RENAMED_CPU_SYSTEMS[b.system] ?? b.system }))
      .filter((b) => !cpuKeys.has(cpuKey(b))),
    ...run.cpu,
  ].sort((a, b) => a.workers - b.workers);
  const scope = runScope(run);
  const note = separateRunNote(scope);
  const sections = String(run.config.sections ?? '').split(', ');
  const { commit: _commit, ...versions } = run.versions;
  return {
    ...earlier,
    figures,
    throughput,
    cpu,
    scale: run.scale ?? earlier.scale,
    soak: run.soak ?? earlier.soak,
    profiles: [
      ...earlier.profiles.filter((p) => !run.profiles.some((r) => profileKey(r) === profileKey(p))),
      ...run.profiles,
    ],
    versions: { ...earlier.versions, ...versions },
    notes: [
      ...earlier.notes.filter((n) => !n.startsWith(note)),
      ...run.notes.filter((n) => !earlier.notes.includes(n)),
      `${note} (\`${run.command}\`, ${run.startedAt} to ${run.finishedAt}, commit ` +
        `${run.versions.commit ?? 'unknown'}, load average ` +
        `${JSON.stringify(run.machine.loadAverage)} at start, ` +
        `${JSON.stringify(run.machine.loadAverageAtEnd)} at end).`,
    ],
    errors: [
      ...earlier.errors.filter((e) => !sections.some((s) => e.startsWith(`${s}:`))),
      ...run.errors,
    ],
  };
}
