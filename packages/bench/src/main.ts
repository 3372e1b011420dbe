/**
 * `pnpm bench`: the daemon side by side with what users would pick instead (PM2, BullMQ, raw
 * rabbitmq-client), alternating runs, medians over repetitions. Writes benchmarks.json,
 * benchmarks.md and benchmarks-throughput.svg into --out (docs/ by default).
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { throughputChartSvg } from './chart.js';
import { parseConfig, type Section } from './config.js';
import { benchControl } from './control.js';
import { GRAPHILE_OPTIONS_TEXT } from './graphile-options.js';
import { benchLatency } from './latency.js';
import { fmt, log } from './log.js';
import { collectVersions, describeMachine } from './machine.js';
import { benchMemory } from './memory.js';
import { mergeResults } from './merge.js';
import { bullmqUnavailable, ioredisPath } from './peers.js';
import { dropLeftoverDatabases } from './pg-admin.js';
import { BENCH_RUN_ENV, pidsOfRun, stopPid } from './procs.js';
import { benchProfiles } from './profile.js';
import { previousAnalysis, renderMarkdown } from './report.js';
import type { BenchResults, Figure } from './results.js';
import { benchScale } from './scale.js';
import { benchSoak } from './soak.js';
import { benchPublish, benchThroughput } from './throughput.js';
import { SYSTEMS } from './variants.js';
import { benchWeb } from './web.js';

// `--render-only`: rewrite benchmarks.md and the chart from an existing benchmarks.json.
if (process.argv.includes('--render-only')) {
  const outDir = parseConfig(process.argv.slice(2).filter((a) => a !== '--render-only')).outDir;
  const saved = JSON.parse(readFileSync(join(outDir, 'benchmarks.json'), 'utf8')) as BenchResults;
  writeOutputs(outDir, saved, Number(saved.config['throughput N']));
  process.exit(0);
}

const runId = randomUUID();
process.env[BENCH_RUN_ENV] = runId;
const argv = process.argv.slice(2).filter((a, i) => !(i === 0 && a === '--'));
const config = parseConfig(argv);

async function sweepLeftovers(): Promise<{ pids: number[]; databases: string[] }> {
  const pids = pidsOfRun(runId);
  for (const pid of pids) await stopPid(pid, 3);
  // After the processes: a database is dropped once nothing of ours is connected to it.
  const databases = await dropLeftoverDatabases();
  return { pids, databases };
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping what the bench started`);
    void sweepLeftovers().finally(() => process.exit(130));
  });
}

const results: BenchResults = {
  startedAt: new Date().toISOString(),
  finishedAt: '',
  command: `pnpm bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`,
  quick: config.quick,
  config: {
    sections: config.sections.join(', '),
    systems: config.systems.length === SYSTEMS.length ? 'all' : config.systems.join(', '),
    repetitions: config.reps,
    'throughput N': config.throughputN,
    'worker counts': config.workerCounts.join(', '),
    'concurrency (our slots = BullMQ concurrency = raw prefetch)': config.concurrency,
    'status calls per repetition': config.statusCalls,
    'status commands per repetition': config.cliRuns,
    'latency tasks per repetition': config.latencyTasks,
    'latency submit rate (/s)': config.latencyRate,
    'latency workers': config.latencyWorkers,
    'scale N': config.scaleN,
    ...(config.sections.includes('soak') ? { 'soak minutes': config.soakMinutes } : {}),
  },
  machine: describeMachine(),
  versions: await collectVersions(config.repoRoot),
  figures: [],
  throughput: [],
  cpu: [],
  profiles: [],
  notes: [],
  errors: [],
};
log(`bench run ${runId}: ${config.sections.join(', ')}; ${config.reps} repetitions`);

const bullmqMissing = bullmqUnavailable();
if (bullmqMissing) {
  results.notes.push(bullmqMissing);
  log(bullmqMissing);
} else {
  const where = ioredisPath();
  if (where && !where.startsWith(config.repoRoot)) {
    results.notes.push(
      `BullMQ's Redis client ioredis ${results.versions.ioredis} was loaded from outside the ` +
        `workspace (${where}, through NODE_PATH): it is not a dependency of packages/bench yet.`,
    );
  }
}

if (
  config.systems.includes('graphile') &&
  config.sections.some((s) => ['publish', 'throughput', 'latency'].includes(s))
) {
  results.notes.push(`${GRAPHILE_OPTIONS_TEXT}.`);
}

async function section(name: Section, run: () => Promise<Figure[]>): Promise<void> {
  if (!config.sections.includes(name)) return;
  log(`--- ${name} ---`);
  try {
    const figures = await run();
    results.figures.push(...figures);
    for (const f of figures) {
      log(
        `${f.id}: ours ${fmt(f.ours.median)} ${f.unit}` +
          (f.peer
            ? `, ${f.peerName} ${fmt(f.peer.median)} ${f.unit}, ratio ${fmt(f.ratio ?? Number.NaN)}`
            : '') +
          (f.goal
            ? ` (${f.goal.met === null ? 'not measured' : f.goal.met ? 'met' : 'MISSED'})`
            : ''),
      );
    }
  } catch (error) {
    const message = `${name}: ${(error as Error).stack ?? String(error)}`;
    results.errors.push(message.split('\n').slice(0, 4).join(' / '));
    log(`FAILED ${message}`);
  }
}

try {
  await section('control', () => benchControl(config));
  await section('publish', () => benchPublish(config));
  await section('throughput', async () => {
    const { figures, series, cpu } = await benchThroughput(config, bullmqMissing === null);
    results.throughput = series;
    results.cpu = cpu;
    return figures;
  });
  await section('latency', () => benchLatency(config, bullmqMissing === null));
  await section('memory', () => benchMemory(config, bullmqMissing === null));
  await section('scale', async () => {
    const { figures, traces, seconds, heap } = await benchScale(config);
    results.scale = { traces, processes: config.scaleN, seconds, heap };
    return figures;
  });
  await section('web', () => benchWeb(config));
  await section('soak', async () => {
    const { figures, soak } = await benchSoak(config);
    results.soak = soak;
    return figures;
  });
  if (config.cpuProfile) {
    log('--- cpu profiles ---');
    try {
      results.profiles = await benchProfiles(config);
    } catch (error) {
      results.errors.push(`cpu profiles: ${(error as Error).message}`);
      log(`FAILED cpu profiles: ${(error as Error).stack}`);
    }
  }
} finally {
  const left = await sweepLeftovers();
  if (left.pids.length > 0) {
    results.errors.push(
      `processes left running by the bench, stopped by pid: ${left.pids.join(', ')}`,
    );
  }
  if (left.databases.length > 0) {
    results.errors.push(`PostgreSQL databases left by the bench, dropped: ${left.databases}`);
  }
}

results.finishedAt = new Date().toISOString();
results.machine.loadAverageAtEnd = describeMachine().loadAverage;
const failed = results.errors.length > 0;
// A soak-only run (half an hour, run on its own) and a `--merge` run add their figures to the
// report of the last full run in `outDir` instead of replacing it.
writeOutputs(
  config.outDir,
  config.merge || config.sections.join() === 'soak'
    ? withEarlierRun(config.outDir, results)
    : results,
  config.throughputN,
);
process.exit(failed ? 1 : 0);

/** `run` merged into the report in `outDir` (see {@link mergeResults}), or `run` if none. */
function withEarlierRun(outDir: string, run: BenchResults): BenchResults {
  let earlier: BenchResults;
  try {
    earlier = JSON.parse(readFileSync(join(outDir, 'benchmarks.json'), 'utf8')) as BenchResults;
  } catch {
    return run;
  }
  return mergeResults(earlier, run);
}

/** Writes benchmarks.json, benchmarks.md (keeping its analysis block) and the chart. */
function writeOutputs(outDir: string, results: BenchResults, throughputN: number): void {
  mkdirSync(outDir, { recursive: true });
  const chartFile = 'benchmarks-throughput.svg';
  const haveChart = results.throughput.some((s) => s.points.length > 0);
  if (haveChart) {
    writeFileSync(
      join(outDir, chartFile),
      throughputChartSvg(results.throughput, {
        title: `Trivial processes end to end, N = ${throughputN.toLocaleString('en-US')}`,
        unit: 'processes (messages) per second',
      }),
    );
  }
  writeFileSync(join(outDir, 'benchmarks.json'), `${JSON.stringify(results, null, 2)}\n`);
  const mdPath = join(outDir, 'benchmarks.md');
  writeFileSync(
    mdPath,
    renderMarkdown(results, {
      chartFile: haveChart ? chartFile : null,
      analysis: previousAnalysis(mdPath),
    }),
  );
  log(`wrote ${mdPath}, benchmarks.json${haveChart ? `, ${chartFile}` : ''}`);
}
