/**
 * Runs a daemon program under V8's CPU profiler, in-process (node:inspector), and writes
 * `<AIIDA_BENCH_PROFILE_DIR>/<role>.<pid>.cpuprofile` when the process exits (not on SIGKILL).
 * `--cpu-prof` is refused in NODE_OPTIONS and the supervisor forks its workers itself, so the
 * bench points the daemon at small wrappers (`profiled-supervisor.js`, `profiled-worker.js`)
 * that start the profiler and then import the real program with the same argv.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeHeapSnapshot } from 'node:v8';
import { forceNoDelay } from './nodelay.js';

/** Environment variables the wrappers read. */
export const PROFILE_DIR_ENV = 'AIIDA_BENCH_PROFILE_DIR';
export const SUPERVISOR_TARGET_ENV = 'AIIDA_BENCH_SUPERVISOR_TARGET';
export const WORKER_TARGET_ENV = 'AIIDA_BENCH_WORKER_TARGET';
/**
 * `cpu` (default): a CPU profile; `memory`: `process.memoryUsage()` every 500 ms instead, and a
 * heap snapshot `<role>.<pid>.heapsnapshot` on SIGUSR2; `none`:
 * neither (the program runs as it is, e.g. only with {@link NODELAY_ENV}).
 */
export const PROFILE_KIND_ENV = 'AIIDA_BENCH_PROFILE_KIND';
/** `1`: force TCP_NODELAY on every socket of the program (the latency experiment). */
export const NODELAY_ENV = 'AIIDA_BENCH_NODELAY';

/** Starts the profiler, arranges the write on exit, and imports the program named in `targetEnv`. */
export async function runProfiled(role: string, targetEnv: string): Promise<void> {
  const dir = process.env[PROFILE_DIR_ENV];
  const target = process.env[targetEnv];
  if ((!dir && process.env[PROFILE_KIND_ENV] !== 'none') || !target) {
    process.stderr.write(`${role} wrapper: ${PROFILE_DIR_ENV} and ${targetEnv} must be set\n`);
    process.exit(2);
  }
  if (process.env[NODELAY_ENV] === '1') forceNoDelay();
  if (process.env[PROFILE_KIND_ENV] === 'none') {
    await import(pathToFileURL(target).href);
    return;
  }
  if (process.env[PROFILE_KIND_ENV] === 'memory') {
    // [epoch ms, rss, heapTotal, heapUsed, external, arrayBuffers] in bytes.
    const samples: number[][] = [];
    const sample = () => {
      const m = process.memoryUsage();
      samples.push([Date.now(), m.rss, m.heapTotal, m.heapUsed, m.external, m.arrayBuffers]);
    };
    setInterval(sample, 500).unref();
    // SIGUSR2: write a heap snapshot (after a full GC, so it shows what is retained).
    process.on('SIGUSR2', () => {
      const file = join(dir!, `${role}.${process.pid}.heapsnapshot`);
      writeHeapSnapshot(`${file}.partial`);
      renameSync(`${file}.partial`, file);
    });
    process.on('exit', () => {
      sample();
      writeFileSync(join(dir!, `${role}.${process.pid}.memory.json`), JSON.stringify(samples));
    });
    await import(pathToFileURL(target).href);
    return;
  }
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.start');
  process.on('exit', () => {
    // The in-process session answers synchronously, so this completes inside the exit handler.
    session.post('Profiler.stop', (error, result) => {
      if (!error) {
        writeFileSync(
          join(dir!, `${role}.${process.pid}.cpuprofile`),
          JSON.stringify(result.profile),
        );
      }
    });
  });
  await import(pathToFileURL(target).href);
}
