// Integration: the built supervisor bin with the real worker program against the real RabbitMQ.
import { existsSync, statSync } from 'node:fs';
import { getDaemonDir } from '@aiida/config';
import { readDaemonState } from '@aiida/daemon-supervisor';
import type { DaemonStatus, ScaleResult, StopResult } from '@aiida/ipc';
import { deleteProfileTopology } from '../../../tests/support/broker-cleanup.js';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import {
  createTestProfile,
  type TestProfile,
  withLogTails,
} from '../../../tests/support/test-profile.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  controlRequest,
  controlResult,
  rawExchange,
  type StartedSupervisor,
  startSupervisorBin,
} from './support/supervisor-process.js';

let tp: TestProfile;
const supervisors: number[] = [];
const workerPids = new Set<number>();

async function start(workers: number): Promise<StartedSupervisor & { socketPath: string }> {
  const started = await startSupervisorBin({ profile: tp.profile, workers });
  supervisors.push(started.pid);
  if (!started.report?.ok) {
    throw new Error(`start failed: ${JSON.stringify(started.report)}\n${tp.logTails()}`);
  }
  return { ...started, socketPath: started.report.socketPath };
}

async function status(socketPath: string): Promise<DaemonStatus> {
  const result = await controlResult<DaemonStatus>(socketPath, { type: 'status' });
  for (const worker of result.workers) if (worker.pid) workerPids.add(worker.pid);
  return result;
}

const readyPids = (s: DaemonStatus) =>
  s.workers.filter((w) => w.state === 'ready').map((w) => w.pid as number);

beforeEach(() => {
  tp = createTestProfile({ name: 'sup' });
});

afterEach(async () => {
  for (const pid of supervisors.splice(0)) await stopPid(pid, 10);
  for (const pid of workerPids) {
    // Workers leave on their own once their supervisor is gone (IPC channel closed).
    await waitFor(() => !isAlive(pid), { timeout: 10, what: `worker ${pid} to exit` }).catch(() =>
      stopPid(pid),
    );
  }
  workerPids.clear();
  await deleteProfileTopology(tp.profile);
  tp.remove();
});

test('starts 2 workers: fd-3 ok, state file and socket, full status; stop removes its files', async () => {
  await withLogTails(tp.logTails, async () => {
    const started = await start(2);
    const daemonDir = getDaemonDir(tp.profile);
    expect(started.report).toMatchObject({ v: 1, ok: true, pid: started.pid });
    expect(statSync(daemonDir).mode & 0o777).toBe(0o700);
    expect(statSync(started.socketPath).mode & 0o777).toBe(0o600);
    const reading = readDaemonState(tp.profile);
    expect(reading).toMatchObject({ live: true, state: { pid: started.pid, profile: 'sup' } });
    expect(reading?.state?.socketPath).toBe(started.socketPath);

    const s = await status(started.socketPath);
    expect(s).toMatchObject({
      pid: started.pid,
      profile: 'sup',
      protocolVersion: 1,
      numberWorkers: 2,
      logDir: expect.stringContaining('log'),
    });
    expect(s.workers).toHaveLength(2);
    for (const worker of s.workers) {
      expect(worker).toMatchObject({
        state: 'ready',
        restarts: 0,
        slotsUsed: 0,
        slotsTotal: 200,
        activePks: [],
        lastStderr: [],
        nextAttemptAt: null,
      });
      expect(worker.pid).toEqual(expect.any(Number));
      expect(worker.startedAt).toEqual(expect.any(String));
    }
    expect(s.workers.map((w) => w.index).sort()).toEqual([0, 1]);
    // Heartbeats and the cpu/memory sampler fill in the rest.
    const later = await waitFor(
      async () => {
        const next = await status(started.socketPath);
        return next.workers.every((w) => w.lastHeartbeatAt && w.memory && w.cpu !== null) && next;
      },
      { timeout: 10, what: 'heartbeats and samples' },
    );
    expect(later.workers[0]?.memory).toBeGreaterThan(1_000_000);

    const stop = await controlResult<StopResult>(started.socketPath, { type: 'stop' });
    expect(stop).toEqual({ killedWorkers: 0 });
    await waitFor(() => !isAlive(started.pid), { timeout: 10, what: 'the supervisor to exit' });
    expect(await started.exited).toEqual({ code: 0, signal: null });
    for (const pid of readyPids(s)) expect(isAlive(pid)).toBe(false);
    expect(existsSync(`${daemonDir}/daemon.json`)).toBe(false);
    expect(existsSync(`${daemonDir}/daemon.lock`)).toBe(false);
    expect(existsSync(started.socketPath)).toBe(false);
    expect(readDaemonState(tp.profile)).toBeUndefined();
  });
});

test('kill -9 of a worker: revived at once, restarts = 1, same index', async () => {
  await withLogTails(tp.logTails, async () => {
    const { socketPath } = await start(1);
    const before = await status(socketPath);
    const victim = before.workers[0]?.pid as number;
    process.kill(victim, 'SIGKILL');
    const after = await waitFor(
      async () => {
        const s = await status(socketPath);
        const w = s.workers[0];
        return w && w.pid !== victim && w.state === 'ready' && s;
      },
      { timeout: 15, what: 'the killed worker to be replaced' },
    );
    expect(after.workers).toHaveLength(1);
    expect(after.workers[0]).toMatchObject({ index: 0, restarts: 1, state: 'ready' });
    // Killed again later in life: revived at once again, never crash-looping.
    process.kill(after.workers[0]?.pid as number, 'SIGKILL');
    const third = await waitFor(
      async () => {
        const s = await status(socketPath);
        return s.workers[0]?.restarts === 2 && s.workers[0].state === 'ready' && s;
      },
      { timeout: 15, what: 'a second revival' },
    );
    expect(third.workers[0]?.state).toBe('ready');
  });
});

test('incr answers once the new workers are ready; decr stops the youngest; restart is rolling', async () => {
  await withLogTails(tp.logTails, async () => {
    const { socketPath, pid } = await start(1);
    const incr = await controlResult<ScaleResult>(socketPath, { type: 'incr', n: 2 });
    expect(incr.numberWorkers).toBe(3);
    expect(incr.workers.filter((w) => w.state === 'ready')).toHaveLength(3);
    for (const w of incr.workers) if (w.pid) workerPids.add(w.pid);
    const youngest = [...incr.workers]
      .sort((a, b) => Date.parse(b.startedAt ?? '') - Date.parse(a.startedAt ?? ''))
      .slice(0, 2)
      .map((w) => w.pid);

    const decr = await controlResult<ScaleResult>(socketPath, { type: 'decr', n: 2 });
    expect(decr.numberWorkers).toBe(1);
    expect(decr.workers).toHaveLength(1);
    expect(youngest).not.toContain(decr.workers[0]?.pid);
    for (const gone of youngest) expect(isAlive(gone as number)).toBe(false);

    await controlResult(socketPath, { type: 'incr', n: 2 });
    const before = await status(socketPath);
    const oldPids = readyPids(before);
    expect(oldPids).toHaveLength(3);

    // Poll status all through the rolling restart: never fewer than N − 1 ready.
    let polling = true;
    let minReady = Number.POSITIVE_INFINITY;
    const poller = (async () => {
      while (polling) {
        const s = await status(socketPath);
        minReady = Math.min(minReady, readyPids(s).length);
      }
    })();
    const restart = await controlResult<ScaleResult>(socketPath, { type: 'restart' });
    polling = false;
    await poller;
    expect(minReady).toBeGreaterThanOrEqual(2);
    expect(restart.numberWorkers).toBe(3);
    const newPids = restart.workers.map((w) => w.pid);
    expect(restart.workers.every((w) => w.state === 'ready')).toBe(true);
    for (const old of oldPids) expect(newPids).not.toContain(old);
    expect((await status(socketPath)).pid).toBe(pid);
    expect(restart.workers.map((w) => w.index).sort()).toEqual([0, 1, 2]);
  });
});

test('control socket: garbage, oversized, half-written and silent connections; others still served', async () => {
  await withLogTails(tp.logTails, async () => {
    const { socketPath, pid } = await start(1);
    const garbage = await rawExchange(socketPath, 'this is not json\n[1,2]\n', { expect: 2 });
    // One error for the first malformed line; the second in a row closes the connection.
    expect(garbage.map((r) => !r.ok && r.error.code)).toEqual([
      'invalid_request',
      'invalid_request',
    ]);
    expect(!garbage[1]?.ok && garbage[1]?.error.message).toContain(
      'connection closed after 2 malformed requests in a row',
    );

    const unknown = await controlRequest(socketPath, { type: 'reboot' });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'unknown_request' } });
    const badShape = await controlRequest(socketPath, { type: 'incr', n: 'two' });
    expect(badShape).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    expect(!badShape.ok && badShape.error.message).toContain("'n'");
    const mismatch = await rawExchange(socketPath, '{"v":99,"id":"x","type":"ping"}\n', {
      expect: 1,
    });
    expect(mismatch[0]).toMatchObject({ ok: false, id: 'x', error: { code: 'protocol_mismatch' } });
    expect(!mismatch[0]?.ok && mismatch[0]?.error.message).toMatch(/version 1.*version 99/);

    // 2 MiB without a newline, then a valid request on the same connection.
    const huge = Buffer.alloc(2 * 1024 * 1024, 0x61);
    const oversized = await rawExchange(
      socketPath,
      Buffer.concat([huge, Buffer.from('\n{"v":1,"id":"after","type":"ping"}\n')]),
      { expect: 2, timeout: 20 },
    );
    expect(oversized[0]).toMatchObject({ ok: false, error: { code: 'request_too_large' } });
    expect(oversized[1]).toMatchObject({ ok: true, id: 'after', result: { pid } });

    const half = await rawExchange(socketPath, '{"v":1,"id":"h","type":"st', { halfClose: true });
    expect(half).toHaveLength(1);
    expect(half[0]).toMatchObject({ ok: false, error: { code: 'incomplete_request' } });

    // A silent connection is closed after ~5 s while another client is served meanwhile.
    const startedAt = Date.now();
    const silent = rawExchange(socketPath, '', { timeout: 20 });
    const served = await controlResult<{ pid: number }>(socketPath, { type: 'ping' });
    expect(served.pid).toBe(pid);
    const silentAnswers = await silent;
    const elapsed = (Date.now() - startedAt) / 1000;
    expect(elapsed).toBeGreaterThan(4);
    expect(elapsed).toBeLessThan(15);
    expect(silentAnswers[0]).toMatchObject({ ok: false, error: { code: 'timeout' } });
    expect((await status(socketPath)).workers[0]?.state).toBe('ready');
  });
});

test('SIGTERM stops gracefully: workers gone, files removed, exit status names the signal', async () => {
  await withLogTails(tp.logTails, async () => {
    const started = await start(2);
    const s = await status(started.socketPath);
    process.kill(started.pid, 'SIGTERM');
    expect(await started.exited).toEqual({ code: null, signal: 'SIGTERM' });
    for (const pid of readyPids(s)) expect(isAlive(pid)).toBe(false);
    expect(readDaemonState(tp.profile)).toBeUndefined();
    expect(existsSync(started.socketPath)).toBe(false);
  });
});

test('kill -9 of the supervisor: workers gone within 10 s, state stale, a new start works', async () => {
  await withLogTails(tp.logTails, async () => {
    const first = await start(2);
    const s = await status(first.socketPath);
    process.kill(first.pid, 'SIGKILL');
    await waitFor(() => readyPids(s).every((pid) => !isAlive(pid)), {
      timeout: 10,
      what: 'the orphaned workers to exit',
    });
    const reading = readDaemonState(tp.profile);
    expect(reading?.live).toBe(false);
    expect(reading?.reason).toContain(String(first.pid));

    const second = await start(1);
    expect(second.pid).not.toBe(first.pid);
    expect(readDaemonState(tp.profile)).toMatchObject({ live: true, state: { pid: second.pid } });
    expect((await status(second.socketPath)).workers).toHaveLength(1);
  });
});
