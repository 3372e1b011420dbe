import { TERMINAL_STATES } from '@aiida/ipc';
import { QueueEvents } from 'bullmq';
import { BenchProfile, SLEEP_TYPE } from './aiida-env.js';
import { forceNoDelay } from './children/nodelay.js';
import type { BenchConfig } from './config.js';
import { fmt, log } from './log.js';
import { BullmqPeer, REDIS } from './peers.js';
import { pollUntil, sleep } from './procs.js';
import { profiledDaemon } from './profiled-daemon.js';
import { type Figure, figure } from './results.js';
import { median, nowMs, quantile, summarize } from './stats.js';

const TASK_MS = 10;
const WARM_UP = 20;

/** One task of an open-loop run: when its submit was called and returned, when it ended (ms). */
interface Timed {
  id: string;
  start: number;
  submitted: number;
  end: number;
}

/** Wall-clock milliseconds of a `nowMs()` reading (to compare with the store's timestamps). */
function wall(perf: number): number {
  return performance.timeOrigin + perf;
}

/** Submits `count` tasks at `rate` per second (open loop) and returns their timings. */
async function openLoop(
  count: number,
  rate: number,
  submit: () => Promise<string>,
  ended: Map<string, number>,
): Promise<Timed[]> {
  const starts = new Map<string, { start: number; submitted: number }>();
  const submits: Promise<void>[] = [];
  const t0 = nowMs();
  for (let i = 0; i < count; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait);
    const start = nowMs();
    submits.push(submit().then((id) => void starts.set(id, { start, submitted: nowMs() })));
  }
  await Promise.all(submits);
  await pollUntil(() => [...starts.keys()].every((id) => ended.has(id)), {
    timeout: 120,
    interval: 10,
    what: `${count} tasks to end`,
    describe: () => `${[...starts.keys()].filter((id) => ended.has(id)).length} ended`,
  });
  return [...starts].map(([id, t]) => ({ id, ...t, end: ended.get(id)! }));
}

const latencies = (timed: Timed[]) => timed.map((t) => t.end - t.start);

/**
 * Latency of 10 ms tasks from submit to finished, p50 and p99, ours against BullMQ, with
 * `latencyWorkers` workers each. Tasks are submitted one by one at a steady rate (open loop), and
 * "finished" is when this process hears of it: our state-changed broadcast, BullMQ's `completed`
 * event (QueueEvents). Repetitions alternate the order.
 */
export async function benchLatency(config: BenchConfig, withBullmq: boolean): Promise<Figure[]> {
  const workers = config.latencyWorkers;
  const p50 = { ours: [] as number[], bullmq: [] as number[], nodelay: [] as number[] };
  const p99 = { ours: [] as number[], bullmq: [] as number[], nodelay: [] as number[] };
  // Where our time goes, per repetition (medians, ms): the submit call, then from the store's
  // timestamps created -> started (claimed) -> finished, and finished -> broadcast heard.
  const phases = {
    submit: [] as number[],
    toStarted: [] as number[],
    running: [] as number[],
    toHeard: [] as number[],
  };

  const bp = BenchProfile.create({
    name: 'bench-latency',
    options: { 'daemon.worker_process_slots': config.concurrency },
  });
  const oursEnded = new Map<string, number>();
  const failures: string[] = [];
  const peer = withBullmq ? new BullmqPeer() : undefined;
  let events: QueueEvents | undefined;
  const peerEnded = new Map<string, number>();
  // The experiment: the same daemon with TCP_NODELAY forced on every socket (workers through the
  // bench wrapper, the submitter's own broker connection made while forced).
  const nd = BenchProfile.create({
    name: 'bench-latency-nodelay',
    options: { 'daemon.worker_process_slots': config.concurrency },
    ...profiledDaemon(config.repoRoot, '', 'none', { noDelay: true }),
  });
  const ndEnded = new Map<string, number>();
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

    await nd.startDaemon(workers);
    const restore = forceNoDelay();
    let ndEngine: Awaited<ReturnType<typeof nd.getEngine>>;
    try {
      ndEngine = await nd.getEngine();
      await (await nd.getBroker()).subscribeStateChanged((message) => {
        if (TERMINAL_STATES.includes(message.to)) ndEnded.set(String(message.pk), nowMs());
      });
    } finally {
      restore();
    }
    const submitNd = async () => String((await ndEngine.submit(SLEEP_TYPE, { ms: TASK_MS })).pk);
    await openLoop(WARM_UP, config.latencyRate, submitNd, ndEnded);

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
      const sides = ['ours', 'bullmq', 'nodelay'] as const;
      const order = sides.map((_, i) => sides[(i + rep) % sides.length]!);
      for (const side of order) {
        if (side === 'bullmq' && !submitPeer) continue;
        const timed =
          side === 'ours'
            ? await openLoop(config.latencyTasks, config.latencyRate, submitOurs, oursEnded)
            : side === 'bullmq'
              ? await openLoop(config.latencyTasks, config.latencyRate, submitPeer!, peerEnded)
              : await openLoop(config.latencyTasks, config.latencyRate, submitNd, ndEnded);
        p50[side].push(quantile(latencies(timed), 0.5));
        p99[side].push(quantile(latencies(timed), 0.99));
        if (side === 'ours') {
          const records = await engine.store.getProcesses(timed.map((t) => Number(t.id)));
          const byPk = new Map(records.map((r) => [String(r.pk), r]));
          const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) : Number.NaN);
          phases.submit.push(median(timed.map((t) => t.submitted - t.start)));
          phases.toStarted.push(
            median(timed.map((t) => ms(byPk.get(t.id)?.startedAt) - ms(byPk.get(t.id)?.createdAt))),
          );
          phases.running.push(
            median(
              timed.map((t) => ms(byPk.get(t.id)?.finishedAt) - ms(byPk.get(t.id)?.startedAt)),
            ),
          );
          phases.toHeard.push(
            median(timed.map((t) => wall(t.end) - ms(byPk.get(t.id)?.finishedAt))),
          );
        }
      }
      if (failures.length > 0) throw new Error(`latency run: ${failures.slice(0, 3).join('; ')}`);
      log(
        `latency rep ${rep + 1}/${config.reps}: ours p50 ${fmt(p50.ours.at(-1)!)} p99 ${fmt(p99.ours.at(-1)!)} ms` +
          (submitPeer
            ? `, BullMQ p50 ${fmt(p50.bullmq.at(-1)!)} p99 ${fmt(p99.bullmq.at(-1)!)} ms`
            : '') +
          `; ours with TCP_NODELAY p50 ${fmt(p50.nodelay.at(-1)!)} p99 ${fmt(p99.nodelay.at(-1)!)} ms`,
      );
    }
  } finally {
    await events?.close();
    await peer?.dispose();
    await bp.dispose();
    await nd.dispose();
  }
  const section = `Latency of ${TASK_MS} ms tasks, submit to finished (${workers} workers)`;
  const common = {
    section,
    unit: 'ms',
    better: 'lower' as const,
    note: `${config.latencyTasks} tasks per repetition submitted one by one at ${config.latencyRate}/s`,
  };
  const phase = (id: keyof typeof phases, title: string) =>
    figure({
      ...common,
      id: `latency.ours.${id}`,
      title: `ours, median of: ${title}`,
      ours: summarize(phases[id]),
      note: undefined,
    });
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
    figure({
      ...common,
      id: 'latency.nodelay.p50',
      title:
        'experiment: p50 with TCP_NODELAY forced on every socket (ours with it vs ours as shipped)',
      ours: summarize(p50.nodelay),
      peerName: 'ours as shipped',
      peer: summarize(p50.ours),
      note:
        'rabbitmq-client calls socket.setNoDelay(false) unless given noDelay: true; @aiida/broker ' +
        'passes it since 02d59c4, so this side now checks that nothing else holds small frames back',
    }),
    figure({
      ...common,
      id: 'latency.nodelay.p99',
      title: 'experiment: p99 with TCP_NODELAY forced (vs ours as shipped)',
      ours: summarize(p99.nodelay),
      peerName: 'ours as shipped',
      peer: summarize(p99.ours),
      note: undefined,
    }),
    phase('submit', 'the submit() call (commit, publish, confirm, mark dispatched)'),
    phase('toStarted', 'created → started (store timestamps: publish, delivery, claim)'),
    phase('running', 'started → finished (store: the 10 ms body, completion write)'),
    phase('toHeard', 'finished → state-changed broadcast heard by the submitter'),
  ];
}
