// The warm spare (`daemon.warm_spare`): a worker started with `--spare` that loads, connects and
// opens its store but takes no work; when a worker is killed with SIGKILL the spare takes its
// slot at once (same pid, now consuming) and a new spare is started. It is not a worker: not in
// the workers list, not counted by start, incr, decr or daemon.max_workers; stop stops it too.
import { getBrokerUrl, setOption } from '@aiida/config';
import { isAlive } from '../support/processes.js';
import { waitFor } from '../support/wait-for.js';
import {
  allGone,
  type E2E,
  rabbitmqClient,
  setupE2E,
  waitForTerminal,
  withLogs,
} from './helpers.js';

let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({
    name: 'warm-spare',
    options: {
      'daemon.warm_spare': true,
      'daemon.max_workers': 3,
      // 10 slots a worker: 30 sleeps can't all go to one worker, on RabbitMQ (prefetch) as on
      // core.store (a worker claims at most its free slots), so the promoted one must take some.
      'daemon.worker_process_slots': 10,
    },
  });
});

afterAll(async () => {
  await e2e?.cleanup();
});

/**
 * Consumers on the profile's task queue, as RabbitMQ counts them; on the `core.store` transport,
 * which has no queue, undefined (there the bodies' pids show that the spare takes no work).
 */
async function taskConsumers(): Promise<number | undefined> {
  if (e2e.broker === undefined) return undefined;
  const { Connection } = rabbitmqClient();
  const connection = new Connection(getBrokerUrl(e2e.tp.profile));
  connection.on('error', () => {});
  try {
    const queue = await connection.queueDeclare({
      queue: e2e.broker.topology.processQueue,
      passive: true,
    });
    return queue.consumerCount;
  } finally {
    await connection.close();
  }
}

/** The daemon's spare once it is in standby. */
async function spareInStandby(notPid?: number) {
  return waitFor(
    async () => {
      const { spare } = await e2e.client.getStatus();
      return spare?.state === 'standby' && spare.pid !== notPid ? spare : undefined;
    },
    { timeout: 30, what: 'a warm spare in standby' },
  );
}

test('a worker killed with SIGKILL is replaced at once by the warm spare, which then takes work; a new spare follows', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    await client.startDaemon({ numberWorkers: 2 });
    const spare = await spareInStandby();
    const before = await client.getStatus();
    expect(before.numberWorkers).toBe(2);
    expect(before.workers.map((w) => w.pid)).not.toContain(spare.pid);
    // Loaded and connected, but not consuming: only the two workers are consumers.
    expect(await taskConsumers()).toBe(e2e.broker ? 2 : undefined);

    const victim = before.workers.find((w) => w.index === 0)!;
    process.kill(victim.pid!, 'SIGKILL');
    const after = await waitFor(
      async () => {
        const status = await client.getStatus();
        const slot = status.workers.find((w) => w.index === 0);
        return slot?.state === 'ready' && slot.pid !== victim.pid ? status : undefined;
      },
      { timeout: 30, interval: 0.01, what: 'worker 0 to be replaced' },
    );
    const replaced = after.workers.find((w) => w.index === 0)!;
    // The replacement is the former spare: no new process had to load first.
    expect(replaced.pid).toBe(spare.pid);
    expect(replaced.restarts).toBe(1);
    expect(replaced.lastRestartReason).toBe('exited');
    expect(isAlive(victim.pid!)).toBe(false);
    expect(after.numberWorkers).toBe(2);
    expect(after.workers.find((w) => w.index === 1)?.pid).toBe(before.workers[1]!.pid);

    // A new spare comes; the promoted one consumes: still two consumers, never three.
    const next = await spareInStandby(spare.pid);
    expect([replaced.pid, after.workers[1]!.pid]).not.toContain(next.pid);
    expect(await taskConsumers()).toBe(e2e.broker ? 2 : undefined);

    // The promoted worker takes work (the bodies log their worker's pid); the spare takes none.
    const submitted = await engine.submitMany(
      Array.from({ length: 30 }, (_, i) => ({ type: 'test.sleep', inputs: { ms: 200, x: i } })),
    );
    await waitForTerminal(engine, submitted.length, {
      timeout: 60,
      interval: 0.2,
      what: 'the sleeps',
    });
    const rows = [...(await e2e.rows()).values()];
    expect(rows.filter((r) => r.state !== 'finished').map((r) => `${r.pk}: ${r.state}`)).toEqual(
      [],
    );
    const runners = new Set(e2e.events().map((e) => e.pid));
    expect(runners.has(replaced.pid!)).toBe(true);
    expect(runners.has(next.pid)).toBe(false);
  });
}, 120_000);

test('the spare is not a worker: incr up to daemon.max_workers and decr count workers only; a rolling restart renews it; stop stops it too', async () => {
  await withLogs(e2e, async () => {
    const { client } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 1 });
    const spare = await spareInStandby();
    const current = (await client.getStatus()).numberWorkers;
    // daemon.max_workers is 3: the spare does not take one of the three places.
    const incr = await client.increaseWorkers(3 - current);
    expect(incr.numberWorkers).toBe(3);
    expect(incr.workers.map((w) => w.pid)).not.toContain(spare.pid);
    const full = await client.getStatus();
    expect(full.spare?.pid).toBe(spare.pid);
    expect(full.workers).toHaveLength(3);

    const decr = await client.decreaseWorkers(2);
    expect(decr.numberWorkers).toBe(1);
    expect((await client.getStatus()).spare?.pid).toBe(spare.pid);
    expect(isAlive(spare.pid)).toBe(true);

    // A rolling restart replaces the spare too (after the workers), so it runs the new options.
    const worker = (await client.getStatus()).workers[0]!;
    await client.restartDaemon();
    const renewed = await spareInStandby(spare.pid);
    const restarted = await client.getStatus();
    expect(restarted.workers.map((w) => w.pid)).not.toContain(worker.pid);
    expect(restarted.workers.map((w) => w.pid)).not.toContain(renewed.pid);
    await waitFor(() => !isAlive(spare.pid), { timeout: 20, what: 'the old spare to exit' });

    const pids = e2e.daemonPids();
    expect(pids).toContain(renewed.pid);
    const stopped = await client.stopDaemon();
    expect(stopped.killedWorkers).toBe(0);
    await waitFor(() => allGone([renewed.pid, ...pids]), {
      timeout: 20,
      what: 'the supervisor, its workers and the spare to be gone',
    });
  });
}, 120_000);

test('with daemon.warm_spare off there is no spare, and status says so', async () => {
  await withLogs(e2e, async () => {
    const { client } = e2e;
    const aiidaPath = e2e.tp.aiidaPath;
    setOption('daemon.warm_spare', false, { profile: e2e.tp.profile.name, aiidaPath });
    try {
      await client.startDaemon({ numberWorkers: 1 });
      const status = await client.getStatus();
      expect(status.spare).toBeNull();
      expect(status.workers).toHaveLength(1);
      await client.stopDaemon();
    } finally {
      setOption('daemon.warm_spare', true, { profile: e2e.tp.profile.name, aiidaPath });
    }
  });
}, 60_000);
