// Integration: failure paths of the built supervisor bin (crashing worker programs, concurrent
// starts, an unreachable broker, a socket path too long, the memory cap).
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProfile, getDaemonDir, getDaemonLogDir } from '@aiida/config';
import { readDaemonState } from '@aiida/daemon-supervisor';
import type { DaemonStatus, WorkerStatus } from '@aiida/ipc';
import { deleteProfileTopology } from '../../../tests/support/broker-cleanup.js';
import { childPids, isAlive, stopPid } from '../../../tests/support/processes.js';
import {
  createTestProfile,
  logTails,
  type TestProfile,
  withLogTails,
} from '../../../tests/support/test-profile.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  controlResult,
  cpuTicks,
  type StartedSupervisor,
  startSupervisorBin,
} from './support/supervisor-process.js';

let tp: TestProfile;
const supervisors: number[] = [];
const workerPids = new Set<number>();

async function status(socketPath: string): Promise<DaemonStatus> {
  const result = await controlResult<DaemonStatus>(socketPath, { type: 'status' });
  for (const worker of result.workers) if (worker.pid) workerPids.add(worker.pid);
  return result;
}

async function startBin(
  options: Parameters<typeof startSupervisorBin>[0],
): Promise<StartedSupervisor> {
  const started = await startSupervisorBin(options);
  supervisors.push(started.pid);
  return started;
}

/** Writes a worker program into the test's folder and returns its path. */
function workerProgram(name: string, source: string): string {
  const path = join(tp.aiidaPath, name);
  writeFileSync(path, source);
  return path;
}

const EXITS_AT_ONCE = `
process.stderr.write('boom: this worker refuses to start (test program)\\n');
process.exit(3);
`;

/** Behaves like a worker the first time; every later start dies at once. */
const WORKS_ONCE = `
import { existsSync, writeFileSync } from 'node:fs';
const marker = process.env.AIIDA_TEST_CRASH_MARKER;
if (existsSync(marker)) {
  process.stderr.write('crash-test worker: refusing to start again\\n');
  process.exit(3);
}
writeFileSync(marker, String(process.pid));
process.send({ v: 1, type: 'ready', pid: process.pid, slotsTotal: 1 });
process.on('message', () => process.exit(0));
process.on('disconnect', () => process.exit(0));
// Heartbeats, as every worker sends them: without, the supervisor would replace it as unresponsive.
setInterval(() => process.send({ v: 1, type: 'heartbeat', slotsUsed: 0, slotsTotal: 1, activePks: [], eventLoopLag: 0, memory: 0 }), 500);
`;

function pidsOfChildren(pid: number): number[] {
  return isAlive(pid) ? childPids(pid) : [];
}

beforeEach(() => {
  tp = createTestProfile({ name: 'fail' });
});

afterEach(async () => {
  for (const pid of supervisors.splice(0)) {
    for (const child of pidsOfChildren(pid)) workerPids.add(child);
    await stopPid(pid, 10);
  }
  for (const pid of workerPids) {
    await waitFor(() => !isAlive(pid), { timeout: 10, what: `worker ${pid} to exit` }).catch(() =>
      stopPid(pid),
    );
  }
  workerPids.clear();
  await deleteProfileTopology(tp.profile);
  tp.remove();
});

test('a worker program that exits at once fails the start with its stderr; nothing is left', async () => {
  await withLogTails(tp.logTails, async () => {
    const program = workerProgram('exits-at-once.mjs', EXITS_AT_ONCE);
    const started = await startBin({
      profile: tp.profile,
      workers: 2,
      env: { AIIDA_DAEMON_WORKER_PROGRAM: program },
    });
    expect(started.report).toMatchObject({ ok: false, error: { code: 'worker_failed' } });
    const message = started.report && !started.report.ok ? started.report.error.message : '';
    expect(message).toContain('boom: this worker refuses to start');
    expect(message).toContain('exited with code 3');
    expect(await started.exited).toEqual({ code: 1, signal: null });
    const daemonDir = getDaemonDir(tp.profile);
    expect(readdirSync(daemonDir).sort()).toEqual(['log']);
    // Every worker it started (the one that failed first and the other) is gone.
    const log = readFileSync(join(daemonDir, 'log', 'supervisor.log'), 'utf8');
    expect(log).toContain('supervisor exits (code 1)');
    const pids = [...log.matchAll(/worker \d+ started \(pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids.length).toBeGreaterThanOrEqual(2);
    for (const pid of pids) expect(isAlive(pid)).toBe(false);
  });
});

test('after a good start, a worker that keeps dying is crash-looping with backoff and low CPU', async () => {
  await withLogTails(tp.logTails, async () => {
    const program = workerProgram('works-once.mjs', WORKS_ONCE);
    const started = await startBin({
      profile: tp.profile,
      workers: 1,
      env: {
        AIIDA_DAEMON_WORKER_PROGRAM: program,
        AIIDA_TEST_CRASH_MARKER: join(tp.aiidaPath, 'crash-marker'),
      },
    });
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const socketPath = started.report.socketPath;
    const first = (await status(socketPath)).workers[0] as WorkerStatus;
    expect(first.state).toBe('ready');
    process.kill(first.pid as number, 'SIGKILL');

    const looping = await waitFor(
      async () => {
        const w = (await status(socketPath)).workers[0];
        return w?.state === 'crash-looping' && w.lastStderr.length > 0 && w;
      },
      { timeout: 15, what: 'the slot to show crash-looping' },
    );
    expect(looping.lastStderr.join('\n')).toContain('refusing to start again');

    // Measure over a few seconds: attempts slow down, and the supervisor barely uses the CPU.
    const ticksBefore = cpuTicks(started.pid);
    const restartsBefore = looping.restarts;
    const t0 = Date.now();
    const later = await waitFor(
      async () => {
        const w = (await status(socketPath)).workers[0];
        return Date.now() - t0 > 4000 && w;
      },
      { timeout: 10, interval: 0.25, what: '4 s to pass' },
    );
    const seconds = (Date.now() - t0) / 1000;
    const cpuShare = (cpuTicks(started.pid) - ticksBefore) / 100 / seconds;
    expect(cpuShare).toBeLessThan(0.2);
    // 0.5 + 1 + 2 + 4 s of backoff: at most a handful of attempts in 4 s, not hundreds.
    expect(later.restarts - restartsBefore).toBeLessThanOrEqual(4);
    expect(later.restarts).toBeGreaterThanOrEqual(2);
    const waiting = await waitFor(
      async () => {
        const w = (await status(socketPath)).workers[0];
        return w?.pid === null && w.nextAttemptAt !== null && w;
      },
      { timeout: 20, what: 'a crash-looping slot waiting for its next attempt' },
    );
    expect(Date.parse(waiting.nextAttemptAt as string)).toBeGreaterThan(Date.now() - 1000);
    expect(readFileSync(join(getDaemonLogDir(tp.profile), 'supervisor.log'), 'utf8')).toMatch(
      /crash-looping .*next attempt in \d/,
    );
  });
});

test('two concurrent starts give one daemon; the other reports already_running', async () => {
  await withLogTails(tp.logTails, async () => {
    const [a, b] = await Promise.all([
      startBin({ profile: tp.profile, workers: 1 }),
      startBin({ profile: tp.profile, workers: 1 }),
    ]);
    const reports = [a, b].map((s) => s.report);
    const winners = [a, b].filter((s) => s.report?.ok);
    const losers = [a, b].filter((s) => !s.report?.ok);
    expect(winners).toHaveLength(1);
    expect(losers).toHaveLength(1);
    expect(losers[0]?.report).toMatchObject({ ok: false, error: { code: 'already_running' } });
    expect(await losers[0]?.exited).toEqual({ code: 1, signal: null });
    const winner = winners[0] as StartedSupervisor;
    expect(readDaemonState(tp.profile)).toMatchObject({ live: true, state: { pid: winner.pid } });
    expect(reports).toHaveLength(2);
    if (winner.report?.ok) {
      expect((await status(winner.report.socketPath)).workers[0]?.state).toBe('ready');
    }
  });
});

test('an unreachable broker fails the start with the connection error and the redacted URL', async () => {
  const bad = createTestProfile({
    name: 'badport',
    broker: { port: 5999 },
    options: { 'broker.task_timeout': 3 },
  });
  try {
    const started = await startBin({ profile: bad.profile, workers: 2 });
    expect(started.report).toMatchObject({ ok: false, error: { code: 'worker_failed' } });
    const message = started.report && !started.report.ok ? started.report.error.message : '';
    expect(message).toContain('ECONNREFUSED');
    expect(message).toContain('amqp://guest:***@127.0.0.1:5999');
    expect(await started.exited).toEqual({ code: 1, signal: null });
    expect(readDaemonState(bad.profile)).toBeUndefined();
  } catch (error) {
    (error as Error).message += `\n${bad.logTails()}`;
    throw error;
  } finally {
    bad.remove();
  }
});

test('a daemon folder too deep for a unix socket path uses a short private fallback', async () => {
  const aiidaPath = join(tp.aiidaPath, 'x'.repeat(90));
  const profile = createProfile(
    { name: 'deep', options: { 'daemon.graceful_timeout': 3 }, pluginBaseDir: aiidaPath },
    { aiidaPath },
  );
  try {
    const started = await startBin({ profile, workers: 1 });
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const { socketPath } = started.report;
    expect(socketPath).toMatch(/^\/tmp\/aiida-\d+-[0-9a-f]{16}\/d\.sock$/);
    expect(statSync(join(socketPath, '..')).mode & 0o777).toBe(0o700);
    expect(readDaemonState(profile)?.state?.socketPath).toBe(socketPath);
    expect((await status(socketPath)).workers[0]?.state).toBe('ready');
    await controlResult(socketPath, { type: 'stop' });
    expect(await started.exited).toEqual({ code: 0, signal: null });
    expect(existsSync(socketPath)).toBe(false);
    expect(existsSync(join(socketPath, '..'))).toBe(false);
  } catch (error) {
    (error as Error).message += `\n${logTails(profile)}`;
    throw error;
  } finally {
    await deleteProfileTopology(profile);
  }
});

test('a worker above daemon.worker_max_memory is replaced, its successor ready first', async () => {
  const capped = createTestProfile({ name: 'memcap', options: { 'daemon.worker_max_memory': 1 } });
  try {
    const started = await startBin({ profile: capped.profile, workers: 1 });
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const { socketPath } = started.report;
    const first = (await status(socketPath)).workers[0]?.pid as number;
    const readLog = () =>
      readFileSync(join(getDaemonLogDir(capped.profile), 'supervisor.log'), 'utf8');
    const violations: DaemonStatus[] = [];
    await waitFor(
      async () => {
        const s = await status(socketPath);
        // Whenever the old one is stopping, its successor is already ready.
        const oldStopping = s.workers.some((w) => w.pid === first && w.state === 'stopping');
        if (oldStopping && !s.workers.some((w) => w.pid !== first && w.state === 'ready')) {
          violations.push(s);
        }
        // The supervisor logs the old worker's exit once it has reaped it, which may come a
        // moment after the pid is gone: wait for the line too.
        return (
          !isAlive(first) &&
          s.workers.some((w) => w.state === 'ready' && w.pid !== first) &&
          readLog().includes(`(pid ${first}) stopped`)
        );
      },
      { timeout: 20, interval: 0.05, what: 'the worker to be replaced for its memory' },
    );
    const log = readLog();
    expect(log).toContain('above daemon.worker_max_memory 1: replacing it');
    const startedAt = log.indexOf('as replacement');
    const stoppedAt = log.indexOf(`(pid ${first}) stopped`);
    expect(startedAt).toBeGreaterThan(-1);
    expect(stoppedAt).toBeGreaterThan(startedAt);
    expect(violations).toEqual([]);
    await stopPid(started.pid, 10);
  } catch (error) {
    (error as Error).message += `\n${capped.logTails()}`;
    throw error;
  } finally {
    await deleteProfileTopology(capped.profile);
    capped.remove();
  }
});

/** Reports ready, then ignores `shutdown` and SIGTERM. */
const STUBBORN = `
process.send({ v: 1, type: 'ready', pid: process.pid, slotsTotal: 1 });
process.on('message', () => process.stderr.write('stubborn worker: ignoring shutdown\\n'));
process.on('SIGTERM', () => process.stderr.write('stubborn worker: ignoring SIGTERM\\n'));
// Heartbeats, as every worker sends them: without, the supervisor would replace it as unresponsive.
setInterval(() => process.send({ v: 1, type: 'heartbeat', slotsUsed: 0, slotsTotal: 1, activePks: [], eventLoopLag: 0, memory: 0 }), 500);
`;

test('stop: a worker still there after the graceful timeout is SIGKILLed, then the answer', async () => {
  await withLogTails(tp.logTails, async () => {
    const program = workerProgram('stubborn.mjs', STUBBORN);
    const started = await startBin({
      profile: tp.profile,
      workers: 1,
      env: { AIIDA_DAEMON_WORKER_PROGRAM: program },
    });
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const worker = (await status(started.report.socketPath)).workers[0]?.pid as number;
    const t0 = Date.now();
    const result = await controlResult(started.report.socketPath, {
      type: 'stop',
      gracefulTimeout: 1,
    });
    const elapsed = (Date.now() - t0) / 1000;
    expect(result).toEqual({ killedWorkers: 1 });
    expect(elapsed).toBeGreaterThanOrEqual(0.9);
    expect(elapsed).toBeLessThan(5);
    expect(isAlive(worker)).toBe(false);
    expect(await started.exited).toEqual({ code: 0, signal: null });
  });
});

test('a second SIGTERM kills the workers at once; the exit status names the signal', async () => {
  await withLogTails(tp.logTails, async () => {
    const program = workerProgram('stubborn.mjs', STUBBORN);
    const started = await startBin({
      profile: tp.profile,
      workers: 2,
      env: { AIIDA_DAEMON_WORKER_PROGRAM: program },
    });
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const workers = (await status(started.report.socketPath)).workers.map((w) => w.pid as number);
    process.kill(started.pid, 'SIGTERM');
    // The graceful stop is under way (the stubborn workers got their shutdown message)...
    await waitFor(
      () =>
        readFileSync(join(getDaemonLogDir(tp.profile), 'supervisor.log'), 'utf8').includes(
          'stopping gracefully',
        ),
      { timeout: 5, what: 'the graceful stop to begin' },
    );
    const t0 = Date.now();
    process.kill(started.pid, 'SIGTERM');
    expect(await started.exited).toEqual({ code: null, signal: 'SIGTERM' });
    // ...and well before its 3 s graceful timeout, everything is gone.
    expect(Date.now() - t0).toBeLessThan(2000);
    await waitFor(() => workers.every((pid) => !isAlive(pid)), {
      timeout: 2,
      what: 'workers gone',
    });
    expect(readDaemonState(tp.profile)).toBeUndefined();
  });
});
