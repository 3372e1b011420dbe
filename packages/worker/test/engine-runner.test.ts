// Unit tests of EngineProcessRunner: an in-memory broker (queue, consumer with pause/resume, RPC
// registry) and a real SQLite store in a temporary folder; no processes, no RabbitMQ.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TaskConsumerOptions, TaskHandler } from '@aiida/broker';
import {
  calculation,
  Engine,
  ProcessRegistry,
  pluginApi,
  SqliteProcessStore,
  StoreWorkDispatcher,
  step,
  workflow,
} from '@aiida/engine';
import type { RpcReply, RpcRequest, StateChangedBroadcast } from '@aiida/ipc';
import {
  EngineProcessRunner,
  type EngineRunnerBroker,
  type RunnerRpcServer,
  type RunnerTaskConsumer,
  StoreTransportBroker,
} from '@aiida/worker';

const { z } = pluginApi;

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * A queue and one consumer, as RabbitMQ and TaskConsumer behave for the runner: at most
 * `prefetch` deliveries out unacked, a paused consumer holds none (they go back to the queue).
 */
class FakeBroker implements EngineRunnerBroker {
  queue: number[] = [];
  acked: number[] = [];
  requeued: number[] = [];
  /** Deliveries handed to the handler and not yet settled. */
  unacked = 0;
  paused = false;
  pauses = 0;
  broadcasts: StateChangedBroadcast[] = [];
  boundPks = new Set<number>();
  /** Every pk ever bound, in order. */
  bindCalls: number[] = [];
  rpcHandler: ((request: RpcRequest) => Promise<unknown>) | undefined;
  private handler: TaskHandler | undefined;
  private prefetch = 1;
  private closed = false;

  async connect(): Promise<void> {}
  async close(): Promise<void> {}

  async publishContinue(pk: number): Promise<void> {
    this.queue.push(pk);
    this.pump();
  }

  async publishContinueMany(pks: number[]): Promise<void> {
    this.queue.push(...pks);
    this.pump();
  }

  async callRpc(pk: number, request: RpcRequest): Promise<RpcReply> {
    if (!this.boundPks.has(pk) || !this.rpcHandler) throw new Error(`no holder for ${pk}`);
    return { v: 1, ok: true, result: await this.rpcHandler(request) };
  }

  consumeTasks(handler: TaskHandler, options: TaskConsumerOptions): RunnerTaskConsumer {
    this.handler = handler;
    this.prefetch = options.prefetch;
    setImmediate(() => this.pump());
    return {
      pause: async () => {
        this.paused = true;
        this.pauses++;
      },
      resume: async () => {
        this.paused = false;
        this.pump();
      },
      close: async () => {
        this.closed = true;
      },
    };
  }

  async serveRpc(handler: (request: RpcRequest) => Promise<unknown>): Promise<RunnerRpcServer> {
    this.rpcHandler = handler;
    return {
      addPk: async (pk) => {
        this.bindCalls.push(pk);
        this.boundPks.add(pk);
      },
      removePk: async (pk) => {
        this.boundPks.delete(pk);
      },
      close: async () => {},
    };
  }

  async broadcastStateChanged(message: StateChangedBroadcast): Promise<void> {
    this.broadcasts.push(message);
  }

  private pump(): void {
    while (
      this.handler &&
      !this.paused &&
      !this.closed &&
      this.unacked < this.prefetch &&
      this.queue.length > 0
    ) {
      const pk = this.queue.shift()!;
      this.unacked++;
      const handler = this.handler;
      void handler({ v: 1, type: 'continue', pk }, { redelivered: false, messageId: undefined })
        .then((outcome) => {
          this.unacked--;
          if (outcome === 'requeue') {
            this.requeued.push(pk);
            this.queue.unshift(pk);
          } else this.acked.push(pk);
          this.pump();
        })
        .catch(() => {
          this.unacked--;
        });
    }
  }
}

const gates = new Map<number, ReturnType<typeof deferred>>();
const gate = (key: number) => {
  if (!gates.has(key)) gates.set(key, deferred());
  return gates.get(key)!;
};
let starts: { pk: number; attempt: number }[] = [];

function testRegistry(): ProcessRegistry {
  const registry = new ProcessRegistry();
  registry.register(
    calculation({
      name: 'test.gated',
      inputs: z.object({ key: z.number() }),
      outputs: z.object({ key: z.number() }),
      run: async ({ key }, ctx) => {
        starts.push({ pk: ctx.pk, attempt: ctx.attempt });
        await gate(key).promise;
        return { key };
      },
    }),
  );
  registry.register(
    calculation({
      name: 'test.throws',
      inputs: z.object({}),
      outputs: z.object({}),
      run: async () => {
        throw new Error('boom from the body');
      },
    }),
  );
  registry.register(
    workflow({
      name: 'test.two_steps',
      inputs: z.object({ key: z.number() }),
      outputs: z.object({}),
      outline: [step('a'), step('b')],
      steps: {
        a: async (ctx) => {
          starts.push({ pk: ctx.pk, attempt: ctx.attempt });
          await gate(ctx.inputs.key).promise;
        },
        b: () => {},
      },
    }),
  );
  return registry;
}

const waitUntil = async (probe: () => boolean | Promise<boolean>, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
};

let dir: string;
let store: SqliteProcessStore;
let broker: FakeBroker;
let engine: Engine;
let runner: EngineProcessRunner;

function makeRunner(slots: number, prefetch?: number): EngineProcessRunner {
  const registry = testRegistry();
  return new EngineProcessRunner({
    // Its own connection to the file: the runner closes what it opened.
    open: async () => ({
      store: new SqliteProcessStore({ filepath: join(dir, 'aiida.sqlite') }),
      registry,
    }),
    workerId: 'test-worker',
    slots,
    prefetch,
    heartbeatInterval: 0.1,
    leaseTimeout: 5,
    maxAttempts: 3,
    reconcileInterval: 60,
    killGrace: 0.2,
    hostname: 'test-host',
  });
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'aiida-runner-test-'));
  store = new SqliteProcessStore({ filepath: join(dir, 'aiida.sqlite') });
  broker = new FakeBroker();
  engine = new Engine({ store, registry: testRegistry(), dispatcher: broker, control: broker });
  gates.clear();
  starts = [];
});

afterEach(async () => {
  for (const g of gates.values()) g.resolve();
  await runner?.drain(1);
  await store.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test('never more than `slots` processes; the consumer pauses when full and holds nothing then', async () => {
  runner = makeRunner(3, 3);
  await runner.start(broker);
  const pks = (
    await engine.submitMany(
      Array.from({ length: 8 }, (_, i) => ({ type: 'test.gated', inputs: { key: i } })),
    )
  ).map((p) => p.pk);
  await waitUntil(() => starts.length === 3);
  expect(runner.stats()).toMatchObject({ slotsUsed: 3, slotsTotal: 3 });
  expect(runner.isIntakePaused).toBe(true);
  expect(broker.unacked).toBe(0);
  // Every claimed task was acked at once, while its process still runs.
  expect(broker.acked).toHaveLength(3);
  // Running processes become routable for RPC within a heartbeat.
  const active = runner.stats().activePks.sort().join(',');
  await waitUntil(() => [...broker.boundPks].sort().join(',') === active);
  for (let i = 0; i < 8; i++) gate(i).resolve();
  await waitUntil(async () => (await engine.listProcesses({ states: ['finished'] })).length === 8);
  expect(runner.peakSlotsUsed).toBe(3);
  expect(broker.pauses).toBeGreaterThanOrEqual(1);
  expect(new Set(starts.map((s) => s.pk))).toEqual(new Set(pks));
  await waitUntil(() => runner.stats().slotsUsed === 0 && broker.boundPks.size === 0);
});

test('a task for a terminal, paused or already held process is acked and dropped', async () => {
  runner = makeRunner(5);
  await runner.start(broker);
  const { pk } = await engine.submit('test.gated', { key: 100 });
  await waitUntil(() => starts.length === 1);
  await broker.publishContinue(pk); // duplicate while it runs here
  await waitUntil(() => broker.acked.filter((p) => p === pk).length === 2);
  gate(100).resolve();
  await engine.waitForProcess(pk, { timeout: 5 });
  await broker.publishContinue(pk); // duplicate of a terminal one
  await waitUntil(() => broker.acked.filter((p) => p === pk).length === 3);
  const paused = await engine.submit('test.gated', { key: 101 });
  // Paused before any worker took it: its task is dropped, nothing starts.
  await engine.pauseProcess(paused.pk);
  await broker.publishContinue(paused.pk);
  await waitUntil(() => broker.acked.filter((p) => p === paused.pk).length >= 1);
  expect(starts).toHaveLength(1);
  expect(broker.requeued).toEqual([]);
});

test('a body that throws ends excepted with message and stack; the runner goes on', async () => {
  runner = makeRunner(2);
  await runner.start(broker);
  const bad = await engine.submit('test.throws', {});
  const row = await engine.waitForProcess(bad.pk, { timeout: 5 });
  expect(row.state).toBe('excepted');
  expect(row.exception).toContain('boom from the body');
  expect(row.exception).toMatch(/\n\s+at /);
  const good = await engine.submit('test.gated', { key: 7 });
  gate(7).resolve();
  expect((await engine.waitForProcess(good.pk, { timeout: 5 })).state).toBe('finished');
  expect(broker.broadcasts.some((b) => b.pk === bad.pk && b.to === 'excepted')).toBe(true);
});

test('RPC for a held pk reaches the executor: kill ends it killed', async () => {
  runner = makeRunner(2);
  await runner.start(broker);
  const { pk } = await engine.submit('test.gated', { key: 8 });
  await waitUntil(() => broker.boundPks.has(pk));
  const status = await broker.callRpc(pk, { v: 1, intent: 'status', pk });
  expect(status).toMatchObject({ ok: true, result: { pk, state: 'running', paused: false } });
  await expect(broker.rpcHandler!({ v: 1, intent: 'status', pk: pk + 1000 })).rejects.toMatchObject(
    { code: 'process_not_found' },
  );
  await engine.killProcess(pk, { message: 'stop it', force: true });
  const row = await engine.waitForProcess(pk, { timeout: 10 });
  expect(row).toMatchObject({ state: 'killed', processStatus: 'Killed: stop it' });
  await waitUntil(() => !broker.boundPks.has(pk));
});

test('RPC is routed only to processes that outlive a heartbeat, and unrouted when they end', async () => {
  runner = makeRunner(4);
  await runner.start(broker);
  const quick = await engine.submit('test.throws', {});
  const slow = await engine.submit('test.gated', { key: 12 });
  expect((await engine.waitForProcess(quick.pk, { timeout: 5 })).state).toBe('excepted');
  await waitUntil(() => broker.boundPks.has(slow.pk));
  gate(12).resolve();
  expect((await engine.waitForProcess(slow.pk, { timeout: 5 })).state).toBe('finished');
  await waitUntil(() => !broker.boundPks.has(slow.pk));
  // The quick one ended before its heartbeat came: it never cost a binding.
  expect(broker.bindCalls).toEqual([slow.pk]);
});

test('drain releases a workflow at its step boundary and publishes its task again', async () => {
  runner = makeRunner(2);
  await runner.start(broker);
  const { pk } = await engine.submit('test.two_steps', { key: 9 });
  await waitUntil(() => starts.length === 1);
  const draining = runner.drain(2);
  gate(9).resolve();
  await draining;
  const row = await engine.getProcess(pk);
  expect(row).toMatchObject({ state: 'waiting', owner: null, runnable: true });
  expect(broker.queue).toEqual([pk]);
  expect(runner.stats().slotsUsed).toBe(0);
});

test('registers in the worker registry at start, heartbeats its slots there, and leaves on drain', async () => {
  // Rows a killed worker of this host and one of another host left a minute ago.
  const past = new SqliteProcessStore({
    filepath: join(dir, 'aiida.sqlite'),
    clock: { now: () => Date.now() - 60_000 },
  });
  const dead = { pid: 1, slotsUsed: 0, slotsTotal: 2 };
  await past.registerWorker({ ...dead, workerId: 'test-host:1:dead', hostname: 'test-host' });
  await past.registerWorker({ ...dead, workerId: 'other:1:dead', hostname: 'other' });
  await past.close();
  runner = makeRunner(2, 2);
  await runner.start(broker);
  // This host's dead worker is cleared at the start; another host's row is not ours to clear.
  expect((await store.listWorkers({ staleAfterSeconds: 5 })).map((w) => w.workerId)).toEqual([
    'other:1:dead',
    'test-worker',
  ]);
  const mine = async () =>
    (await store.listWorkers({ staleAfterSeconds: 5 })).find((w) => w.workerId === 'test-worker');
  expect(await mine()).toMatchObject({
    hostname: 'test-host',
    pid: process.pid,
    slotsUsed: 0,
    slotsTotal: 2,
    stale: false,
  });
  const first = (await mine())!.lastHeartbeatAt;
  await engine.submit('test.gated', { key: 1 });
  // The next heartbeats carry the slot in use and a later time.
  await waitUntil(async () => {
    const row = await mine();
    return row?.slotsUsed === 1 && row.lastHeartbeatAt > first;
  });
  gate(1).resolve();
  await runner.drain(2);
  expect((await store.listWorkers({ staleAfterSeconds: 5 })).map((w) => w.workerId)).toEqual([
    'other:1:dead',
  ]);
});

describe('core.store: the store is the queue', () => {
  function makeStoreRunner(slots: number, pollInterval: number): EngineProcessRunner {
    const registry = testRegistry();
    return new EngineProcessRunner({
      transport: 'core.store',
      pollInterval,
      open: async () => ({
        store: new SqliteProcessStore({ filepath: join(dir, 'aiida.sqlite') }),
        registry,
      }),
      workerId: 'store-worker',
      slots,
      heartbeatInterval: 0.1,
      leaseTimeout: 5,
      maxAttempts: 3,
      reconcileInterval: 60,
      killGrace: 0.2,
    });
  }

  test('claims woken work in batches, never more than its slots, and the rest as slots free up', async () => {
    runner = makeStoreRunner(3, 60);
    await runner.start(new StoreTransportBroker());
    // A submitter of this store: its wake-ups go through the store, not through a broker.
    const submitter = new Engine({
      store,
      registry: testRegistry(),
      dispatcher: new StoreWorkDispatcher(store),
    });
    const pks = (
      await submitter.submitMany(
        Array.from({ length: 8 }, (_, i) => ({ type: 'test.gated', inputs: { key: i } })),
      )
    ).map((p) => p.pk);
    // The poll is a minute away: only the wake-up can have started them.
    await waitUntil(() => starts.length === 3);
    expect(runner.stats()).toMatchObject({ slotsUsed: 3, slotsTotal: 3 });
    // Oldest first.
    expect(starts.map((s) => s.pk).sort((a, b) => a - b)).toEqual(pks.slice(0, 3));
    for (let i = 0; i < 8; i++) gate(i).resolve();
    await waitUntil(
      async () => (await submitter.listProcesses({ states: ['finished'] })).length === 8,
    );
    expect(runner.peakSlotsUsed).toBe(3);
    expect(new Set(starts.map((s) => s.pk))).toEqual(new Set(pks));
    expect(starts).toHaveLength(8);
  });

  test('with no wake-up at all, the poll finds the work', async () => {
    runner = makeStoreRunner(5, 0.2);
    await runner.start(new StoreTransportBroker());
    // No dispatcher: nothing wakes the runner.
    const quiet = new Engine({ store, registry: testRegistry() });
    const { pk } = await quiet.submit('test.gated', { key: 1 });
    gate(1).resolve();
    const row = await quiet.waitForProcess(pk, { timeout: 5 });
    expect(row.state).toBe('finished');
  });

  test('a kill intent reaches a running process within a heartbeat, without RPC', async () => {
    runner = makeStoreRunner(2, 60);
    await runner.start(new StoreTransportBroker());
    const submitter = new Engine({
      store,
      registry: testRegistry(),
      dispatcher: new StoreWorkDispatcher(store),
    });
    const { pk } = await submitter.submit('test.gated', { key: 7 });
    await waitUntil(() => starts.some((s) => s.pk === pk));
    // The gated body ignores its abort signal: force makes the kill final after the grace.
    const result = await submitter.killProcess(pk, { message: 'enough', force: true });
    expect(result.outcome).toBe('requested');
    const row = await submitter.waitForProcess(pk, { timeout: 5 });
    expect(row).toMatchObject({ state: 'killed', processStatus: 'Killed: enough' });
  });

  test('a core.rabbitmq runner refuses a broker that consumes no tasks', async () => {
    runner = makeRunner(1);
    await expect(runner.start(new StoreTransportBroker())).rejects.toThrow(
      'a core.rabbitmq runner needs a broker that consumes tasks',
    );
  });
});
