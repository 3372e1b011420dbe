import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type Engine,
  isProcessAlive,
  ProcessExecutor,
  ProcessRegistry,
  SHELL_NONZERO_EXIT_STATUS,
  type SqliteProcessStore,
} from '@aiida/engine';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  FakeBroker,
  FakeClock,
  FakeWorker,
  openTestStore,
  tempDir,
  testEngine,
} from './helpers.js';

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function readPid(file: string): number | undefined {
  if (!existsSync(file)) return undefined;
  const text = readFileSync(file, 'utf8').trim();
  return text === '' ? undefined : Number(text);
}

describe('core.shell', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: SqliteProcessStore;
  let engine: Engine;
  const started: number[] = [];

  beforeEach(() => {
    tmp = tempDir();
    store = openTestStore(tmp.dir);
    engine = testEngine(store);
  });
  afterEach(async () => {
    for (const pid of started) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    started.length = 0;
    await engine.close();
    tmp.remove();
  });

  test('captures stdout, stderr and exit code, with stdin, env and cwd', async () => {
    const outputs = await engine.run('core.shell', {
      command: 'sh',
      args: ['-c', 'echo "out $GREETING"; pwd; echo err >&2; cat'],
      env: { GREETING: 'hi' },
      stdin: 'from stdin',
      cwd: tmp.dir,
    });
    expect(outputs).toEqual({
      stdout: `out hi\n${tmp.dir}\nfrom stdin`,
      stderr: 'err\n',
      exitCode: 0,
      signal: null,
      truncated: false,
    });
    const [row] = await engine.listProcesses();
    expect(row?.processGroup).toBeNull();
  });

  test('a non-zero exit finishes with exit status 400 and keeps the outputs', async () => {
    const { process } = await engine.runGetProcess('core.shell', {
      command: 'sh',
      args: ['-c', 'echo partial; exit 3'],
    });
    expect(process).toMatchObject({
      state: 'finished',
      exitStatus: SHELL_NONZERO_EXIT_STATUS,
      exitMessage: "command 'sh' exited with code 3",
      outputs: { stdout: 'partial\n', exitCode: 3 },
    });
  });

  test('a command that does not exist makes the job excepted with the spawn error', async () => {
    const { process } = await engine.runGetProcess('core.shell', {
      command: 'definitely-not-a-command-aiida',
    });
    expect(process.state).toBe('excepted');
    expect(process.exception).toContain('ENOENT');
  });

  test('kill terminates the whole process group: the background sleep is gone too', async () => {
    const broker = new FakeBroker();
    const daemonEngine = testEngine(store, { broker });
    const worker = new FakeWorker(broker, {
      store,
      registry: new ProcessRegistry(),
      ownerId: 'w1',
      leaseTimeout: 5,
      maxAttempts: 3,
      heartbeat: 0.2,
      logger: silent,
    });
    try {
      const pidFile = join(tmp.dir, 'sleep.pid');
      const { pk } = await daemonEngine.submit('core.shell', {
        command: 'sh',
        args: ['-c', `sleep 60 & echo $! > ${pidFile}; wait`],
      });
      const sleepPid = await waitFor(() => readPid(pidFile), { what: 'the sleep pid' });
      started.push(sleepPid);
      const row = await waitFor(
        async () => {
          const r = await daemonEngine.getProcess(pk);
          return r.processGroup ? r : undefined;
        },
        { what: 'the process group to be recorded' },
      );
      const pgid = row.processGroup!.pgid;
      started.push(pgid);
      expect(isProcessAlive(sleepPid)).toBe(true);
      expect(isProcessAlive(pgid)).toBe(true);
      await daemonEngine.killProcess(pk, { message: 'stop the shell' });
      const killed = await daemonEngine.waitForProcess(pk, { timeout: 10 });
      expect(killed).toMatchObject({ state: 'killed', processStatus: 'Killed: stop the shell' });
      // isProcessAlive: process.kill(pid, 0), and a zombie counts as gone (an orphaned zombie
      // waits for pid 1 to reap it, which some container inits never do).
      await waitFor(() => !isProcessAlive(sleepPid) && !isProcessAlive(pgid), {
        what: 'the group to die',
        timeout: 5,
      });
    } finally {
      await worker.executor.drain(1);
      worker.stop();
    }
  });

  test('a new attempt after a lost owner kills the previous attempt’s group first', async () => {
    const clock = new FakeClock();
    await store.close();
    store = openTestStore(tmp.dir, clock);
    engine = testEngine(store, { clock });
    const registry = new ProcessRegistry();
    const make = (ownerId: string) =>
      new ProcessExecutor({
        store,
        registry,
        ownerId,
        leaseTimeout: 5,
        maxAttempts: 3,
        logger: silent,
      });
    const pidFile = join(tmp.dir, 'first.pid');
    const marker = join(tmp.dir, 'marker');
    const [p] = await store.createProcesses([
      {
        type: 'core.shell',
        inputs: {
          command: 'sh',
          args: [
            '-c',
            `if [ -f ${marker} ]; then echo second; exit 0; fi; touch ${marker}; sleep 60 & echo $! > ${pidFile}; wait`,
          ],
          env: {},
        },
      },
    ]);
    const first = make('w1');
    const c1 = await first.claim(p!.pk);
    if (!c1.claimed) throw new Error(c1.reason);
    const run1 = c1.run();
    const sleepPid = await waitFor(() => readPid(pidFile), { what: 'the first attempt to start' });
    started.push(sleepPid);
    await waitFor(async () => (await store.getProcess(p!.pk))?.processGroup ?? undefined, {
      what: 'the group record',
    });
    // w1 stops renewing (stalled or dead); its lease expires; w2 takes over.
    clock.advance(6);
    const second = make('w2');
    const c2 = await second.claim(p!.pk);
    if (!c2.claimed) throw new Error(c2.reason);
    expect(c2.lease.attempt).toBe(2);
    expect(await c2.run()).toBe('finished');
    expect(isProcessAlive(sleepPid)).toBe(false);
    const row = await store.getProcess(p!.pk);
    expect(row).toMatchObject({ state: 'finished', outputs: { stdout: 'second\n' }, epoch: 2 });
    expect(await run1).toBe('lease_lost');
    expect((await store.getProcess(p!.pk))?.outputs).toMatchObject({ stdout: 'second\n' });
  });
});
