// Acceptance 8 (issue 4): bad input never takes the daemon down and changes nothing else.
// - invalid inputs, an unknown type, a type of a plugin that fails to import: `submit` throws an
//   EngineError with a known code whose message names the input; no row, no task;
// - a worker whose plugin fails to import records the plugin's processes `excepted` with the
//   import error; a body that throws is `excepted` with message and stack; workers stay up;
// - a stray message on the transport changes nothing: RabbitMQ, a poison message published by
//   hand to the task queue ends in the dead-letter queue (+1); core.store, a storm of wake-ups
//   with no work behind them;
// - a body that calls process.exit() takes down at most engine.max_attempts workers, then its
//   process is `excepted`, and the daemon runs on.
import { TASK_ROUTING_KEY } from '@aiida/broker';
import { getBrokerUrl } from '@aiida/config';
import {
  Engine,
  EngineError,
  EngineErrorCodes,
  loadPlugins,
  openProcessStore,
  ProcessRegistry,
  StoreWorkDispatcher,
  silentLogger,
} from '@aiida/engine';
import { waitFor } from '../support/wait-for.js';
import { type E2E, rabbitmqClient, readyWorkerPids, setupE2E, withLogs } from './helpers.js';

const MAX_ATTEMPTS = 3;
let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({
    name: 'bad-input',
    plugins: ['./test-plugin.mjs', './fragile-plugin.mjs'],
    options: { 'engine.max_attempts': MAX_ATTEMPTS },
    // The daemon's workers can't import fragile-plugin.mjs; this test process can.
    env: { AIIDA_TEST_BREAK_PLUGIN: '1' },
  });
});

afterAll(async () => {
  await e2e?.cleanup();
});

/** Rows and queue counts, to show that nothing changed. */
async function snapshot() {
  const rows = await e2e.engine.listProcesses({});
  return {
    rows: JSON.stringify(rows),
    count: rows.length,
    queues: e2e.broker ? await e2e.broker.queueCounts() : null,
  };
}

async function submitError(engine: Engine, type: string, inputs: unknown): Promise<EngineError> {
  const error = await engine.submit(type, inputs).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EngineError);
  return error as EngineError;
}

test('invalid inputs, an unknown type, a type of a plugin that fails to import: clear errors, nothing stored', async () => {
  const before = await snapshot();
  const invalid = await submitError(e2e.engine, 'core.arithmetic.add', { x: 1, y: 'two' });
  expect(invalid.code).toBe(EngineErrorCodes.inputsInvalid);
  expect(invalid.message).toContain('y');
  expect(invalid.message).toContain('core.arithmetic.add');

  const unknown = await submitError(e2e.engine, 'test.no_such_type', {});
  expect(unknown.code).toBe(EngineErrorCodes.unknownProcessType);
  expect(unknown.message).toContain("'test.no_such_type'");

  // An engine whose plugin list has a module that fails to import.
  const registry = new ProcessRegistry();
  const failures = await loadPlugins(
    registry,
    ['./broken-plugin.mjs'],
    e2e.tp.aiidaPath,
    silentLogger,
  );
  expect(failures.map((f) => f.spec)).toEqual(['./broken-plugin.mjs']);
  const store = await openProcessStore(e2e.tp.profile);
  try {
    const engine = new Engine({
      store,
      registry,
      dispatcher: e2e.broker ?? new StoreWorkDispatcher(store),
      logger: silentLogger,
    });
    const broken = await submitError(engine, 'test.from_broken_plugin', { x: 1 });
    expect(broken.code).toBe(EngineErrorCodes.pluginImportFailed);
    expect(broken.message).toContain('test.from_broken_plugin');
    expect(broken.message).toContain('./broken-plugin.mjs');
    expect(broken.message).toContain('fails to import on purpose');
  } finally {
    await store.close();
  }
  expect(await snapshot()).toEqual(before);
}, 30_000);

test('in the daemon: a failed plugin makes its processes excepted, a throwing body is excepted; workers stay up', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 2 });
    const pids = (await readyWorkerPids(client)).sort();
    expect(pids).toHaveLength(2);

    const fragile = await engine.submit('test.fragile', { x: 1 });
    const fragileRow = await engine.waitForProcess(fragile.pk, { timeout: 20 });
    expect(fragileRow.state).toBe('excepted');
    expect(fragileRow.exception).toContain(EngineErrorCodes.pluginImportFailed);
    expect(fragileRow.exception).toContain('./fragile-plugin.mjs');
    expect(fragileRow.exception).toContain('AIIDA_TEST_BREAK_PLUGIN=1');

    const throws = await engine.submit('test.throws', { message: 'deliberate failure 42' });
    const throwsRow = await engine.waitForProcess(throws.pk, { timeout: 20 });
    expect(throwsRow.state).toBe('excepted');
    expect(throwsRow.exception).toContain('Error: deliberate failure 42');
    expect(throwsRow.exception).toMatch(/\n\s+at /);
    expect(throwsRow.processStatus).toContain('deliberate failure 42');

    // The same workers still run, and still work.
    expect((await readyWorkerPids(client)).sort()).toEqual(pids);
    const add = await engine.submit('core.arithmetic.add', { x: 20, y: 22 });
    expect((await engine.waitForProcess(add.pk, { timeout: 20 })).outputs).toEqual({ sum: 42 });
    const workerLog = e2e.tp.logTails(200);
    expect(workerLog).toContain("plugin './fragile-plugin.mjs' could not be loaded");
  });
}, 60_000);

test('a stray message on the transport changes nothing (RabbitMQ: a poison message is dead-lettered)', async () => {
  await withLogs(e2e, async () => {
    const { client } = e2e;
    const broker = e2e.broker;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 2 });
    const pids = (await readyWorkerPids(client)).sort();
    if (!broker) {
      // core.store: a wake-up carries nothing; a storm of them with no work behind changes no
      // row and no worker, and a process submitted afterwards still runs.
      const rowsBefore = (await snapshot()).rows;
      for (let i = 0; i < 200; i++) await e2e.engine.store.notifyWork();
      const probe = await e2e.engine.submit('test.sleep', { ms: 1 });
      await e2e.engine.waitForProcess(probe.pk, { timeout: 20 });
      const rowsAfter = JSON.parse((await snapshot()).rows) as { pk: number }[];
      expect(JSON.stringify(rowsAfter.filter((r) => r.pk !== probe.pk))).toEqual(rowsBefore);
      expect((await readyWorkerPids(client)).sort()).toEqual(pids);
      return;
    }
    const before = await broker.queueCounts();
    const rowsBefore = (await snapshot()).rows;
    const { Connection } = rabbitmqClient();
    const connection = new Connection(getBrokerUrl(e2e.tp.profile));
    connection.on('error', () => {});
    try {
      const publisher = connection.createPublisher({ confirm: true });
      await publisher.send(
        {
          exchange: broker.topology.tasksExchange,
          routingKey: TASK_ROUTING_KEY,
          contentType: 'application/json',
          durable: true,
        },
        { v: 1, type: 'continue', pk: 'not-a-pk', poison: true },
      );
      await publisher.close();
    } finally {
      await connection.close();
    }
    const after = await waitFor(
      async () => {
        const counts = await broker.queueCounts();
        return counts.deadLetters === before.deadLetters + 1 ? counts : undefined;
      },
      { timeout: 20, what: 'the poison message to be dead-lettered' },
    );
    expect(after.tasks).toBe(0);
    expect((await snapshot()).rows).toEqual(rowsBefore);
    // The worker logs before it drops the message, but its log reaches the file through the
    // supervisor's pipe, which may lag behind the broker's count.
    await waitFor(() => e2e.tp.logTails(200).includes('dead-lettering an invalid task message'), {
      timeout: 10,
      what: "the worker's log line about the poison message",
    });
    expect((await readyWorkerPids(client)).sort()).toEqual(pids);
  });
}, 60_000);

test(`a body that calls process.exit() takes down at most ${MAX_ATTEMPTS} workers, then is excepted`, async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 2 });
    const restartsBefore = (await client.getStatus()).workers.reduce((n, w) => n + w.restarts, 0);
    const t0 = Date.now();
    const { pk } = await engine.submit('test.exit', { code: 7 });
    const row = await engine.waitForProcess(pk, { timeout: 90 });
    const took = (Date.now() - t0) / 1000;
    expect(row.state).toBe('excepted');
    expect(row.exception).toContain(`owner lost ${MAX_ATTEMPTS} times`);
    expect(row.exception).toContain(`engine.max_attempts = ${MAX_ATTEMPTS}`);
    const starts = e2e.events().filter((e) => e.pk === pk && e.event === 'start');
    expect(starts.length).toBeGreaterThanOrEqual(1);
    expect(starts.length).toBeLessThanOrEqual(MAX_ATTEMPTS);
    expect(new Set(starts.map((s) => s.pid)).size).toBe(starts.length);
    // The daemon runs on: both workers ready (revived), and they work.
    const status = await waitFor(
      async () => {
        const s = await client.getStatus();
        return s.workers.every((w) => w.state === 'ready') ? s : undefined;
      },
      { timeout: 30, what: 'both workers ready again' },
    );
    const deaths = status.workers.reduce((n, w) => n + w.restarts, 0) - restartsBefore;
    expect(deaths).toBe(starts.length);
    expect(deaths).toBeLessThanOrEqual(MAX_ATTEMPTS);
    const add = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    expect((await engine.waitForProcess(add.pk, { timeout: 20 })).outputs).toEqual({ sum: 3 });
    console.log(
      `bad-input: process.exit() body took down ${deaths} worker(s) in ${took.toFixed(1)} s, ` +
        `then was excepted: ${row.processStatus}`,
    );
    await client.stopDaemon();
  });
}, 120_000);
