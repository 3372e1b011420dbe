import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

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

/** Reads the command line and BENCH_QUICK. Exits with the usage on `--help` or a bad option. */
export function parseConfig(argv: string[]): BenchConfig {
  // `pnpm bench -- --quick` hands the script a literal `--` first.
  if (argv[0] === '--') argv = argv.slice(1);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = values.quick === true || process.env.BENCH_QUICK === '1';
  const int = (text: string | undefined, fallback: number, name: string) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      process.stderr.write(`--${name} must be a positive whole number, got '${text}'\n`);
      process.exit(2);
    }
    return n;
  };
  let sections: Section[] = SECTIONS.filter((s) => !OPT_IN_SECTIONS.includes(s));
  if (values.only !== undefined) {
    const names = values.only.split(',').map((s) => s.trim());
    const unknown = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
    if (unknown.length > 0) {
      process.stderr.write(`unknown benchmark(s) ${unknown.join(', ')}; known: ${SECTIONS}\n`);
      process.exit(2);
    }
    sections = SECTIONS.filter((s) => names.includes(s));
  }
  return {
    quick,
    reps: int(values.reps, quick ? 2 : 5, 'reps'),
    sections,
    throughputN: int(values.n, quick ? 1000 : 10_000, 'n'),
    workerCounts: [1, 2, 4],
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
