import { TERMINAL_STATES } from '@aiida/ipc';
import { QueueEvents } from 'bullmq';
import { BenchProfile, SLEEP_TYPE } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { fmt, log } from './log.js';
import { BullmqPeer, REDIS } from './peers.js';
import { pollUntil, sleep } from './procs.js';
import { type Figure, figure } from './results.js';
import { nowMs, quantile, summarize } from './stats.js';

const TASK_MS = 10;
const WARM_UP = 20;

/** Submits `count` tasks at `rate` per second (open loop) and returns each one's latency in ms. */
async function openLoop(
  count: number,
  rate: number,
  submit: () => Promise<string>,
  ended: Map<string, number>,
): Promise<number[]> {
  const starts = new Map<string, number>();
  const submits: Promise<void>[] = [];
  const t0 = nowMs();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait);
    const started = nowMs();
    submits.push(submit().then((id) => void starts.set(id, started)));
  }
  await Promise.all(submits);
  await pollUntil(() => [...starts.keys()].every((id) => ended.has(id)), {
    timeout: 120,
    interval: 10,
    what: `${count} tasks to end`,
    describe: () => `${[...starts.keys()].filter((id) => ended.has(id)).length} ended`,
  });
  return [...starts].map(([id, started]) => ended.get(id)! - started);
}

/**
 * Latency of 10 ms tasks from submit to finished, p50 and p99, ours against BullMQ, with
 * `latencyWorkers` workers each. Tasks are submitted one by one at a steady rate (open loop), and
 * "finished" is when this process hears of it: our state-changed broadcast, BullMQ's `completed`
 * event (QueueEvents). Repetitions alternate the order.
 */
export async function benchLatency(config: BenchConfig, withBullmq: boolean): Promise<Figure[]> {
  const workers = config.latencyWorkers;
  const p50 = { ours: [] as number[], bullmq: [] as number[] };
  const p99 = { ours: [] as number[], bullmq: [] as number[] };

  const bp = BenchProfile.create({
    name: 'bench-latency',
    options: { 'daemon.worker_process_slots': config.concurrency },
  });
  const oursEnded = new Map<string, number>();
  const failures: string[] = [];
  const peer = withBullmq ? new BullmqPeer() : undefined;
  let events: QueueEvents | undefined;
  const peerEnded = new Map<string, number>();
  try {
    await bp.startDaemon(workers);
    const engine = await bp.getEngine();
    const broker = await bp.getBroker();
    await broker.subscribeStateChanged((message) => {
      if (!TERMINAL_STATES.includes(message.to)) return;
      oursEnded.set(String(message.pk), nowMs());
      if (message.to !== 'finished') failures.push(`process ${message.pk} ended ${message.to}`);
    });
    const submitOurs = async () => String((await engine.submit(SLEEP_TYPE, { ms: TASK_MS })).pk);

    let submitPeer: (() => Promise<string>) | undefined;
    if (peer) {
      await peer.setup(workers, config.concurrency);
      events = new QueueEvents(peer.name, { connection: { ...REDIS } });
      await events.waitUntilReady();
      events.on('completed', ({ jobId }) => peerEnded.set(jobId, nowMs()));
      events.on('failed', ({ jobId, failedReason }) => {
        peerEnded.set(jobId, nowMs());
        failures.push(`BullMQ job ${jobId} failed: ${failedReason}`);
      });
      submitPeer = async () => {
        const job = await peer.queue.add('sleep', { ms: TASK_MS }, { removeOnComplete: true });
        return job.id!;
      };
      await openLoop(WARM_UP, config.latencyRate, submitPeer, peerEnded);
    }
    await openLoop(WARM_UP, config.latencyRate, submitOurs, oursEnded);

    for (let rep = 0; rep < config.reps; rep++) {
      const order = rep % 2 === 0 ? ['ours', 'bullmq'] : ['bullmq', 'ours'];
      for (const who of order) {
        if (who === 'bullmq' && !submitPeer) continue;
        const latencies =
          who === 'ours'
            ? await openLoop(config.latencyTasks, config.latencyRate, submitOurs, oursEnded)
            : await openLoop(config.latencyTasks, config.latencyRate, submitPeer!, peerEnded);
        const side = who === 'ours' ? 'ours' : 'bullmq';
        p50[side].push(quantile(latencies, 0.5));
        p99[side].push(quantile(latencies, 0.99));
      }
      if (failures.length > 0) throw new Error(`latency run: ${failures.slice(0, 3).join('; ')}`);
      log(
        `latency rep ${rep + 1}/${config.reps}: ours p50 ${fmt(p50.ours.at(-1)!)} p99 ${fmt(p99.ours.at(-1)!)} ms` +
          (submitPeer
            ? `, BullMQ p50 ${fmt(p50.bullmq.at(-1)!)} p99 ${fmt(p99.bullmq.at(-1)!)} ms`
            : ''),
      );
    }
  } finally {
    await events?.close();
    await peer?.dispose();
    await bp.dispose();
  }
  const section = `Latency of ${TASK_MS} ms tasks, submit to finished (${workers} workers)`;
  const common = {
    section,
    unit: 'ms',
    better: 'lower' as const,
    note: `${config.latencyTasks} tasks per repetition submitted one by one at ${config.latencyRate}/s`,
  };
  return [
    figure({
      ...common,
      id: 'latency.p50',
      title: 'p50 latency (ours vs BullMQ)',
      ours: summarize(p50.ours),
      ...(withBullmq ? { peerName: 'BullMQ', peer: summarize(p50.bullmq) } : {}),
    }),
    figure({
      ...common,
      id: 'latency.p99',
      title: 'p99 latency (ours vs BullMQ)',
      ours: summarize(p99.ours),
      ...(withBullmq ? { peerName: 'BullMQ', peer: summarize(p99.bullmq) } : {}),
    }),
  ];
}
