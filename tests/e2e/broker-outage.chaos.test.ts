// Acceptance 5 (issue 4), chaos: RabbitMQ's app is stopped (`rabbitmqctl stop_app`) while at least
// 50 processes are queued and 10 run, kept down at least 15 s while 20 more are submitted (each
// submit succeeds: the row is committed, the reconciler dispatches it later), then started again.
// The workers' connections come back (`rabbitmqctl list_connections`) and every process finishes,
// once, within a deadline that allows for the reconnect backoff. `start_app` runs in a `finally`.
import { waitFor } from '../support/wait-for.js';
import {
  type E2E,
  groupBy,
  rabbitmqctl,
  readyWorkerPids,
  setupE2E,
  waitForTerminal,
  withLogs,
} from './helpers.js';

const QUEUED_AT_START = 70;
const DURING_OUTAGE = 20;
const OUTAGE_MS = 15_000;
let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({
    // RabbitMQ's outage: this file is about the broker transport only.
    processControl: 'core.rabbitmq',
    name: 'broker-outage',
    options: {
      // 2 workers × 5 slots: 10 run at once.
      'daemon.worker_process_slots': 5,
      // Submits during the outage give up on the publish sooner (the reconciler dispatches).
      'broker.task_timeout': 5,
    },
  });
});

afterAll(async () => {
  await e2e?.cleanup();
});

test('stop_app for 15 s with 60 queued and 10 running, 20 submitted meanwhile: all finish once after start_app', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    const broker = e2e.broker!;
    await client.startDaemon({ numberWorkers: 2 });
    const pids = await readyWorkerPids(client);
    expect(pids).toHaveLength(2);
    const first = await engine.submitMany(
      Array.from({ length: QUEUED_AT_START }, (_, i) => ({
        type: 'test.sleep',
        inputs: { ms: 2000, x: i },
      })),
    );
    const atStop = await waitFor(
      async () => {
        const running = await engine.listProcesses({ states: ['running'] });
        const queued = await engine.listProcesses({ states: ['created'] });
        return running.length === 10 && queued.length >= 50
          ? { running: running.length, queued: queued.length }
          : undefined;
      },
      { timeout: 30, interval: 0.05, what: '10 running and at least 50 queued' },
    );
    let during: { pk: number }[] = [];
    let downFor = 0;
    const stoppedAt = Date.now();
    try {
      await rabbitmqctl('stop_app');
      // The fault bites: our own connection is gone.
      await waitFor(() => !broker.isConnected, { timeout: 10, what: 'the connection to drop' });
      const t0 = Date.now();
      during = await Promise.all(
        Array.from({ length: DURING_OUTAGE }, (_, i) =>
          engine.submit('test.sleep', { ms: 500, x: 1000 + i }),
        ),
      );
      const submitTook = Date.now() - t0;
      expect(during).toHaveLength(DURING_OUTAGE);
      const rows = await e2e.rows();
      expect(during.every(({ pk }) => rows.get(pk)?.dispatchedAt === null)).toBe(true);
      console.log(
        `broker-outage: ${DURING_OUTAGE} submits during the outage took ${submitTook} ms`,
      );
      await waitFor(() => Date.now() - stoppedAt >= OUTAGE_MS, {
        timeout: OUTAGE_MS / 1000 + 5,
        interval: 0.2,
        what: 'the outage to last 15 s',
      });
    } finally {
      downFor = Date.now() - stoppedAt;
      await rabbitmqctl('start_app');
    }
    const startedAt = Date.now();
    // The workers' connections are back (client_properties carry their connection_name).
    await waitFor(
      async () => {
        const names = await rabbitmqctl('list_connections', 'client_properties');
        return pids.every((pid) => names.includes(`aiida-worker-${pid}`));
      },
      { timeout: 60, interval: 0.5, what: "the workers' connections to come back" },
    );
    const reconnected = (Date.now() - startedAt) / 1000;
    const total = QUEUED_AT_START + DURING_OUTAGE;
    await waitForTerminal(engine, total, {
      timeout: 120,
      interval: 0.5,
      what: `all ${total} processes to end`,
    });
    const finishedAfter = (Date.now() - startedAt) / 1000;
    const rows = await e2e.rows();
    const all = [...first, ...during].map(({ pk }) => rows.get(pk)!);
    expect(all.filter((r) => r.state !== 'finished').map((r) => `${r.pk}: ${r.state}`)).toEqual([]);
    // No owner was lost (the store stayed up): each ran once.
    const starts = groupBy(
      e2e.events().filter((e) => e.event === 'start'),
      (e) => e.pk,
    );
    expect(all.filter((r) => starts.get(r.pk)?.length !== 1).map((r) => r.pk)).toEqual([]);
    // The same two workers did it all.
    expect((await readyWorkerPids(client)).sort()).toEqual([...pids].sort());
    console.log(
      `broker-outage: at stop_app ${atStop.running} running, ${atStop.queued} queued; down ` +
        `${(downFor / 1000).toFixed(1)} s; workers reconnected ${reconnected.toFixed(1)} s after ` +
        `start_app; all ${total} finished ${finishedAfter.toFixed(1)} s after it, one start each`,
    );
    await client.stopDaemon();
  });
}, 240_000);
