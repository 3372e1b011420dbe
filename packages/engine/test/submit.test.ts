import {
  Engine,
  EngineErrorCodes,
  isEngineError,
  ProcessRegistry,
  Reconciler,
  type SqliteProcessStore,
  step,
  workflow,
} from '@aiida/engine';
import { z } from 'zod';
import { FakeBroker, FakeClock, openTestStore, tempDir, testEngine } from './helpers.js';

async function errorOf(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; details?: unknown }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

describe('Engine.submit and queries', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteProcessStore;
  let broker: FakeBroker;
  let engine: Engine;
  let clock: FakeClock;

  beforeEach(() => {
    tmp = tempDir();
    clock = new FakeClock();
    store = openTestStore(tmp.dir, clock);
    broker = new FakeBroker();
    engine = testEngine(store, { broker, clock });
  });
  afterEach(async () => {
    await engine.close();
    tmp.remove();
  });

  test('commits a created row, publishes its task, then records dispatched_at', async () => {
    const { pk, uuid } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    expect(broker.published).toEqual([pk]);
    const row = await engine.getProcess(pk);
    expect(row).toMatchObject({
      pk,
      uuid,
      state: 'created',
      runnable: true,
      owner: null,
      inputs: { x: 1, y: 2 },
    });
    expect(row.dispatchedAt).not.toBeNull();
  });

  test('invalid inputs: inputs_invalid naming the input path; nothing stored, nothing published', async () => {
    const error = await errorOf(engine.submit('core.arithmetic.add', { x: 1, y: 'two' }));
    expect(isEngineError(error)).toBe(true);
    expect(error.code).toBe(EngineErrorCodes.inputsInvalid);
    expect(error.message).toContain('core.arithmetic.add');
    expect(error.message).toMatch(/\by: .*expected number/);
    const nested = await errorOf(engine.submit('core.shell', { command: 'ls', args: ['-l', 3] }));
    expect(nested.message).toContain('args.1:');
    const missing = await errorOf(engine.submit('core.arithmetic.add', { x: 1 }));
    expect(missing.message).toContain('y:');
    expect(await engine.listProcesses()).toEqual([]);
    expect(broker.published).toEqual([]);
  });

  test('an input the process does not declare is refused, naming it (as AiiDA does)', async () => {
    const error = await errorOf(
      engine.submit('core.shell', { command: 'echo', arguments: ['hi'] }),
    );
    expect(error.code).toBe(EngineErrorCodes.inputsInvalid);
    expect(error.message).toBe(
      'invalid inputs for core.shell: arguments: not an input of core.shell (its inputs: command, args, env, stdin, cwd)',
    );
    expect(error.details).toMatchObject({ type: 'core.shell', issues: [{ path: 'arguments' }] });
    const several = await errorOf(
      engine.submitMany([
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2, z: 3, w: 4 } },
      ]),
    );
    expect(several.message).toMatch(
      /^item 1: invalid inputs for core\.arithmetic\.add: z: .*; w: /,
    );
    await expect(engine.runGetProcess('core.arithmetic.add', { x: 1, y: 2, q: 1 })).rejects.toThrow(
      /q: not an input of core\.arithmetic\.add/,
    );
    expect(await engine.listProcesses()).toEqual([]);
    expect(broker.published).toEqual([]);
  });

  test('inputs above engine.max_input_bytes (default 4 MiB): inputs_too_large naming the input and the limit; nothing stored', async () => {
    const stdin = 'x'.repeat(4 * 1024 * 1024 + 1);
    const error = await errorOf(engine.submit('core.shell', { command: 'cat', stdin }));
    expect(isEngineError(error)).toBe(true);
    expect(error.code).toBe(EngineErrorCodes.inputsTooLarge);
    expect(error.message).toContain('inputs of core.shell too large');
    expect(error.message).toContain("the largest input is 'stdin', 4194307 bytes (4 MiB)");
    expect(error.message).toContain('above the limit of 4194304 bytes (4 MiB)');
    expect(error.message).toContain('engine.max_input_bytes');
    expect(error.details).toMatchObject({ input: 'stdin', maxBytes: 4194304 });
    // One oversized item of a batch stores nothing of the batch; run() refuses the same way.
    const batch = await errorOf(
      engine.submitMany([
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
        { type: 'core.shell', inputs: { command: 'cat', stdin } },
      ]),
    );
    expect(batch.code).toBe(EngineErrorCodes.inputsTooLarge);
    expect(batch.message).toMatch(/^item 1: inputs of core.shell too large/);
    const run = await errorOf(engine.runGetProcess('core.shell', { command: 'cat', stdin }));
    expect(run.code).toBe(EngineErrorCodes.inputsTooLarge);
    expect(await engine.listProcesses()).toEqual([]);
    expect(broker.published).toEqual([]);
    // Just under the limit is accepted.
    const fits = 'x'.repeat(4 * 1024 * 1024 - 64);
    const { pk } = await engine.submit('core.shell', { command: 'cat', stdin: fits });
    expect((await engine.getProcess(pk)).inputs).toMatchObject({ stdin: fits });
  });

  test('engine.max_input_bytes also bounds the children a workflow submits: the step fails, no child is stored', async () => {
    const registry = new ProcessRegistry();
    registry.register(
      workflow({
        name: 'test.big_child',
        inputs: z.object({ size: z.number().int() }),
        outputs: z.object({}),
        outline: [step('spawn')],
        steps: {
          spawn: async (ctx) => {
            await ctx.submit('core.shell', { command: 'cat', stdin: 'x'.repeat(ctx.inputs.size) });
          },
        },
      }),
    );
    const small = new Engine({
      store,
      registry,
      dispatcher: broker,
      maxInputBytes: 100,
      logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
      clock,
    });
    const { process } = await small.runGetProcess('test.big_child', { size: 200 });
    expect(process.state).toBe('excepted');
    const rows = await small.listProcesses();
    expect(rows.map((r) => [r.type, r.state])).toEqual([['test.big_child', 'excepted']]);
    expect(rows[0]?.exception).toContain('inputs of core.shell too large');
    expect(rows[0]?.exception).toContain('engine.max_input_bytes');
  });

  test('engine.max_input_bytes applies as set', async () => {
    const small = new Engine({
      store,
      registry: new ProcessRegistry(),
      dispatcher: broker,
      maxInputBytes: 100,
      logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
      clock,
    });
    const error = await errorOf(small.submit('core.arithmetic.add', { x: 1, y: 'y'.repeat(200) }));
    // Size is checked after validation: a wrong input is named as invalid first.
    expect(error.code).toBe(EngineErrorCodes.inputsInvalid);
    const big = await errorOf(
      small.submit('core.shell', { command: 'echo', args: ['a'.repeat(60), 'b'.repeat(70)] }),
    );
    expect(big.code).toBe(EngineErrorCodes.inputsTooLarge);
    expect(big.message).toContain("the largest input is 'args'");
    expect(big.message).toContain('above the limit of 100 bytes');
    expect(await small.listProcesses()).toEqual([]);
  });

  test('unknown type: unknown_process_type listing the known types; nothing stored', async () => {
    const error = await errorOf(engine.submit('core.arithmetic.ad', { x: 1, y: 2 }));
    expect(error.code).toBe(EngineErrorCodes.unknownProcessType);
    expect(error.message).toContain("'core.arithmetic.ad'");
    expect(error.message).toContain(
      'core.arithmetic.add, core.arithmetic.multiply_add, core.shell',
    );
    expect(await engine.listProcesses()).toEqual([]);
  });

  test('a bad timeLimit is refused like a bad input', async () => {
    const error = await errorOf(
      engine.submit('core.arithmetic.add', { x: 1, y: 2 }, { timeLimit: -1 }),
    );
    expect(error.code).toBe(EngineErrorCodes.inputsInvalid);
    expect(error.message).toContain('timeLimit');
    expect(await engine.listProcesses()).toEqual([]);
  });

  test('broker down: submit still succeeds; the reconciler dispatches after the grace', async () => {
    broker.down = true;
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    expect((await engine.getProcess(pk)).dispatchedAt).toBeNull();
    broker.down = false;
    const reconciler = new Reconciler({
      store,
      dispatcher: broker,
      ownerId: 'w1',
      leaseTimeout: 5,
      neverDispatchedGrace: 10,
    });
    expect(await reconciler.tick()).toEqual({ leader: true, dispatched: [], killed: [] });
    clock.advance(11);
    expect(await reconciler.tick()).toEqual({ leader: true, dispatched: [pk], killed: [] });
    expect(broker.published).toEqual([pk]);
    expect((await engine.getProcess(pk)).dispatchedAt).not.toBeNull();
    // A second worker is not the leader and does nothing.
    const other = new Reconciler({ store, dispatcher: broker, ownerId: 'w2', leaseTimeout: 5 });
    expect((await other.tick()).leader).toBe(false);
  });

  test('the reconciler re-sends an expired, unclaimed process with a backoff, two copies per re-send, until a live worker claims it', async () => {
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    await store.claim(pk, 'stalled', 5, { maxAttempts: 5 });
    const reconciler = new Reconciler({
      store,
      dispatcher: broker,
      ownerId: 'w1',
      leaseTimeout: 5,
    });
    broker.published = [];
    clock.advance(6); // the stalled owner's lease expired 1 s ago: first send, one copy
    expect((await reconciler.tick()).dispatched).toEqual([pk]);
    expect(broker.published).toEqual([pk]);
    clock.advance(0.5); // too soon for a re-send
    expect((await reconciler.tick()).dispatched).toEqual([]);
    clock.advance(1.5); // 2 s since the send, 3 s since the expiry: re-send, two copies in a row
    expect((await reconciler.tick()).dispatched).toEqual([pk]);
    expect(broker.published).toEqual([pk, pk, pk]);
    // A live worker claims it: nothing more is sent.
    expect(await store.claim(pk, 'live', 5, { maxAttempts: 5 })).toMatchObject({ ok: true });
    clock.advance(4);
    expect((await reconciler.tick()).dispatched).toEqual([]);
    expect(broker.published).toHaveLength(3);
  });

  test('submitMany validates all first, commits all, publishes them in one call', async () => {
    const bad = await errorOf(
      engine.submitMany([
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
        { type: 'core.arithmetic.add', inputs: { x: 1, y: null } },
      ]),
    );
    expect(bad.code).toBe(EngineErrorCodes.inputsInvalid);
    expect(bad.message).toContain('item 1');
    expect(await engine.listProcesses()).toEqual([]);
    const items = Array.from({ length: 50 }, (_, i) => ({
      type: 'core.arithmetic.add',
      inputs: { x: i, y: 1 },
    }));
    const submitted = await engine.submitMany(items);
    expect(submitted).toHaveLength(50);
    expect(broker.published).toEqual(submitted.map((s) => s.pk));
    const rows = await engine.listProcesses({ order: 'asc' });
    expect(rows.map((r) => r.dispatchedAt !== null)).toEqual(Array(50).fill(true));
  });

  test('listProcesses filters by states, type and limit; getProcess of a missing pk', async () => {
    const a = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    const b = await engine.submit('core.shell', { command: 'true' });
    await engine.killProcess(a.pk);
    expect((await engine.listProcesses({ states: ['killed'] })).map((r) => r.pk)).toEqual([a.pk]);
    expect((await engine.listProcesses({ type: 'core.shell' })).map((r) => r.pk)).toEqual([b.pk]);
    expect((await engine.listProcesses({ limit: 1 })).map((r) => r.pk)).toEqual([b.pk]);
    const error = await errorOf(engine.getProcess(12345));
    expect(error.code).toBe(EngineErrorCodes.processNotFound);
  });

  test('waitForProcess times out with the state it last saw, and returns a terminal row', async () => {
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    const error = await errorOf(engine.waitForProcess(pk, { timeout: 0.2 }));
    expect(error.code).toBe(EngineErrorCodes.timeout);
    expect(error.message).toContain('created');
    setTimeout(() => void engine.killProcess(pk), 100);
    expect((await engine.waitForProcess(pk, { timeout: 5 })).state).toBe('killed');
  });

  test('deleteProcesses refuses active processes with process_active and deletes nothing', async () => {
    const a = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    const b = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    await engine.killProcess(a.pk);
    const error = await errorOf(engine.deleteProcesses({ pks: [a.pk, b.pk] }));
    expect(error.code).toBe(EngineErrorCodes.processActive);
    expect(error.message).toContain(`${b.pk}`);
    expect(await engine.listProcesses()).toHaveLength(2);
    expect(await engine.deleteProcesses({ pks: [a.pk] })).toEqual([a.pk]);
    expect(await engine.listProcesses()).toHaveLength(1);
  });
});

describe('Engine control without a live owner', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteProcessStore;
  let broker: FakeBroker;
  let engine: Engine;

  beforeEach(() => {
    tmp = tempDir();
    store = openTestStore(tmp.dir);
    broker = new FakeBroker();
    engine = testEngine(store, { broker, registry: new ProcessRegistry() });
  });
  afterEach(async () => {
    await engine.close();
    tmp.remove();
  });

  test('kill of a queued process: killed in the store at once, no RPC needed', async () => {
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    const result = await engine.killProcess(pk, { message: 'not needed' });
    expect(result.outcome).toBe('applied');
    expect(await engine.getProcess(pk)).toMatchObject({
      state: 'killed',
      processStatus: 'Killed: not needed',
    });
    expect(broker.rpcCalls).toEqual([]);
    const again = await errorOf(engine.killProcess(pk));
    expect(again.code).toBe(EngineErrorCodes.processTerminal);
    expect(again.message).toContain('already killed');
    expect((await errorOf(engine.killProcess(999))).code).toBe(EngineErrorCodes.processNotFound);
  });

  test('pause then play of a queued process: flag set, then cleared and re-dispatched', async () => {
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    broker.published.length = 0;
    expect(await engine.pauseProcess(pk)).toMatchObject({
      outcome: 'applied',
      message: `process ${pk} paused`,
    });
    expect((await engine.getProcess(pk)).paused).toBe(true);
    expect((await engine.pauseProcess(pk)).outcome).toBe('unchanged');
    expect((await engine.playProcess(pk)).outcome).toBe('applied');
    const row = await engine.getProcess(pk);
    expect(row.paused).toBe(false);
    expect(row.dispatchedAt).not.toBeNull();
    expect(broker.published).toEqual([pk]);
  });

  test('the many-variants report per pk without throwing', async () => {
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
    const results = await engine.killProcesses([pk, 4242]);
    expect(results.map((r) => r.outcome)).toEqual(['applied', 'not_found']);
    const [paused] = await engine.pauseProcesses([pk]);
    expect(paused?.message).toBe(
      `process ${pk} is already killed; a terminal process can't be paused`,
    );
  });
});

describe('Engine.watchStateChanges (from the store, any transport)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteProcessStore;
  let engine: Engine;

  beforeEach(() => {
    tmp = tempDir();
    store = openTestStore(tmp.dir);
    engine = testEngine(store);
  });
  afterEach(async () => {
    await engine.close();
    tmp.remove();
  });

  const until = async (probe: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!probe()) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  };

  test('reports each change the store shows, for every process or for one pk', async () => {
    const all: string[] = [];
    const one: string[] = [];
    const [a, b] = await engine.submitMany([
      { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
      { type: 'core.arithmetic.add', inputs: { x: 3, y: 4 } },
    ]);
    const watchAll = await engine.watchStateChanges((c) => all.push(`${c.pk}:${c.from}>${c.to}`), {
      interval: 0.01,
    });
    const watchOne = await engine.watchStateChanges((c) => one.push(`${c.pk}:${c.from}>${c.to}`), {
      pk: b!.pk,
      interval: 0.01,
    });
    try {
      const claimA = await store.claim(a!.pk, 'w', 10, { maxAttempts: 3 });
      if (!claimA.ok) throw new Error('claim');
      await until(() => all.includes(`${a!.pk}:created>running`));
      await store.complete(claimA.lease, { state: 'finished', outputs: { sum: 3 }, exitStatus: 0 });
      await until(() => all.includes(`${a!.pk}:running>finished`));
      await engine.killProcess(b!.pk, { message: 'no' });
      await until(() => one.includes(`${b!.pk}:created>killed`));
      await until(() => all.includes(`${b!.pk}:created>killed`));
      expect(one).toEqual([`${b!.pk}:created>killed`]);
      // A process created after the watch began, ended between two polls: one merged change.
      const { pk } = await engine.submit('core.arithmetic.add', { x: 0, y: 0 });
      await engine.killProcess(pk, {});
      await until(() => all.includes(`${pk}:created>killed`));
    } finally {
      await watchAll.close();
      await watchOne.close();
    }
    const count = all.length;
    await engine
      .submit('core.arithmetic.add', { x: 5, y: 5 })
      .then(({ pk }) => engine.killProcess(pk, {}));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(all).toHaveLength(count);
  });
});
