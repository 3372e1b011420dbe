// Issue 10, the core.store transport on SQLite (the store is the queue, no broker):
// acceptance 3, no process of the daemon has a TCP socket while it runs adds and workflows;
// acceptance 4, wake-ups suppressed by the test hook delay a process by at most the poll
// interval and lose nothing.
import { createServer } from 'node:net';
import { openProcessStore, SUPPRESS_WAKE_UPS_ENV } from '@aiida/engine';
import { tcpSocketsOf } from '../support/sockets.js';
import { waitFor } from '../support/wait-for.js';
import {
  type E2E,
  readyWorkerPids,
  setupE2E,
  waitForTerminal,
  withLogs,
  wrongArithmeticResults,
} from './helpers.js';

const POLL_INTERVAL = 2;
let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({
    name: 'store-transport',
    processControl: 'core.store',
    options: { 'daemon.store_poll_interval': POLL_INTERVAL },
  });
});

afterAll(async () => {
  delete process.env[SUPPRESS_WAKE_UPS_ENV];
  await e2e?.cleanup();
});

test('the TCP socket check bites: it finds a listening socket of this test process', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    expect(tcpSocketsOf(process.pid).length).toBeGreaterThan(0);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

test('300 adds and 50 workflows on 2 workers: all correct, one result each, and no daemon process has a TCP socket', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    expect(e2e.broker).toBeUndefined();
    await client.startDaemon({ numberWorkers: 2 });
    const workers = await waitFor(
      async () => {
        const pids = await readyWorkerPids(client);
        return pids.length === 2 ? pids : undefined;
      },
      { timeout: 30, what: '2 ready workers' },
    );
    const adds = await engine.submitMany(
      Array.from({ length: 300 }, (_, i) => ({
        type: 'core.arithmetic.add',
        inputs: { x: i, y: 2 * i + 1 },
      })),
    );
    const flows = await engine.submitMany(
      Array.from({ length: 50 }, (_, i) => ({
        type: 'core.arithmetic.multiply_add',
        inputs: { x: i, y: 3, z: 7 },
      })),
    );
    // Sampled while the work runs and after: the supervisor and both workers.
    const sockets = new Map<number, string[]>();
    const sample = () => {
      for (const pid of e2e.daemonPids()) {
        try {
          const found = tcpSocketsOf(pid);
          if (found.length > 0)
            sockets.set(
              pid,
              found.map((s) => `fd ${s.fd} to port ${s.remotePort}`),
            );
        } catch {
          // gone
        }
      }
    };
    sample();
    const total = adds.length + 2 * flows.length;
    await waitForTerminal(engine, total, {
      timeout: 120,
      interval: 0.2,
      what: `all ${total} processes to end`,
    });
    sample();
    expect(e2e.daemonPids()).toEqual(expect.arrayContaining(workers));
    expect(Object.fromEntries(sockets)).toEqual({});
    const rows = await e2e.rows();
    expect(rows.size).toBe(total);
    expect(wrongArithmeticResults(rows.values())).toEqual([]);
    expect([...rows.values()].filter((r) => r.ownerLosses !== 0 || r.attempts !== 1)).toEqual([]);
    expect(e2e.tp.logTails(200)).toContain('from the store (core.store');
  });
}, 180_000);

test(`a lost wake-up delays a process by at most the poll interval (${POLL_INTERVAL} s) and loses nothing`, async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 2 });
    // The hook bites: with it set, a submit wakes no listener; without it, it does.
    const listener = await openProcessStore(e2e.tp.profile);
    let heard = 0;
    const stop = await listener.listenForWork(() => {
      heard++;
    });
    try {
      process.env[SUPPRESS_WAKE_UPS_ENV] = '1';
      const quiet = await engine.submit('core.arithmetic.add', { x: 1, y: 1 });
      await engine.waitForProcess(quiet.pk, { timeout: 30 });
      expect(heard).toBe(0);
      delete process.env[SUPPRESS_WAKE_UPS_ENV];
      const loud = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
      await waitFor(() => heard > 0, { timeout: 10, what: 'the wake-up of a normal submit' });
      await engine.waitForProcess(loud.pk, { timeout: 30 });
    } finally {
      await stop();
      await listener.close();
    }

    // Ten rounds of a submit whose wake-up is lost, each while the daemon is idle.
    process.env[SUPPRESS_WAKE_UPS_ENV] = '1';
    const delays: number[] = [];
    try {
      for (let i = 0; i < 10; i++) {
        const { pk } = await engine.submit('core.arithmetic.add', { x: i, y: 100 });
        const row = await engine.waitForProcess(pk, { timeout: 30 });
        expect(row).toMatchObject({ state: 'finished', outputs: { sum: i + 100 } });
        delays.push((Date.parse(row.startedAt!) - Date.parse(row.createdAt)) / 1000);
      }
    } finally {
      delete process.env[SUPPRESS_WAKE_UPS_ENV];
    }
    console.log(
      `store-transport: start delays with lost wake-ups (poll ${POLL_INTERVAL} s): ${delays.map((d) => d.toFixed(2)).join(', ')} s`,
    );
    // At most the poll interval, plus slack for timers on a loaded 2-core machine.
    expect(Math.max(...delays)).toBeLessThanOrEqual(POLL_INTERVAL + 1.5);
  });
}, 120_000);
