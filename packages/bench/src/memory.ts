import { BenchProfile, SLEEP_TYPE } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { fmt, log } from './log.js';
import { noneActive } from './ours.js';
import { BullmqPeer } from './peers.js';
import { pollUntil, procStatusBytes, sleep } from './procs.js';
import { type Figure, figure } from './results.js';
import { summarize } from './stats.js';

const MB = 1024 * 1024;
/** Long enough that all slots stay busy while we measure. */
const TASK_MS = 4000;
/** How long the worker is watched with every slot busy. */
const BUSY_WINDOW_MS = 1500;

/** Samples VmRSS of `pid` through the busy window; returns the peak (VmHWM at its end). */
async function peakWhileBusy(pid: number): Promise<number> {
  let peak = 0;
  const end = Date.now() + BUSY_WINDOW_MS;
  while (Date.now() < end) {
    peak = Math.max(peak, procStatusBytes(pid, 'VmRSS') ?? 0);
    await sleep(100);
  }
  return Math.max(peak, procStatusBytes(pid, 'VmHWM') ?? 0);
}

/** One repetition of ours: a fresh daemon with one worker, `slots` sleeping processes. */
async function oursOnce(bp: BenchProfile, slots: number): Promise<number> {
  await bp.startDaemon(1);
  try {
    const engine = await bp.getEngine();
    const items = Array.from({ length: slots + 50 }, () => ({
      type: SLEEP_TYPE,
      inputs: { ms: TASK_MS },
    }));
    await engine.submitMany(items);
    let used = 0;
    const worker = await pollUntil(
      async () => {
        const status = await bp.client.getStatus();
        const w = status.workers[0];
        used = w?.slotsUsed ?? 0;
        return w && w.pid !== null && w.slotsUsed >= slots ? w : undefined;
      },
      { timeout: 60, interval: 50, what: `${slots} busy slots`, describe: () => `${used} used` },
    );
    const peak = await peakWhileBusy(worker.pid!);
    await pollUntil(() => noneActive(bp), { timeout: 120, interval: 100, what: 'sleepers to end' });
    await engine.deleteProcesses({ olderThan: 0 });
    return peak;
  } finally {
    await bp.stopDaemon();
  }
}

/** One repetition of BullMQ: a fresh worker process with concurrency `slots`, sleeping jobs. */
async function bullmqOnce(slots: number): Promise<number> {
  const peer = new BullmqPeer();
  try {
    await peer.setup(1, slots);
    const jobs = Array.from({ length: slots + 50 }, () => ({
      name: 'sleep',
      data: { ms: TASK_MS },
      opts: { removeOnComplete: true },
    }));
    await peer.queue.addBulk(jobs);
    let active = 0;
    await pollUntil(
      async () => {
        active = await peer.queue.getActiveCount();
        return active >= slots;
      },
      { timeout: 60, interval: 50, what: `${slots} active jobs`, describe: () => `${active}` },
    );
    const peak = await peakWhileBusy(peer.pids[0]!);
    await pollUntil(async () => (await peer.pending()) === 0, {
      timeout: 120,
      interval: 100,
      what: 'sleeping jobs to end',
    });
    return peak;
  } finally {
    await peer.dispose();
  }
}

/**
 * Peak RSS of one worker with all its slots (200) busy with sleeping processes, ours against a
 * BullMQ worker with the same concurrency. A fresh worker process each repetition.
 */
export async function benchMemory(config: BenchConfig, withBullmq: boolean): Promise<Figure[]> {
  const slots = config.concurrency;
  const ours: number[] = [];
  const peer: number[] = [];
  const bp = BenchProfile.create({
    name: 'bench-memory',
    options: { 'daemon.worker_process_slots': slots },
  });
  try {
    for (let rep = 0; rep < config.reps; rep++) {
      const order = rep % 2 === 0 ? ['ours', 'bullmq'] : ['bullmq', 'ours'];
      for (const who of order) {
        if (who === 'ours') ours.push((await oursOnce(bp, slots)) / MB);
        else if (withBullmq) peer.push((await bullmqOnce(slots)) / MB);
      }
      log(
        `memory rep ${rep + 1}/${config.reps}: ours ${fmt(ours.at(-1)!)} MB` +
          (withBullmq ? `, BullMQ ${fmt(peer.at(-1)!)} MB` : ''),
      );
    }
  } finally {
    await bp.dispose();
  }
  const f = figure({
    id: 'memory.peak200',
    section: 'Worker memory',
    title: `peak RSS of one worker with ${slots} slots busy (${TASK_MS / 1000} s sleepers)`,
    unit: 'MB',
    better: 'lower',
    ours: summarize(ours),
    ...(withBullmq ? { peerName: 'BullMQ', peer: summarize(peer) } : {}),
  });
  f.goal = { text: 'below 100 MB (issue 4)', met: f.ours.n > 0 ? f.ours.median < 100 : null };
  return [f];
}
