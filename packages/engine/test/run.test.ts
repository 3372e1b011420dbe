import {
  calculation,
  type Engine,
  EngineErrorCodes,
  exitCode,
  if_,
  isEngineError,
  ProcessRegistry,
  return_,
  type SqliteProcessStore,
  step,
  while_,
  workflow,
} from '@aiida/engine';
import { z } from 'zod';
import { openTestStore, tempDir, testEngine } from './helpers.js';

/** A workflow that counts to `n` in a while loop, then branches on parity. */
function counterWorkflow(log: string[], snapshots: unknown[], store: () => SqliteProcessStore) {
  return workflow({
    name: 'test.counter',
    inputs: z.object({ n: z.number().int().nonnegative() }),
    outputs: z.object({ count: z.number(), parity: z.string() }),
    outline: [
      step('setup'),
      while_((v) => (v.vars.i as number) < v.inputs.n, [step('increment')]),
      if_((v) => (v.vars.i as number) % 2 === 0, [step('even')], [step('odd')]),
      step('finish'),
    ],
    steps: {
      setup: (ctx) => {
        log.push('setup');
        ctx.vars.i = 0;
      },
      increment: async (ctx) => {
        // The previous step's checkpoint is already stored when this one starts.
        snapshots.push((await store().getProcess(ctx.pk))?.checkpoint);
        log.push(`increment ${ctx.vars.i}`);
        ctx.vars.i = (ctx.vars.i as number) + 1;
      },
      even: (ctx) => {
        log.push('even');
        ctx.vars.parity = 'even';
      },
      odd: (ctx) => {
        log.push('odd');
        ctx.vars.parity = 'odd';
      },
      finish: (ctx) => {
        log.push('finish');
        ctx.out('count', ctx.vars.i as number);
        ctx.out('parity', ctx.vars.parity as string);
      },
    },
  });
}

describe('Engine.run (in the calling process, no daemon)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteProcessStore;
  let registry: ProcessRegistry;
  let engine: Engine;
  const log: string[] = [];
  const snapshots: unknown[] = [];

  beforeEach(() => {
    tmp = tempDir();
    store = openTestStore(tmp.dir);
    registry = new ProcessRegistry();
    registry.register(counterWorkflow(log, snapshots, () => store));
    registry.register(
      calculation({
        name: 'test.fail',
        inputs: z.object({}),
        outputs: z.object({}),
        run: async () => {
          throw new Error('boom in body');
        },
      }),
    );
    registry.register(
      calculation({
        name: 'test.exit',
        inputs: z.object({}),
        outputs: z.object({ partial: z.number() }),
        run: async () => exitCode(12, 'gave up', { partial: 1 }),
      }),
    );
    registry.register(
      calculation({
        name: 'test.bad_outputs',
        inputs: z.object({}),
        outputs: z.object({ sum: z.number() }),
        run: async () => ({ sum: 'three' }) as never,
      }),
    );
    engine = testEngine(store, { registry });
    log.length = 0;
    snapshots.length = 0;
  });
  afterEach(async () => {
    await engine.close();
    tmp.remove();
  });

  test('core.arithmetic.add returns its sum and stores one finished row owned by no one', async () => {
    expect(await engine.run('core.arithmetic.add', { x: 2, y: 3 })).toEqual({ sum: 5 });
    const [row] = await engine.listProcesses();
    expect(row).toMatchObject({
      type: 'core.arithmetic.add',
      state: 'finished',
      exitStatus: 0,
      outputs: { sum: 5 },
      owner: null,
      epoch: 1,
      attempts: 1,
    });
    expect(row?.owner).toBeNull();
  });

  test('core.arithmetic.multiply_add runs its add child in the caller too', async () => {
    const { outputs, process } = await engine.runGetProcess('core.arithmetic.multiply_add', {
      x: 2,
      y: 3,
      z: 4,
    });
    expect(outputs).toEqual({ result: 10 });
    expect(process).toMatchObject({ state: 'finished', exitStatus: 0 });
    const children = await engine.listProcesses({ parentPk: process.pk });
    expect(children).toHaveLength(1);
    expect(children[0]).toMatchObject({
      type: 'core.arithmetic.add',
      state: 'finished',
      inputs: { x: 6, y: 4 },
      outputs: { sum: 10 },
    });
  });

  test('workflow outline: while loop and if/else run the right steps, checkpointed after each', async () => {
    expect(await engine.run('test.counter', { n: 3 })).toEqual({ count: 3, parity: 'odd' });
    expect(log).toEqual(['setup', 'increment 0', 'increment 1', 'increment 2', 'odd', 'finish']);
    expect(snapshots.map((s) => (s as { vars: { i: number } }).vars.i)).toEqual([0, 1, 2]);
    expect(snapshots.map((s) => (s as { stepCount: number }).stepCount)).toEqual([1, 2, 3]);
    log.length = 0;
    expect(await engine.run('test.counter', { n: 0 })).toEqual({ count: 0, parity: 'even' });
    expect(log).toEqual(['setup', 'even', 'finish']);
  });

  test('return_ ends a workflow early with its exit status', async () => {
    registry.register(
      workflow({
        name: 'test.early',
        inputs: z.object({}),
        outputs: z.object({}),
        outline: [step('a'), return_(7, 'stopped early'), step('b')],
        steps: { a: () => {}, b: () => {} },
      }),
    );
    const { process } = await engine.runGetProcess('test.early', {});
    expect(process).toMatchObject({
      state: 'finished',
      exitStatus: 7,
      exitMessage: 'stopped early',
    });
  });

  test('a body that throws: excepted with message and stack; run() throws process_failed', async () => {
    let error: unknown;
    try {
      await engine.run('test.fail', {});
    } catch (e) {
      error = e;
    }
    expect(isEngineError(error)).toBe(true);
    expect(error).toMatchObject({ code: EngineErrorCodes.processFailed });
    expect((error as Error).message).toContain('boom in body');
    const [row] = await engine.listProcesses();
    expect(row?.state).toBe('excepted');
    expect(row?.exception).toContain('Error: boom in body');
    expect(row?.exception).toContain('run.test.ts');
  });

  test('an ExitCode finishes with that status and the partial outputs', async () => {
    const { process } = await engine.runGetProcess('test.exit', {});
    expect(process).toMatchObject({
      state: 'finished',
      exitStatus: 12,
      exitMessage: 'gave up',
      outputs: { partial: 1 },
    });
  });

  test('outputs that fail their schema make the process excepted, naming the output', async () => {
    const { process } = await engine.runGetProcess('test.bad_outputs', {});
    expect(process.state).toBe('excepted');
    expect(process.exception).toContain('invalid outputs for test.bad_outputs');
    expect(process.exception).toContain('sum');
  });

  test('kill from another client reaches a run() caller through its lease renewals', async () => {
    const other = testEngine(store, { registry });
    const running = engine.run('core.arithmetic.add', { x: 1, y: 1, sleep: 60 });
    const failure = running.catch((error: unknown) => error);
    const [row] = await (async () => {
      for (;;) {
        const rows = await other.listProcesses({ states: ['running'] });
        if (rows.length > 0) return rows;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    expect(row?.owner).toMatch(/^run:/);
    const result = await other.killProcess(row!.pk, { message: 'from elsewhere' });
    expect(result.outcome).toBe('requested');
    const error = await failure;
    expect(error).toMatchObject({ code: EngineErrorCodes.processFailed });
    expect(await other.getProcess(row!.pk)).toMatchObject({
      state: 'killed',
      processStatus: 'Killed: from elsewhere',
    });
  });

  test('invalid inputs and unknown types throw before anything is stored', async () => {
    await expect(engine.run('core.arithmetic.add', { x: 1, y: 'two' })).rejects.toMatchObject({
      code: EngineErrorCodes.inputsInvalid,
      message: expect.stringContaining('y:'),
    });
    await expect(engine.run('no.such.type', {})).rejects.toMatchObject({
      code: EngineErrorCodes.unknownProcessType,
      message: expect.stringContaining('core.arithmetic.add'),
    });
    expect(await engine.listProcesses()).toEqual([]);
  });
});
