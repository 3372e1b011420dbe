import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { SYSTEMS } from './variants.js';

/** The benchmarks, by the name `--only` takes. */
export const SECTIONS = [
  'control',
  'publish',
  'throughput',
  'latency',
  'memory',
  'scale',
  'web',
  'soak',
] as const;
/** Sections a run without `--only` leaves out (the soak lasts half an hour). */
export const OPT_IN_SECTIONS: readonly Section[] = ['soak'];
export type Section = (typeof SECTIONS)[number];

/** What one run measures, and how often. */
export interface BenchConfig {
  quick: boolean;
  /** Repetitions of each figure (median, min, max over them). */
  reps: number;
  sections: Section[];
  /**
   * Which systems publish, throughput and latency run (`--systems`): our variants
   * (`ours-sqlite`, `ours-psql`, `ours-store-sqlite`, `ours-store-psql`, see variants.ts) and the
   * peers; control also times the `core.store` variants named here. Default: all.
   */
  systems: string[];
  /** Add this run's figures to the report in `outDir` instead of replacing it (`--merge`). */
  merge: boolean;
  /** Processes (or messages, jobs) per throughput repetition. */
  throughputN: number;
  workerCounts: number[];
  /** Slots of our workers = concurrency of BullMQ workers = prefetch of raw consumers. */
  concurrency: number;
  statusCalls: number;
  cliRuns: number;
  latencyTasks: number;
  /** Submissions per second in the latency run (open loop). */
  latencyRate: number;
  latencyWorkers: number;
  scaleN: number;
  /** Minutes of the soak run (`--only soak`). */
  soakMinutes: number;
  /** Record CPU profiles of a worker and the supervisor and summarise them. */
  cpuProfile: boolean;
  outDir: string;
  repoRoot: string;
}

/** The repository root (packages/bench/dist/config.js -> ../../..). */
export const REPO_ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));

const USAGE = `Usage: pnpm bench [-- options]   (or: node packages/bench/dist/main.js [options])

Options:
  --quick            fewer repetitions and smaller N (also: env BENCH_QUICK=1)
  --only <names>     comma-separated subset of: ${SECTIONS.join(', ')}
  --systems <names>  in publish, throughput and latency, run only these (default all):
                     ${SYSTEMS.join(', ')};
                     control also times the ours-store-* among them
  --workers <list>   worker counts of the throughput run (default 1,2,4)
  --merge            add this run's figures to the report in --out (replacing figures of the
                     same id, keeping the others) instead of rewriting it
  --reps <n>         repetitions per figure (default 5, quick 2)
  --n <n>            processes per throughput repetition (default 10000, quick 1000)
  --scale-n <n>      queued processes in the scale run (default 100000, quick 5000)
  --latency-workers <n>  workers in the latency run (default 2)
  --soak-minutes <n> length of the soak run (default 30); the soak runs only when named in
                     --only (e.g. --only soak --soak-minutes 2 --out /tmp/soak)
  --cpu-profile      also record and summarise CPU profiles of a worker and the supervisor
  --render-only      rewrite benchmarks.md and the chart from <out>/benchmarks.json, run nothing
  --out <dir>        where benchmarks.json/.md/.svg go (default docs/; quick: a temp folder)
  -h, --help         this text
`;

/** A bad command line: the message names the option at fault. */
export class BenchUsageError extends Error {}

/** Reads the command line and BENCH_QUICK. Exits with the usage on `--help` or a bad option. */
export function parseConfig(argv: string[]): BenchConfig {
  try {
    const config = readConfig(argv);
    if (config === 'help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    return config;
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error;
    process.stderr.write(`${error.message}\n\n${USAGE}`);
    process.exit(2);
  }
}

/** A comma-separated list of names, each one of `known`; throws naming the unknown ones. */
function names(text: string, known: readonly string[], what: string): string[] {
  const list = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const unknown = list.filter((n) => !known.includes(n));
  if (unknown.length > 0) {
    throw new BenchUsageError(`unknown ${what} ${unknown.join(', ')}; known: ${known.join(', ')}`);
  }
  if (list.length === 0) throw new BenchUsageError(`no ${what} given; known: ${known.join(', ')}`);
  return list;
}

/**
 * The configuration of `argv` and `env` (BENCH_QUICK), or `'help'`. Throws {@link BenchUsageError}
 * for a bad option, naming it; never exits or writes output.
 */
export function readConfig(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): BenchConfig | 'help' {
  // `pnpm bench -- --quick` hands the script a literal `--` first.
  if (argv[0] === '--') argv = argv.slice(1);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    throw new BenchUsageError((error as Error).message);
  }
  const { values } = parsed;
  if (values.help) return 'help';
  const quick = values.quick === true || env.BENCH_QUICK === '1';
  const int = (text: string | undefined, fallback: number, name: string) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      throw new BenchUsageError(`--${name} must be a positive whole number, got '${text}'`);
    }
    return n;
  };
  let sections: Section[] = SECTIONS.filter((s) => !OPT_IN_SECTIONS.includes(s));
  if (values.only !== undefined) {
    const chosen = names(values.only, SECTIONS, 'benchmark(s)');
    sections = SECTIONS.filter((s) => chosen.includes(s));
  }
  const systems =
    values.systems === undefined
      ? [...SYSTEMS]
      : SYSTEMS.filter((s) => names(values.systems!, SYSTEMS, 'system(s)').includes(s));
  const workerCounts =
    values.workers === undefined
      ? [1, 2, 4]
      : [...new Set(values.workers.split(',').map((w) => int(w.trim(), 0, 'workers')))];
  return {
    quick,
    reps: int(values.reps, quick ? 2 : 5, 'reps'),
    sections,
    systems,
    merge: values.merge === true,
    throughputN: int(values.n, quick ? 1000 : 10_000, 'n'),
    workerCounts,
    concurrency: 200,
    statusCalls: 200,
    cliRuns: 5,
    latencyTasks: quick ? 100 : 300,
    latencyRate: 50,
    latencyWorkers: int(values['latency-workers'], 2, 'latency-workers'),
    scaleN: int(values['scale-n'], quick ? 5000 : 100_000, 'scale-n'),
    soakMinutes: int(values['soak-minutes'], 30, 'soak-minutes'),
    cpuProfile: values['cpu-profile'] === true,
    outDir: resolve(
      values.out ?? (quick ? join(tmpdir(), 'aiida-bench-out') : join(REPO_ROOT, 'docs')),
    ),
    repoRoot: REPO_ROOT,
  };
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      only: { type: 'string' },
      systems: { type: 'string' },
      workers: { type: 'string' },
      merge: { type: 'boolean' },
      reps: { type: 'string' },
      n: { type: 'string' },
      'scale-n': { type: 'string' },
      'latency-workers': { type: 'string' },
      'soak-minutes': { type: 'string' },
      'cpu-profile': { type: 'boolean' },
      out: { type: 'string' },
      'render-only': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
}
