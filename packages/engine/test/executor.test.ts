import {
  calculation,
  type Engine,
  ProcessExecutor,
  ProcessRegistry,
  type SqliteProcessStore,
  step,
  workflow,
} from '@aiida/engine';
import { z } from 'zod';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  FakeBroker,
  FakeClock,
  FakeWorker,
  openTestStore,
  tempDir,
  testEngine,
} from './helpers.js';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

/** Test process types whose bodies record each start and can be held at a gate. */
function testRegistry() {
  const starts: { name: string; pk: number; attempt: number }[] = [];
  const gates = new Map<string, ReturnType<typeof deferred<void>>>();
  const gate = (name: string) => {
    if (!gates.has(name)) gates.set(name, deferred());
    return gates.get(name)!;
  };
  const registry = new ProcessRegistry();
  registry.register(
    workflow({
      name: 'test.three_steps',
      inputs: z.object({ tag: z.string() }),
      outputs: z.object({ steps: z.number() }),
      outline: [step('a'), step('b'), step('c')],
      steps: {
        a: async (ctx) => {
          starts.push({ name: `${ctx.inputs.tag}.a`, pk: ctx.pk, attempt: ctx.attempt });
          await gate(`${ctx.inputs.tag}.a`).promise;
          ctx.vars.n = 1;
        },
        b: async (ctx) => {
          starts.push({ name: `${ctx.inputs.tag}.b`, pk: ctx.pk, attempt: ctx.attempt });
          await gate(`${ctx.inputs.tag}.b`).promise;
          ctx.vars.n = (ctx.vars.n as number) + 1;
        },
        c: async (ctx) => {
          starts.push({ name: `${ctx.inputs.tag}.c`, pk: ctx.pk, attempt: ctx.attempt });
          await gate(`${ctx.inputs.tag}.c`).promise;
          ctx.out('steps', (ctx.vars.n as number) + 1);
        },
      },
    }),
  );
  registry.register(
    calculation({
      name: 'test.stubborn',
      description: 'ignores its abort signal',
      inputs: z.object({}),
      outputs: z.object({}),
      run: async (_inputs, ctx) => {
        starts.push({ name: 'stubborn', pk: ctx.pk, attempt: ctx.attempt });
        await gate('stubborn').promise;
        return {};
      },
    }),
  );
  registry.register(
    workflow({
      name: 'test.parent_of_sleeper',
      inputs: z.object({}),
      outputs: z.object({}),
      outline: [step('spawn'), step('after')],
      steps: {
        spawn: async (ctx) => {
          await ctx.submit('core.arithmetic.add', { x: 1, y: 1, sleep: 60 }, { as: 'sleeper' });
        },
        after: (ctx) => {
          starts.push({ name: 'after', pk: ctx.pk, attempt: ctx.attempt });
        },
      },
    }),
  );
  return { registry, starts, gate };
}

describe('ProcessExecutor (daemon mode, in-memory broker)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteProcessStore;
  let broker: FakeBroker;
  let engine: Engine;
  let worker: FakeWorker | undefined;
  let t: ReturnType<typeof testRegistry>;

  beforeEach(() => {
    tmp = tempDir();
    store = openTestStore(tmp.dir);
    broker = new FakeBroker();
    t = testRegistry();
    engine = testEngine(store, { broker, registry: t.registry });
  });
  afterEach(async () => {
    for (const g of ['stubborn', 'w.a', 'w.b', 'w.c']) t.gate(g).resolve();
    if (worker) {
      await worker.executor.drain(1);
      worker.stop();
    }
    worker = undefined;
    await engine.close();
    tmp.remove();
  });

  function startWorker(id = 'w1') {
    worker = new FakeWorker(broker, {
      store,
      registry: t.registry,
      ownerId: id,
      leaseTimeout: 5,
      maxAttempts: 3,
      killGrace: 0.5,
      heartbeat: 0.2,
      logger: silent,
    });
    return worker;
  }

  test('multiply_add: the parent parks (no lease held), the child wakes it, result x*y+z', async () => {
    const w = startWorker();
    const { pk } = await engine.submit('core.arithmetic.multiply_add', { x: 3, y: 4, z: 5 });
    const row = await engine.waitForProcess(pk, { timeout: 10 });
    expect(row).toMatchObject({ state: 'finished', exitStatus: 0, outputs: { result: 17 } });
    await w.idle();
    const parentRuns = w.outcomes.filter((o) => o.pk === pk).map((o) => o.outcome);
    expect(parentRuns).toEqual(['parked', 'finished']);
    const [child] = await engine.listProcesses({ parentPk: pk });
    expect(child).toMatchObject({ state: 'finished', outputs: { sum: 17 } });
    expect(w.executor.size).toBe(0);
  });

  test('claim refusals: a terminal row or a duplicate task is dropped', async () => {
    const w = startWorker();
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 1 });
    await engine.waitForProcess(pk, { timeout: 10 });
    const again = await w.executor.claim(pk);
    expect(again).toEqual({ claimed: false, pk, reason: 'terminal' });
  });

  test('kill of a running calculation: RPC aborts its signal; it ends killed', async () => {
    startWorker();
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 1, sleep: 60 });
    await waitFor(async () => (await engine.getProcess(pk)).state === 'running', {
      what: 'running',
    });
    const result = await engine.killProcess(pk, { message: 'bye' });
    expect(result.outcome).toBe('requested');
    expect(broker.rpcCalls.map((r) => r.intent)).toEqual(['kill']);
    const row = await engine.waitForProcess(pk, { timeout: 10 });
    expect(row).toMatchObject({ state: 'killed', processStatus: 'Killed: bye' });
  });

  test('kill when the RPC fails: the owner finds the intent on its next renewal', async () => {
    startWorker();
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 1, sleep: 60 });
    await waitFor(async () => (await engine.getProcess(pk)).state === 'running', {
      what: 'running',
    });
    broker.onTask = undefined;
    const callRpc = broker.callRpc.bind(broker);
    broker.callRpc = async () => {
      throw new Error('timeout (fake)');
    };
    expect((await engine.killProcess(pk)).outcome).toBe('requested');
    expect((await engine.waitForProcess(pk, { timeout: 10 })).state).toBe('killed');
    broker.callRpc = callRpc;
  });

  test('force kill of a body that ignores its signal: killed after the grace', async () => {
    const w = startWorker();
    const { pk } = await engine.submit('test.stubborn', {});
    await waitFor(() => t.starts.some((s) => s.pk === pk), { what: 'the body to start' });
    await engine.killProcess(pk, { force: false });
    // Without force the body keeps the process running.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect((await engine.getProcess(pk)).state).toBe('running');
    await engine.killProcess(pk, { force: true, message: 'forced' });
    const row = await engine.waitForProcess(pk, { timeout: 10 });
    expect(row).toMatchObject({ state: 'killed' });
    expect(w.executor.activePks).not.toContain(pk);
    // The body returning later can't change the result.
    t.gate('stubborn').resolve();
    await w.idle();
    expect((await engine.getProcess(pk)).state).toBe('killed');
  });

  test('pause of a running workflow: paused at the step boundary, no step starts; play finishes it', async () => {
    const w = startWorker();
    const { pk } = await engine.submit('test.three_steps', { tag: 'w' });
    await waitFor(() => t.starts.some((s) => s.name === 'w.a'), { what: 'step a' });
    await engine.pauseProcess(pk);
    expect((await engine.getProcess(pk)).paused).toBe(true);
    t.gate('w.a').resolve();
    t.gate('w.b').resolve();
    t.gate('w.c').resolve();
    await waitFor(() => w.outcomes.some((o) => o.pk === pk && o.outcome === 'paused'), {
      what: 'the pause',
    });
    const paused = await engine.getProcess(pk);
    expect(paused).toMatchObject({ state: 'waiting', paused: true, owner: null });
    expect(t.starts.map((s) => s.name)).toEqual(['w.a']);
    // A task delivered while paused is dropped.
    expect(await w.executor.claim(pk)).toMatchObject({ claimed: false, reason: 'paused' });
    await engine.playProcess(pk);
    const row = await engine.waitForProcess(pk, { timeout: 10 });
    expect(row).toMatchObject({ state: 'finished', outputs: { steps: 3 } });
    expect(t.starts.map((s) => s.name)).toEqual(['w.a', 'w.b', 'w.c']);
  });

  test('killing a parked workflow kills its running child', async () => {
    startWorker();
    const { pk } = await engine.submit('test.parent_of_sleeper', {});
    const child = await waitFor(
      async () => {
        const [c] = await engine.listProcesses({ parentPk: pk });
        return c?.state === 'running' ? c : undefined;
      },
      { what: 'the child to run' },
    );
    await waitFor(async () => (await engine.getProcess(pk)).state === 'waiting', {
      what: 'the parent to park',
    });
    const result = await engine.killProcess(pk, { message: 'tree' });
    expect(result.outcome).toBe('applied');
    expect((await engine.getProcess(pk)).state).toBe('killed');
    const killedChild = await engine.waitForProcess(child.pk, { timeout: 10 });
    expect(killedChild.state).toBe('killed');
    expect(killedChild.processStatus).toContain(`parent process ${pk}`);
    expect(t.starts.map((s) => s.name)).not.toContain('after');
  });

  test('timeLimit: a running process past its limit is killed with that reason', async () => {
    startWorker();
    const { pk } = await engine.submit(
      'core.arithmetic.add',
      { x: 1, y: 1, sleep: 60 },
      { timeLimit: 1 },
    );
    const row = await engine.waitForProcess(pk, { timeout: 10 });
    expect(row).toMatchObject({
      state: 'killed',
      processStatus: 'Killed: time limit of 1 s exceeded',
    });
  });

  test('a type this worker does not know: excepted with the known types, worker unharmed', async () => {
    const w = startWorker();
    const other = new ProcessRegistry({ builtins: false });
    other.register(
      calculation({
        name: 'elsewhere.only',
        inputs: z.object({}),
        outputs: z.object({}),
        run: async () => ({}),
      }),
    );
    const submitter = testEngine(store, { broker, registry: other });
    const { pk } = await submitter.submit('elsewhere.only', {});
    const row = await engine.waitForProcess(pk, { timeout: 10 });
    expect(row.state).toBe('excepted');
    expect(row.exception).toContain("unknown process type 'elsewhere.only'");
    expect(row.exception).toContain('core.arithmetic.add');
    const ok = await engine.submit('core.arithmetic.add', { x: 2, y: 2 });
    expect((await engine.waitForProcess(ok.pk, { timeout: 10 })).outputs).toEqual({ sum: 4 });
    await w.idle();
  });

  test('drain: workflows stop at the step boundary and are released; the task is re-published', async () => {
    const w = startWorker();
    const { pk } = await engine.submit('test.three_steps', { tag: 'w' });
    await waitFor(() => t.starts.some((s) => s.name === 'w.a'), { what: 'step a' });
    broker.onTask = undefined; // the worker stopped consuming
    const published = broker.published.length;
    const draining = w.executor.drain(5);
    t.gate('w.a').resolve();
    const report = await draining;
    expect(report).toEqual({ completed: [], released: [pk], abandoned: [] });
    const row = await engine.getProcess(pk);
    expect(row).toMatchObject({ state: 'waiting', owner: null, runnable: true, attempts: 1 });
    expect((row.checkpoint as { stepCount: number }).stepCount).toBe(1);
    expect(broker.published.slice(published)).toEqual([pk]);
    // A task that still reaches a draining worker is refused and published again.
    expect(await w.executor.claim(pk)).toMatchObject({ claimed: false, reason: 'draining' });
    expect(broker.published.slice(published)).toEqual([pk, pk]);
    // A new worker resumes from the checkpoint: step a does not run again.
    t.gate('w.b').resolve();
    t.gate('w.c').resolve();
    const w2 = startWorker('w2');
    const claim = await w2.executor.claimAndRun(pk);
    expect(claim.outcome).toBe('finished');
    expect(t.starts.map((s) => s.name)).toEqual(['w.a', 'w.b', 'w.c']);
  });

  test('drain deadline: a cooperative body is released as interrupted, a stubborn one abandoned', async () => {
    const w = startWorker();
    const coop = await engine.submit('core.arithmetic.add', { x: 1, y: 1, sleep: 60 });
    const stubborn = await engine.submit('test.stubborn', {});
    await waitFor(
      async () => {
        const rows = await engine.listProcesses({ states: ['running'] });
        return rows.length === 2 && t.starts.some((s) => s.name === 'stubborn');
      },
      { what: 'both running' },
    );
    broker.onTask = undefined;
    const report = await w.executor.drain(0.3);
    expect(report.released).toEqual([coop.pk]);
    expect(report.abandoned).toEqual([stubborn.pk]);
    expect(await engine.getProcess(coop.pk)).toMatchObject({
      state: 'waiting',
      owner: null,
      attempts: 2,
    });
    expect(await engine.getProcess(stubborn.pk)).toMatchObject({ state: 'running', owner: 'w1' });
  });
});

describe('ProcessExecutor: a lost owner', () => {
  test('a new owner resumes the workflow from its checkpoint; the old owner is fenced out', async () => {
    const tmp = tempDir();
    const clock = new FakeClock();
    const store = openTestStore(tmp.dir, clock);
    const t = testRegistry();
    const broker = new FakeBroker();
    const engine = testEngine(store, { broker, registry: t.registry, clock });
    const make = (ownerId: string) =>
      new ProcessExecutor({
        store,
        registry: t.registry,
        ownerId,
        dispatcher: broker,
        leaseTimeout: 5,
        maxAttempts: 3,
        logger: silent,
      });
    try {
      const { pk } = await engine.submit('test.three_steps', { tag: 'x' });
      const first = make('w1');
      const c1 = await first.claim(pk);
      if (!c1.claimed) throw new Error(`claim: ${c1.reason}`);
      const run1 = c1.run();
      t.gate('x.a').resolve();
      await waitFor(() => t.starts.some((s) => s.name === 'x.b'), { what: 'step b on w1' });
      // w1 stalls inside step b and stops renewing; its lease expires.
      clock.advance(6);
      const second = make('w2');
      const c2 = await second.claim(pk);
      if (!c2.claimed) throw new Error(`claim: ${c2.reason}`);
      expect(c2.lease).toMatchObject({ epoch: 2, attempt: 2 });
      const run2 = c2.run();
      await waitFor(() => t.starts.filter((s) => s.name === 'x.b').length === 2, {
        what: 'step b on w2',
      });
      // w1's step b returns now: its checkpoint write is fenced out.
      t.gate('x.b').resolve();
      expect(await run1).toBe('lease_lost');
      t.gate('x.c').resolve();
      expect(await run2).toBe('finished');
      const row = await store.getProcess(pk);
      expect(row).toMatchObject({
        state: 'finished',
        outputs: { steps: 3 },
        epoch: 2,
        ownerLosses: 1,
      });
      const counts = Object.fromEntries(
        ['x.a', 'x.b', 'x.c'].map((n) => [n, t.starts.filter((s) => s.name === n).length]),
      );
      // Each step once, except the one in flight when the owner was lost.
      expect(counts).toEqual({ 'x.a': 1, 'x.b': 2, 'x.c': 1 });
      expect(t.starts.filter((s) => s.name === 'x.b').map((s) => s.attempt)).toEqual([1, 2]);
    } finally {
      await engine.close();
      tmp.remove();
    }
  });

  test('an owner lost maxAttempts times: the executor refuses and the process is excepted', async () => {
    const tmp = tempDir();
    const clock = new FakeClock();
    const store = openTestStore(tmp.dir, clock);
    try {
      const [p] = await store.createProcesses([
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 1 } },
      ]);
      const registry = new ProcessRegistry();
      for (let i = 0; i < 2; i++) {
        // A worker claims, then dies (no renewals, no result).
        const dying = new ProcessExecutor({
          store,
          registry,
          ownerId: `d${i}`,
          leaseTimeout: 5,
          maxAttempts: 2,
        });
        expect((await dying.claim(p!.pk)).claimed).toBe(true);
        clock.advance(6);
      }
      const survivor = new ProcessExecutor({
        store,
        registry,
        ownerId: 's',
        leaseTimeout: 5,
        maxAttempts: 2,
      });
      expect(await survivor.claim(p!.pk)).toEqual({
        claimed: false,
        pk: p!.pk,
        reason: 'poisoned',
      });
      const row = await store.getProcess(p!.pk);
      expect(row?.state).toBe('excepted');
      expect(row?.exception).toMatch(/owner lost 2 times/);
    } finally {
      await store.close();
      tmp.remove();
    }
  });
});

describe('several workers, duplicate tasks', () => {
  test('every process ends with one committed result and each body runs once', async () => {
    const tmp = tempDir();
    const store = openTestStore(tmp.dir);
    const starts = new Map<number, number>();
    const registry = new ProcessRegistry();
    registry.register(
      calculation({
        name: 'test.counted_add',
        inputs: z.object({ x: z.number(), y: z.number() }),
        outputs: z.object({ sum: z.number() }),
        run: async ({ x, y }, ctx) => {
          starts.set(ctx.pk, (starts.get(ctx.pk) ?? 0) + 1);
          await new Promise((resolve) => setTimeout(resolve, Math.random() * 5));
          return { sum: x + y };
        },
      }),
    );
    const broker = new FakeBroker();
    const executors = ['a', 'b', 'c'].map(
      (id) =>
        new ProcessExecutor({
          store,
          registry,
          ownerId: id,
          dispatcher: broker,
          control: broker,
          leaseTimeout: 5,
          maxAttempts: 3,
          logger: silent,
        }),
    );
    broker.executors.push(...executors);
    let next = 0;
    // Every task is delivered twice, to different workers.
    broker.onTask = (pk) => {
      for (let i = 0; i < 2; i++) {
        const executor = executors[next++ % executors.length]!;
        void executor.claimAndRun(pk);
      }
    };
    const engine = testEngine(store, { broker, registry });
    try {
      const adds = await engine.submitMany(
        Array.from({ length: 60 }, (_, i) => ({
          type: 'test.counted_add',
          inputs: { x: i, y: 1 },
        })),
      );
      const workflows = await engine.submitMany(
        Array.from({ length: 15 }, (_, i) => ({
          type: 'core.arithmetic.multiply_add',
          inputs: { x: i, y: 2, z: 1 },
        })),
      );
      for (const [i, { pk }] of adds.entries()) {
        expect(await engine.waitForProcess(pk, { timeout: 20 })).toMatchObject({
          state: 'finished',
          outputs: { sum: i + 1 },
          epoch: 1,
        });
      }
      for (const [i, { pk }] of workflows.entries()) {
        expect(await engine.waitForProcess(pk, { timeout: 20 })).toMatchObject({
          state: 'finished',
          outputs: { result: i * 2 + 1 },
        });
      }
      expect([...starts.values()].every((n) => n === 1)).toBe(true);
      expect(starts.size).toBe(60);
      await waitFor(() => executors.every((e) => e.size === 0), { what: 'executors to be idle' });
    } finally {
      await engine.close();
      tmp.remove();
    }
  });
});
