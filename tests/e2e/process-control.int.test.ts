// Acceptance 7 (issue 4): kill and pause through the real daemon.
// - a queued process with no daemon running is killed in the store (and its task, delivered
//   later, starts nothing);
// - a running shell job (`sleep 60`) is killed, and its `sleep` is gone;
// - a running calculation that ignores its abort signal is killed with `force`;
// - a paused workflow shows `paused` and starts no step for 3 s; played, it finishes.
import { isAlive } from '../support/processes.js';
import { waitFor } from '../support/wait-for.js';
import { type E2E, setupE2E, withLogs } from './helpers.js';

let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({ name: 'process-control' });
});

afterAll(async () => {
  await e2e?.cleanup();
});

const startsOf = (pk: number) => e2e.events().filter((e) => e.pk === pk);

test('kill of a queued process with no daemon running: killed at once, never started', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    const broker = e2e.broker;
    expect(client.isDaemonRunning).toBe(false);
    const { pk } = await engine.submit('test.sleep', { ms: 100 });
    // RabbitMQ: its task is queued. core.store: the row itself is the task.
    if (broker) expect((await broker.queueCounts()).tasks).toBe(1);
    const result = await engine.killProcess(pk, { message: 'not needed any more' });
    expect(result.outcome).toBe('applied');
    const row = await engine.getProcess(pk);
    expect(row).toMatchObject({
      state: 'killed',
      processStatus: 'Killed: not needed any more',
      owner: null,
    });
    // Its task is still queued; the daemon drops it when it comes, without starting anything.
    await client.startDaemon({ numberWorkers: 1 });
    if (broker) {
      await waitFor(async () => (await broker.queueCounts()).tasks === 0, {
        timeout: 20,
        what: 'the stale task to be consumed',
      });
    } else {
      // core.store: a killed row is no candidate; a process submitted after it runs and ends.
      const later = await engine.submit('test.sleep', { ms: 1 });
      await engine.waitForProcess(later.pk, { timeout: 20 });
    }
    const after = await engine.getProcess(pk);
    expect(after.state).toBe('killed');
    expect(after.modifiedAt).toBe(row.modifiedAt);
    expect(startsOf(pk)).toEqual([]);
  });
}, 60_000);

test('kill of a running shell job `sleep 60`: killed, and its sleep process is gone', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 1 });
    const { pk } = await engine.submit('core.shell', { command: 'sleep', args: ['60'] });
    const running = await waitFor(
      async () => {
        const row = await engine.getProcess(pk);
        return row.state === 'running' && row.processGroup !== null ? row : undefined;
      },
      { timeout: 20, what: 'the shell job to run with its process group recorded' },
    );
    const sleepPid = running.processGroup!.pgid;
    expect(isAlive(sleepPid)).toBe(true);
    const t0 = Date.now();
    await engine.killProcess(pk, { message: 'sleep no more' });
    const row = await engine.waitForProcess(pk, { timeout: 15 });
    expect(row).toMatchObject({ state: 'killed', processStatus: 'Killed: sleep no more' });
    await waitFor(() => !isAlive(sleepPid), { timeout: 10, what: `sleep (pid ${sleepPid}) to go` });
    console.log(
      `process-control: shell job killed in ${Date.now() - t0} ms, sleep ${sleepPid} gone`,
    );
  });
}, 60_000);

test('a calculation that ignores its signal is killed with force', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 1 });
    const { pk } = await engine.submit('test.stubborn', { ms: 30_000 });
    await waitFor(() => startsOf(pk).length === 1, { timeout: 20, what: 'the body to start' });
    const t0 = Date.now();
    const result = await engine.killProcess(pk, { message: 'no patience', force: true });
    expect(result.outcome).toBe('requested');
    const row = await engine.waitForProcess(pk, { timeout: 15 });
    const took = Date.now() - t0;
    expect(row).toMatchObject({ state: 'killed', processStatus: 'Killed: no patience' });
    // The body never ended: the kill was made final by force, after the grace.
    expect(startsOf(pk).filter((e) => e.event === 'end')).toEqual([]);
    console.log(`process-control: stubborn calculation killed with force in ${took} ms`);
  });
}, 60_000);

test('pause of a running workflow: paused, no step starts for 3 s; play: it finishes', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 1 });
    const { pk } = await engine.submit('test.many_steps', { n: 12, stepMs: 300 });
    await waitFor(() => startsOf(pk).length >= 2, { timeout: 20, what: 'two steps to run' });
    const result = await engine.pauseProcess(pk);
    const pausedAt = Date.now();
    expect(result.outcome).toBe('requested');
    expect((await engine.getProcess(pk)).paused).toBe(true);
    // The step in flight ends; at its boundary the workflow gives back its lease and slot.
    const parked = await waitFor(
      async () => {
        const row = await engine.getProcess(pk);
        return row.owner === null ? row : undefined;
      },
      { timeout: 10, what: 'the workflow to stop at a step boundary' },
    );
    expect(parked).toMatchObject({ paused: true, state: 'waiting' });
    const stepsAtPause = startsOf(pk).length;
    // At most the one step that raced with the pause request started after it.
    expect(startsOf(pk).filter((e) => e.t > pausedAt).length).toBeLessThanOrEqual(1);
    const watchFrom = Date.now();
    await waitFor(() => Date.now() - watchFrom >= 3000 || startsOf(pk).length > stepsAtPause, {
      timeout: 5,
      what: '3 s of watching',
    });
    expect(startsOf(pk).length).toBe(stepsAtPause);
    expect((await engine.getProcess(pk)).paused).toBe(true);
    expect((await client.getStatus()).workers[0]?.activePks).toEqual([]);

    expect((await engine.playProcess(pk)).outcome).toBe('applied');
    const row = await engine.waitForProcess(pk, { timeout: 30 });
    expect(row).toMatchObject({ state: 'finished', outputs: { steps: 12 }, paused: false });
    // Every tick ran exactly once across the pause.
    const ticks = startsOf(pk).map((e) => e.step);
    expect(ticks).toEqual(Array.from({ length: 12 }, (_, i) => `tick${i}`));
    await client.stopDaemon();
  });
}, 90_000);
