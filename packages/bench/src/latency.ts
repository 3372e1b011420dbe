import type { Engine } from '@aiida/engine';
import { TERMINAL_STATES } from '@aiida/ipc';
import { QueueEvents } from 'bullmq';
import { BenchProfile, SLEEP_TYPE, STORE_WATCH_INTERVAL_S } from './aiida-env.js';
import { forceNoDelay } from './children/nodelay.js';
import type { BenchConfig } from './config.js';
import { fmt, log } from './log.js';
import { BullmqPeer, GraphilePeer, REDIS } from './peers.js';
import { pollUntil, sleep } from './procs.js';
import { profiledDaemon } from './profiled-daemon.js';
import { atMost, type Figure, figure } from './results.js';
import { median, nowMs, quantile, summarize } from './stats.js';
import { hasLatencyGoal, oursVariants } from './variants.js';

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

/**
 * Reads the rows of the submitted processes not yet seen ended every
 * {@link STORE_WATCH_INTERVAL_S} and calls `onEnd` for each that is terminal: how the bench hears
 * an end without a broker, at the cost of one keyed read per interval while any is pending.
 */
function watchSubmitted(
  engine: Engine,
  onEnd: (pk: number, state: string) => void,
): { add(pk: number): void; close(): Promise<void> } {
  const pending = new Set<number>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let reading: Promise<void> | undefined;
  const tick = async () => {
    if (pending.size === 0) return;
    for (const record of await engine.store.getProcesses([...pending])) {
      if (!TERMINAL_STATES.includes(record.state)) continue;
      pending.delete(record.pk);
      onEnd(record.pk, record.state);
    }
  };
  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => {
      reading = tick()
        .catch((error: unknown) => log(`watching the store: ${(error as Error).message}`))
        .finally(schedule);
    }, STORE_WATCH_INTERVAL_S * 1000);
  };
  schedule();
  return {
    add: (pk) => void pending.add(pk),
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      await reading;
    },
  };
}

const latencies = (timed: Timed[]) => timed.map((t) => t.end - t.start);

/** One side of the latency run: how it submits one task, and when each ended (ms, by id). */
interface LatencySide {
  key: string;
  submit: () => Promise<string>;
  ended: Map<string, number>;
  /** Our variants: where the time of these tasks went, from the store's timestamps. */
  phases?: (timed: Timed[]) => Promise<void>;
}

type Phase = 'submit' | 'toStarted' | 'running' | 'toHeard';

/**
 * Latency of 10 ms tasks from submit to finished, p50 and p99, each of our variants (storage +
 * transport) against BullMQ and graphile-worker, with `latencyWorkers` workers each. Tasks are
 * submitted one by one at a steady rate (open loop), and "finished" is when this process hears of
 * it: our state-changed broadcast, BullMQ's `completed` event (QueueEvents), graphile-worker's
 * job row deleted (a trigger notifies at commit). Only the systems of `config.systems` run.
 * Repetitions rotate the order.
 */
export async function benchLatency(config: BenchConfig, withBullmq: boolean): Promise<Figure[]> {
  const workers = config.latencyWorkers;
  const want = (s: string) => config.systems.includes(s);
  const variants = oursVariants(config.systems);
  const p50 = new Map<string, number[]>();
  const p99 = new Map<string, number[]>();
  // Where our time goes, per variant and repetition (medians, ms): the submit call, then from the
  // store's timestamps created -> started (claimed) -> finished, and finished -> broadcast heard.
  const phases = new Map<string, Record<Phase, number[]>>();
  const failures: string[] = [];
  const disposers: (() => Promise<void>)[] = [];
  const sides: LatencySide[] = [];
  try {
    for (const variant of variants) {
      const bp = await BenchProfile.open({
        name: `bench-latency-${variant.system}`,
        options: { 'daemon.worker_process_slots': config.concurrency },
        storage: variant.storage,
        transport: variant.transport,
      });
      disposers.push(() => bp.dispose());
      await bp.startDaemon(workers);
      const engine = await bp.getEngine();
      const ended = new Map<string, number>();
      const onEnd = (pk: number, to: string) => {
        ended.set(String(pk), nowMs());
        if (to !== 'finished') failures.push(`process ${pk} ended ${to}`);
      };
      // With RabbitMQ, the workers' state-changed broadcasts; with the store as the queue, the
      // submitted processes' rows read every STORE_WATCH_INTERVAL_S (the bench's own lean watch,
      // as its trigger is for graphile-worker).
      let watch: ReturnType<typeof watchSubmitted> | undefined;
      if (variant.transport === 'core.store') {
        watch = watchSubmitted(engine, onEnd);
        disposers.push(() => watch!.close());
      } else {
        await bp.subscribeStateChanged((message) => {
          if (TERMINAL_STATES.includes(message.to)) onEnd(message.pk, message.to);
        });
      }
      const mine: Record<Phase, number[]> = { submit: [], toStarted: [], running: [], toHeard: [] };
      phases.set(variant.system, mine);
      sides.push({
        key: variant.system,
        ended,
        submit: async () => {
          const { pk } = await engine.submit(SLEEP_TYPE, { ms: TASK_MS });
          watch?.add(pk);
          return String(pk);
        },
        phases: async (timed) => {
          const records = await engine.store.getProcesses(timed.map((t) => Number(t.id)));
          const byPk = new Map(records.map((r) => [String(r.pk), r]));
          const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) : Number.NaN);
          const at = (t: Timed) => byPk.get(t.id);
          mine.submit.push(median(timed.map((t) => t.submitted - t.start)));
          mine.toStarted.push(
            median(timed.map((t) => ms(at(t)?.startedAt) - ms(at(t)?.createdAt))),
          );
          mine.running.push(median(timed.map((t) => ms(at(t)?.finishedAt) - ms(at(t)?.startedAt))));
          mine.toHeard.push(median(timed.map((t) => wall(t.end) - ms(at(t)?.finishedAt))));
        },
      });
    }

    if (want('bullmq') && withBullmq) {
      const peer = new BullmqPeer();
      disposers.push(() => peer.dispose());
      await peer.setup(workers, config.concurrency);
      const events = new QueueEvents(peer.name, { connection: { ...REDIS } });
      disposers.push(() => events.close());
      await events.waitUntilReady();
      const ended = new Map<string, number>();
      events.on('completed', ({ jobId }) => ended.set(jobId, nowMs()));
      events.on('failed', ({ jobId, failedReason }) => {
        ended.set(jobId, nowMs());
        failures.push(`BullMQ job ${jobId} failed: ${failedReason}`);
      });
      sides.push({
        key: 'bullmq',
        ended,
        submit: async () => {
          const job = await peer.queue.add('sleep', { ms: TASK_MS }, { removeOnComplete: true });
          return job.id!;
        },
      });
    }

    if (want('graphile')) {
      const graphile = new GraphilePeer();
      disposers.push(() => graphile.dispose());
      await graphile.setup(workers, { notifyDone: true });
      const ended = new Map<string, number>();
      graphile.onDone((ids) => {
        const at = nowMs();
        for (const id of ids) ended.set(id, at);
      });
      sides.push({ key: 'graphile', ended, submit: () => graphile.add('sleep', { ms: TASK_MS }) });
    }

    if (want('nodelay')) {
      // The experiment: the SQLite daemon with TCP_NODELAY forced on every socket (workers
      // through the bench wrapper, the submitter's own broker connection made while forced).
      const nd = BenchProfile.create({
        name: 'bench-latency-nodelay',
        options: { 'daemon.worker_process_slots': config.concurrency },
        ...profiledDaemon(config.repoRoot, '', 'none', { noDelay: true }),
      });
      disposers.push(() => nd.dispose());
      await nd.startDaemon(workers);
      const ended = new Map<string, number>();
      const restore = forceNoDelay();
      let ndEngine: Awaited<ReturnType<typeof nd.getEngine>>;
      try {
        ndEngine = await nd.getEngine();
        await nd.subscribeStateChanged((message) => {
          if (TERMINAL_STATES.includes(message.to)) ended.set(String(message.pk), nowMs());
        });
      } finally {
        restore();
      }
      sides.push({
        key: 'nodelay',
        ended,
        submit: async () => String((await ndEngine.submit(SLEEP_TYPE, { ms: TASK_MS })).pk),
      });
    }

    for (const side of sides) {
      p50.set(side.key, []);
      p99.set(side.key, []);
      await openLoop(WARM_UP, config.latencyRate, side.submit, side.ended);
    }
    for (let rep = 0; rep < config.reps; rep++) {
      for (const side of sides.map((_, i) => sides[(i + rep) % sides.length]!)) {
        const timed = await openLoop(
          config.latencyTasks,
          config.latencyRate,
          side.submit,
          side.ended,
        );
        p50.get(side.key)!.push(quantile(latencies(timed), 0.5));
        p99.get(side.key)!.push(quantile(latencies(timed), 0.99));
        await side.phases?.(timed);
      }
      if (failures.length > 0) throw new Error(`latency run: ${failures.slice(0, 3).join('; ')}`);
      log(
        `latency rep ${rep + 1}/${config.reps}: ` +
          sides
            .map(
              (s) =>
                `${s.key} p50 ${fmt(p50.get(s.key)!.at(-1)!)} p99 ${fmt(p99.get(s.key)!.at(-1)!)} ms`,
            )
            .join(', '),
      );
    }
  } finally {
    for (const dispose of disposers.reverse()) {
      try {
        await dispose();
      } catch (error) {
        log(`latency clean-up: ${(error as Error).message}`);
      }
    }
  }

  const section = `Latency of ${TASK_MS} ms tasks, submit to finished (${workers} workers)`;
  const common = {
    section,
    unit: 'ms',
    better: 'lower' as const,
    note: `${config.latencyTasks} tasks per repetition submitted one by one at ${config.latencyRate}/s`,
  };
  const of = (m: Map<string, number[]>, key: string) => summarize(m.get(key) ?? []);
  const figures: Figure[] = [];
  for (const variant of variants) {
    const ours = variant.system;
    const v = variant.idPrefix;
    const label = variant.label;
    const bullmq = p50.has('bullmq');
    const p50Figure = figure({
      ...common,
      id: `latency.${v}p50`,
      title: `p50 latency (${label}${bullmq ? ' vs BullMQ' : ''})`,
      ours: of(p50, ours),
      ...(bullmq ? { peerName: 'BullMQ', peer: of(p50, 'bullmq') } : {}),
      ...(variant.transport === 'core.store'
        ? {
            note:
              `${common.note}; without a broker the bench hears a process end by reading the rows ` +
              `of the submitted processes every ${STORE_WATCH_INTERVAL_S * 1000} ms`,
          }
        : {}),
    });
    // The store as the queue is held to BullMQ's p50 (issue 10).
    if (hasLatencyGoal(variant)) {
      p50Figure.goal = atMost(p50Figure.ratio, 1, "at most BullMQ's p50 (ratio <= 1)");
    }
    figures.push(
      p50Figure,
      figure({
        ...common,
        id: `latency.${v}p99`,
        title: `p99 latency (${label}${bullmq ? ' vs BullMQ' : ''})`,
        ours: of(p99, ours),
        ...(bullmq ? { peerName: 'BullMQ', peer: of(p99, 'bullmq') } : {}),
        note: undefined,
      }),
    );
    if (p50.has('graphile')) {
      figures.push(
        figure({
          ...common,
          id: `latency.${v}graphile.p50`,
          title: `p50 latency (${label} vs graphile-worker)`,
          ours: of(p50, ours),
          peerName: 'graphile-worker',
          peer: of(p50, 'graphile'),
          note:
            "graphile-worker's end is its job row deleted, heard through a statement trigger " +
            'that notifies at commit (added by the bench to its jobs table)',
        }),
        figure({
          ...common,
          id: `latency.${v}graphile.p99`,
          title: `p99 latency (${label} vs graphile-worker)`,
          ours: of(p99, ours),
          peerName: 'graphile-worker',
          peer: of(p99, 'graphile'),
          note: undefined,
        }),
      );
    }
    const mine = phases.get(ours)!;
    const phase = (id: Phase, title: string) =>
      figure({
        ...common,
        id: `latency.${v}ours.${id}`,
        title: `${label}, median of: ${title}`,
        ours: summarize(mine[id]),
        note: undefined,
      });
    const store = variant.transport === 'core.store';
    figures.push(
      phase(
        'submit',
        store
          ? 'the submit() call (commit, wake-up)'
          : 'the submit() call (commit, publish, confirm, mark dispatched)',
      ),
      phase(
        'toStarted',
        store
          ? 'created → started (store timestamps: wake-up, claim)'
          : 'created → started (store timestamps: publish, delivery, claim)',
      ),
      phase('running', 'started → finished (store: the 10 ms body, completion write)'),
      phase(
        'toHeard',
        store
          ? `finished → seen by the bench reading the rows (every ${STORE_WATCH_INTERVAL_S * 1000} ms)`
          : 'finished → state-changed broadcast heard by the submitter',
      ),
    );
  }
  if (p50.has('nodelay') && p50.has('ours-sqlite')) {
    figures.push(
      figure({
        ...common,
        id: 'latency.nodelay.p50',
        title:
          'experiment: p50 with TCP_NODELAY forced on every socket (ours with it vs ours as shipped)',
        ours: of(p50, 'nodelay'),
        peerName: 'ours as shipped',
        peer: of(p50, 'ours-sqlite'),
        note:
          'rabbitmq-client calls socket.setNoDelay(false) unless given noDelay: true; @aiida/broker ' +
          'passes it since 02d59c4, so this side now checks that nothing else holds small frames back',
      }),
      figure({
        ...common,
        id: 'latency.nodelay.p99',
        title: 'experiment: p99 with TCP_NODELAY forced (vs ours as shipped)',
        ours: of(p99, 'nodelay'),
        peerName: 'ours as shipped',
        peer: of(p99, 'ours-sqlite'),
        note: undefined,
      }),
    );
  }
  return figures;
}
