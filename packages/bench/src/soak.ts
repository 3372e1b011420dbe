import { readdirSync } from 'node:fs';
import type { ProcessRecord } from '@aiida/engine';
import { BenchProfile } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { log } from './log.js';
import { isAlive, pollUntil, procStatusBytes, signalPid, sleep } from './procs.js';
import { type Figure, figure } from './results.js';
import { summarize } from './stats.js';

/** What a soak run saw: its samples and its counts (docs/benchmarks.json `soak`). */
export interface SoakResult {
  minutes: number;
  submitted: number;
  /** Submitted processes with no terminal row at the end. */
  lost: number;
  /** Processes that ended otherwise than planned (a kill target not killed, another not finished). */
  unexpected: string[];
  byState: Record<string, number>;
  workerKills: number;
  /** [seconds since start, supervisor RSS, mean worker RSS, supervisor fds, mean worker fds]. */
  samples: [number, number, number, number, number][];
}

const TERMINAL = new Set(['finished', 'excepted', 'killed']);

/** Open file descriptors of `pid`, or null if unreadable. */
function fdCount(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

function mean(values: number[]): number {
  return values.length === 0 ? Number.NaN : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The sample closest to `fraction` of the run. */
function at(samples: SoakResult['samples'], fraction: number, seconds: number) {
  const target = fraction * seconds;
  return samples.reduce((best, s) =>
    Math.abs(s[0] - target) < Math.abs(best[0] - target) ? s : best,
  );
}

/**
 * The soak run (`--only soak`, not part of the default run): a daemon of 2 workers under a
 * steady mixed load for `config.soakMinutes` (30 by default): every second a few additions, a
 * workflow (`core.arithmetic.multiply_add`, which submits a child), a shell job, an addition that
 * is paused and played again, and one that is killed; a worker is SIGKILLed every minute. At the
 * end: no process lost, each ended as planned (one terminal row each), and the supervisor's and
 * workers' RSS and file descriptors flat (at 90 % of the run ≤ 1.1 × at 20 %).
 */
export async function benchSoak(
  config: BenchConfig,
): Promise<{ figures: Figure[]; soak: SoakResult }> {
  const seconds = config.soakMinutes * 60;
  const bp = BenchProfile.create({
    name: 'soak',
    options: {
      'daemon.worker_process_slots': 50,
      // A process can be hit by several of the worker kills.
      'engine.max_attempts': 100,
    },
  });
  const soak: SoakResult = {
    minutes: config.soakMinutes,
    submitted: 0,
    lost: 0,
    unexpected: [],
    byState: {},
    workerKills: 0,
    samples: [],
  };
  try {
    await bp.startDaemon(2);
    const engine = await bp.getEngine();
    const toKill: number[] = [];
    const toPause: number[] = [];
    const all: number[] = [];
    const pending: { at: number; act: () => Promise<unknown> }[] = [];
    const t0 = Date.now();
    let nextKill = t0 + 60_000;
    let nextSample = t0;
    let tick = 0;
    log(`soak: ${config.soakMinutes} min, 2 workers, a worker SIGKILLed every minute`);
    while (Date.now() - t0 < seconds * 1000) {
      tick++;
      const items = [
        ...Array.from({ length: 4 }, (_, i) => ({
          type: 'core.arithmetic.add',
          inputs: { x: tick, y: i, sleep: 0.2 },
        })),
        { type: 'core.arithmetic.multiply_add', inputs: { x: tick, y: 2, z: 1 } },
        { type: 'core.shell', inputs: { command: 'echo', args: [`soak ${tick}`] } },
        { type: 'core.arithmetic.add', inputs: { x: tick, y: 0, sleep: 4 } },
        { type: 'core.arithmetic.add', inputs: { x: tick, y: 0, sleep: 60 } },
      ];
      const submitted = (await engine.submitMany(items)).map((s) => s.pk);
      all.push(...submitted);
      const pausePk = submitted[6]!;
      const killPk = submitted[7]!;
      toPause.push(pausePk);
      toKill.push(killPk);
      const now = Date.now();
      pending.push({ at: now + 1000, act: () => engine.pauseProcess(pausePk) });
      pending.push({ at: now + 3000, act: () => engine.playProcess(pausePk) });
      pending.push({ at: now + 2000, act: () => engine.killProcess(killPk, { message: 'soak' }) });
      for (const due of pending.filter((p) => p.at <= Date.now())) {
        pending.splice(pending.indexOf(due), 1);
        // A pause that comes after the end, or a play of a process not paused yet, is no error.
        await due.act().catch(() => {});
      }
      if (Date.now() >= nextKill) {
        nextKill += 60_000;
        const status = await bp.client.getStatus();
        const ready = status.workers.filter((w) => w.state === 'ready' && w.pid !== null);
        const victim = ready[soak.workerKills % Math.max(1, ready.length)];
        if (victim?.pid) {
          signalPid(victim.pid, 'SIGKILL');
          soak.workerKills++;
          log(`soak: SIGKILL worker ${victim.index} (pid ${victim.pid})`);
        }
      }
      if (Date.now() >= nextSample) {
        nextSample += 5000;
        const status = await bp.client.getStatus();
        const workers = status.workers.map((w) => w.pid).filter((p): p is number => p !== null);
        const rss = workers.map((p) => procStatusBytes(p, 'VmRSS')).filter((v) => v !== null);
        const fds = workers.map(fdCount).filter((v) => v !== null);
        soak.samples.push([
          (Date.now() - t0) / 1000,
          procStatusBytes(status.pid, 'VmRSS') ?? Number.NaN,
          mean(rss as number[]),
          fdCount(status.pid) ?? Number.NaN,
          mean(fds as number[]),
        ]);
      }
      await sleep(Math.max(0, t0 + tick * 1000 - Date.now()));
    }
    for (const due of pending.sort((a, b) => a.at - b.at)) {
      await sleep(Math.max(0, due.at - Date.now()));
      await due.act().catch(() => {});
    }
    soak.submitted = all.length;
    let rows = new Map<number, ProcessRecord>();
    await pollUntil(
      async () => {
        rows = new Map((await engine.listProcesses({})).map((r) => [r.pk, r]));
        return all.every((pk) => TERMINAL.has(rows.get(pk)?.state ?? ''));
      },
      {
        timeout: 600,
        interval: 1000,
        what: `the ${all.length} soak processes to end`,
        describe: () =>
          `${all.filter((pk) => !TERMINAL.has(rows.get(pk)?.state ?? '')).length} not ended`,
      },
    ).catch((error: Error) => log(`soak: ${error.message}`));
    const killSet = new Set(toKill);
    for (const pk of all) {
      const row = rows.get(pk);
      if (!row || !TERMINAL.has(row.state)) {
        soak.lost++;
        continue;
      }
      soak.byState[row.state] = (soak.byState[row.state] ?? 0) + 1;
      const planned = killSet.has(pk) ? 'killed' : 'finished';
      if (row.state !== planned && soak.unexpected.length < 10) {
        soak.unexpected.push(
          `${pk} (${row.type}) ${row.state}: ${row.exception ?? row.processStatus ?? ''}`,
        );
      }
    }
    // Children of the workflows are rows of their own: every row must be terminal too.
    const extra = [...rows.values()].filter((r) => !TERMINAL.has(r.state));
    soak.lost += extra.filter((r) => !all.includes(r.pk)).length;
  } finally {
    const pid = bp.client.isDaemonRunning ? bp.client.getDaemonPid() : null;
    await bp.dispose();
    if (pid !== null && isAlive(pid)) log(`soak: supervisor ${pid} still alive after dispose`);
  }

  const s20 = at(soak.samples, 0.2, seconds);
  const s90 = at(soak.samples, 0.9, seconds);
  const flat = (i: 1 | 2 | 3 | 4) => s90[i] <= 1.1 * s20[i];
  const mb = (bytes: number) => bytes / 1024 / 1024;
  const planned = soak.unexpected.length === 0;
  const section = `Soak: ${config.soakMinutes} min of mixed load on 2 workers, one SIGKILLed every minute`;
  const figures: Figure[] = [
    figure({
      id: 'soak.lost',
      section,
      title: `processes lost (${soak.submitted} submitted, ${soak.workerKills} worker kills)`,
      unit: 'processes',
      better: 'lower',
      ours: summarize([soak.lost]),
      goal: { text: '0 lost, each ended as planned', met: soak.lost === 0 && planned },
      note:
        `ended: ${Object.entries(soak.byState)
          .map(([state, n]) => `${n} ${state}`)
          .join(', ')}` + (planned ? '' : `; not as planned: ${soak.unexpected.join('; ')}`),
    }),
    figure({
      id: 'soak.rss.supervisor',
      section,
      title: 'supervisor RSS at 90 % / at 20 % of the run',
      unit: '×',
      better: 'lower',
      ours: summarize([s90[1] / s20[1]]),
      goal: { text: 'flat: at most 1.1', met: flat(1) },
      note: `${mb(s20[1]).toFixed(1)} MB at 20 %, ${mb(s90[1]).toFixed(1)} MB at 90 %`,
    }),
    figure({
      id: 'soak.rss.workers',
      section,
      title: 'worker RSS (mean of the live workers) at 90 % / at 20 % of the run',
      unit: '×',
      better: 'lower',
      ours: summarize([s90[2] / s20[2]]),
      goal: { text: 'flat: at most 1.1', met: flat(2) },
      note:
        `${mb(s20[2]).toFixed(1)} MB at 20 %, ${mb(s90[2]).toFixed(1)} MB at 90 %; the workers ` +
        'killed every minute restart fresh, so this mostly shows the younger of the two',
    }),
    figure({
      id: 'soak.fds',
      section,
      title: 'open file descriptors at 90 % / at 20 % of the run (supervisor; workers in the note)',
      unit: '×',
      better: 'lower',
      ours: summarize([s90[3] / s20[3]]),
      goal: { text: 'flat: at most 1.1 (supervisor and workers)', met: flat(3) && flat(4) },
      note: `supervisor ${s20[3]} → ${s90[3]}, workers (mean) ${s20[4].toFixed(1)} → ${s90[4].toFixed(1)}`,
    }),
  ];
  return { figures, soak };
}
