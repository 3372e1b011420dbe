import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BenchProfile } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { type HeapGroup, summarizeHeapSnapshot } from './heap-snapshot.js';
import { fmt, log } from './log.js';
import { addItems, assertAllFinished, noneActive, submitInBatches } from './ours.js';
import { BATCH } from './peers.js';
import { pollUntil, procStatusBytes, signalPid } from './procs.js';
import { shortUrl } from './profile.js';
import { profiledDaemon } from './profiled-daemon.js';
import { type Figure, figure, type MemoryBreakdown, type RssTrace } from './results.js';
import { median, nowMs, summarize } from './stats.js';

const WORKERS = 2;
const SAMPLE_MS = 250;
const MB = 1024 * 1024;

/** RSS around `fraction` of the run: the median of the samples within ±2.5 % of the run. */
function rssAt(samples: [number, number][], seconds: number, fraction: number): number | null {
  const centre = seconds * fraction;
  const half = seconds * 0.025;
  const near = samples.filter(([t]) => Math.abs(t - centre) <= half).map(([, rss]) => rss);
  if (near.length > 0) return median(near);
  let best: [number, number] | undefined;
  for (const s of samples) {
    if (!best || Math.abs(s[0] - centre) < Math.abs(best[0] - centre)) best = s;
  }
  return best ? best[1] : null;
}

/**
 * Scale: `scaleN` processes queued with no daemon running, then drained by 2 workers while each
 * worker's RSS is sampled from /proc every 250 ms. Flat means RSS at 90 % of the run is at most
 * 1.1 × RSS at 20 %. One repetition (it takes minutes).
 */
export async function benchScale(config: BenchConfig): Promise<{
  figures: Figure[];
  traces: RssTrace[];
  seconds: number;
  heap?: { pid: number; totalBytes: number; groups: HeapGroup[]; functions: HeapGroup[] };
}> {
  const n = config.scaleN;
  // The daemon runs through the profiling wrappers in `memory` mode: each worker also records
  // process.memoryUsage() every 500 ms, so growth can be told apart (V8 heap or not).
  const traceDir = mkdtempSync(join(tmpdir(), 'aiida-bench-mem-'));
  const bp = BenchProfile.create({
    name: 'bench-scale',
    options: { 'daemon.worker_process_slots': config.concurrency },
    ...profiledDaemon(config.repoRoot, traceDir, 'memory'),
  });
  try {
    const t0 = nowMs();
    for (let done = 0; done < n; done += 10 * BATCH) {
      await submitInBatches(bp, addItems(Math.min(10 * BATCH, n - done), done));
      log(`scale: ${Math.min(n, done + 10 * BATCH)} of ${n} queued`);
    }
    const submitRate = n / ((nowMs() - t0) / 1000);

    const start = nowMs();
    const startEpoch = Date.now();
    await bp.startDaemon(WORKERS);
    const status = await bp.client.getStatus();
    const pids = status.workers.map((w) => w.pid).filter((p): p is number => p !== null);
    const traces = new Map<number, [number, number][]>(pids.map((pid) => [pid, []]));
    const sampler = setInterval(() => {
      const t = (nowMs() - start) / 1000;
      for (const pid of pids) {
        const rss = procStatusBytes(pid, 'VmRSS');
        if (rss !== null) traces.get(pid)!.push([t, rss]);
      }
    }, SAMPLE_MS);
    let lastLog = Date.now();
    try {
      await pollUntil(
        async () => {
          if (Date.now() - lastLog > 10_000) {
            lastLog = Date.now();
            log(`scale: draining, ${((nowMs() - start) / 1000).toFixed(0)} s`);
          }
          return noneActive(bp);
        },
        { timeout: 3600, interval: 1000, what: `${n} processes to finish` },
      );
    } finally {
      clearInterval(sampler);
    }
    const seconds = (nowMs() - start) / 1000;
    // What worker 0 still holds once everything finished: a heap snapshot (after a full GC).
    let heap:
      | { pid: number; totalBytes: number; groups: HeapGroup[]; functions: HeapGroup[] }
      | undefined;
    try {
      const pid = pids[0]!;
      const file = join(traceDir, `worker.${pid}.heapsnapshot`);
      signalPid(pid, 'SIGUSR2');
      await pollUntil(() => existsSync(file), {
        timeout: 120,
        interval: 200,
        what: 'the heap snapshot',
      });
      const summary = summarizeHeapSnapshot(file, (url) => shortUrl(url, config.repoRoot));
      heap = {
        pid,
        totalBytes: summary.total,
        groups: summary.groups,
        functions: summary.functions,
      };
      rmSync(file, { force: true });
    } catch (error) {
      log(`scale: no heap snapshot: ${(error as Error).message}`);
    }
    const after = await bp.client.getStatus();
    const revived = after.workers.filter((w) => w.pid !== null && !pids.includes(w.pid));
    await assertAllFinished(bp, n);
    await bp.stopDaemon(); // the workers write their memory traces as they exit
    log(`scale: ${n} drained by ${WORKERS} workers in ${fmt(seconds)} s (${fmt(n / seconds)}/s)`);

    const rssTraces: RssTrace[] = pids.map((pid) => {
      const samples = traces.get(pid)!;
      const at20 = rssAt(samples, seconds, 0.2);
      const at90 = rssAt(samples, seconds, 0.9);
      return {
        pid,
        samples,
        at20,
        at90,
        peak: samples.length > 0 ? Math.max(...samples.map(([, r]) => r)) : null,
        flat: at20 !== null && at90 !== null ? at90 <= 1.1 * at20 : null,
        memory: memoryAround(traceDir, pid, startEpoch, seconds),
      };
    });
    const section = `Scale: ${n.toLocaleString('en-US')} queued processes drained by ${WORKERS} workers`;
    const figures: Figure[] = [
      figure({
        id: 'scale.rate',
        section,
        title: 'drain rate (workers started to all finished; one run)',
        unit: 'proc/s',
        better: 'higher',
        ours: summarize([n / seconds]),
        note: `queued beforehand at ${fmt(submitRate)}/s with submitMany`,
      }),
    ];
    for (const [i, trace] of rssTraces.entries()) {
      const ratio = trace.at20 && trace.at90 ? trace.at90 / trace.at20 : Number.NaN;
      const f = figure({
        id: `scale.rss.${i}`,
        section,
        title: `worker ${i} RSS at 90 % / at 20 % of the run (${fmt((trace.at20 ?? 0) / MB)} → ${fmt((trace.at90 ?? 0) / MB)} MB, peak ${fmt((trace.peak ?? 0) / MB)} MB)`,
        unit: '×',
        better: 'lower',
        ours: summarize([ratio]),
      });
      f.goal = { text: 'flat: at most 1.1', met: trace.flat };
      figures.push(f);
    }
    if (revived.length > 0) {
      figures[0]!.note += `; ${revived.length} worker(s) were revived during the run`;
    }
    return { figures, traces: rssTraces, seconds, heap };
  } finally {
    await bp.dispose();
    rmSync(traceDir, { recursive: true, force: true });
  }
}

/** The worker's memoryUsage() sample nearest to 20 % and 90 % of the run, if it wrote a trace. */
function memoryAround(
  dir: string,
  pid: number,
  startEpoch: number,
  seconds: number,
): RssTrace['memory'] {
  let samples: number[][];
  try {
    samples = JSON.parse(
      readFileSync(join(dir, `worker.${pid}.memory.json`), 'utf8'),
    ) as number[][];
  } catch {
    return undefined;
  }
  const at = (fraction: number): MemoryBreakdown | null => {
    const target = startEpoch + seconds * 1000 * fraction;
    let best: number[] | undefined;
    for (const s of samples) {
      if (!best || Math.abs(s[0]! - target) < Math.abs(best[0]! - target)) best = s;
    }
    if (!best) return null;
    const [, rss, heapTotal, heapUsed, external, arrayBuffers] = best as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    return { rss, heapTotal, heapUsed, external, arrayBuffers };
  };
  return { at20: at(0.2), at90: at(0.9) };
}
