import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setOption, unsetOption } from '@aiida/config';
import { isAlive } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  DaemonClient,
  DaemonException,
  DaemonStalePidException,
  getDaemonClient,
} from '../src/index.js';
import {
  allGone,
  cleanBrokerTopology,
  cpuTicks,
  createTestProfile,
  expectNothingLeft,
  FAKE_WORKER,
  type TestProfile,
  withLogs,
  workerPids,
} from './helpers.js';

describe('crashes of workers and of the supervisor', () => {
  let tp: TestProfile;

  beforeAll(() => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'crashes' });
  });
  afterEach(async () => {
    await expectNothingLeft(tp.profile);
  });
  afterAll(async () => {
    await cleanBrokerTopology(tp.profile);
    tp.remove();
  });

  it('replaces a worker killed with SIGKILL and counts the restart', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      await client.startDaemon({ numberWorkers: 2 });
      const before = await client.getStatus();
      const victim = before.workers[0];
      const bystander = before.workers[1];
      if (!victim?.pid || !bystander?.pid) throw new Error('expected two workers with pids');
      process.kill(victim.pid, 'SIGKILL');
      const after = await waitFor(
        async () => {
          const status = await client.getStatus();
          const slot = status.workers.find((w) => w.index === victim.index);
          return slot && slot.pid !== victim.pid && slot.state === 'ready' ? status : undefined;
        },
        { timeout: 20, what: `worker ${victim.index} to be replaced` },
      );
      const replaced = after.workers.find((w) => w.index === victim.index);
      expect(replaced?.restarts).toBeGreaterThanOrEqual(1);
      expect(replaced?.lastRestartReason).toBe('exited');
      expect(isAlive(victim.pid)).toBe(false);
      // The other worker and the supervisor were not touched.
      expect(after.pid).toBe(before.pid);
      expect(after.workers.find((w) => w.index === bystander.index)?.pid).toBe(bystander.pid);
      await client.stopDaemon();
    });
  }, 60_000);

  it('replaces a worker stopped (SIGSTOP) past daemon.lease_timeout: SIGTERM, SIGKILL after the grace, restart reason unresponsive', async () => {
    await withLogs(tp, async () => {
      const client = new DaemonClient(tp.profile, {
        env: { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER },
      });
      await client.startDaemon({ numberWorkers: 2 });
      const before = await client.getStatus();
      const victim = before.workers[0];
      const bystander = before.workers[1];
      if (!victim?.pid || !bystander?.pid) throw new Error('expected two workers with pids');
      const stoppedAt = Date.now();
      process.kill(victim.pid, 'SIGSTOP');
      try {
        const after = await waitFor(
          async () => {
            const status = await client.getStatus();
            const slot = status.workers.find((w) => w.index === victim.index);
            return slot && slot.pid !== victim.pid && slot.state === 'ready' ? status : undefined;
          },
          { timeout: 40, what: `stopped worker ${victim.index} to be replaced` },
        );
        const tookSeconds = (Date.now() - stoppedAt) / 1000;
        const replaced = after.workers.find((w) => w.index === victim.index);
        expect(replaced).toMatchObject({ restarts: 1, lastRestartReason: 'unresponsive' });
        // Not before its heartbeats had been missing for the lease timeout (5 s in test
        // profiles), then the graceful timeout (3 s) for SIGKILL, as a stopped process ignores
        // SIGTERM.
        expect(tookSeconds).toBeGreaterThanOrEqual(5);
        expect(isAlive(victim.pid)).toBe(false);
        expect(after.pid).toBe(before.pid);
        const other = after.workers.find((w) => w.index === bystander.index);
        expect(other).toMatchObject({ pid: bystander.pid, restarts: 0, lastRestartReason: null });
        const log = readFileSync(client.supervisorLogFile, 'utf8');
        expect(log).toContain(`worker ${victim.index} (pid ${victim.pid}) is unresponsive`);
        expect(log).toContain(`still runs 3 s after SIGTERM: SIGKILL`);
        expect(log).toMatch(
          new RegExp(
            `worker ${victim.index} started \\(pid \\d+, restart 1, reason unresponsive\\)`,
          ),
        );
      } finally {
        if (isAlive(victim.pid)) process.kill(victim.pid, 'SIGCONT');
      }
      await client.stopDaemon();
    });
  }, 90_000);

  it('a promoted warm spare that does not get ready within daemon.lease_timeout is killed and its slot revived', async () => {
    await withLogs(tp, async () => {
      setOption('daemon.warm_spare', true, { profile: tp.profile.name, aiidaPath: tp.aiidaPath });
      const marker = join(tp.aiidaPath, 'first-promotion');
      const client = new DaemonClient(tp.profile, {
        env: {
          AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER,
          FAKE_WORKER_PROMOTE: 'ignore-first',
          FAKE_WORKER_MARKER: marker,
        },
      });
      try {
        await client.startDaemon({ numberWorkers: 1 });
        const spare = await waitFor(
          async () => {
            const { spare } = await client.getStatus();
            return spare?.state === 'standby' ? spare : undefined;
          },
          { timeout: 20, what: 'the warm spare in standby' },
        );
        const victim = (await client.getStatus()).workers[0]!;
        process.kill(victim.pid!, 'SIGKILL');
        // The spare takes the slot but never reports ready (it ignores its promotion).
        await waitFor(
          async () => (await client.getStatus()).workers[0]?.pid === spare.pid || undefined,
          { timeout: 20, what: 'the spare to take slot 0' },
        );
        expect(existsSync(marker)).toBe(true);
        const after = await waitFor(
          async () => {
            const slot = (await client.getStatus()).workers[0];
            return slot?.state === 'ready' && slot.pid !== spare.pid ? slot : undefined;
          },
          { timeout: 40, what: 'slot 0 to get a ready worker after the stuck spare' },
        );
        expect(after.restarts).toBe(2);
        await waitFor(() => !isAlive(spare.pid), { timeout: 10, what: 'the stuck spare to die' });
        const log = readFileSync(client.supervisorLogFile, 'utf8');
        expect(log).toContain(
          `worker 0 (pid ${spare.pid}, the former warm spare) is not ready 5 s after its promotion: SIGKILL`,
        );
        await client.stopDaemon();
      } finally {
        unsetOption('daemon.warm_spare', { profile: tp.profile.name, aiidaPath: tp.aiidaPath });
      }
    });
  }, 90_000);

  it('after SIGKILL of the supervisor: workers gone within 10 s, stale state, and a new start works', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      const started = await client.startDaemon({ numberWorkers: 2 });
      const workers = workerPids((await client.getStatus()).workers);
      expect(workers).toHaveLength(2);
      const stateBefore = readFileSync(client.stateFilePath, 'utf8');

      process.kill(started.pid, 'SIGKILL');
      await waitFor(() => !isAlive(started.pid), { timeout: 5, what: 'the supervisor to die' });
      await waitFor(() => allGone(workers), { timeout: 10, what: `workers ${workers} to exit` });
      expect(client.isDaemonRunning).toBe(false);
      const t0 = performance.now();
      await expect(client.getStatus()).rejects.toBeInstanceOf(DaemonStalePidException);
      expect(performance.now() - t0).toBeLessThan(1000);
      expect(() => client.getDaemonPid()).toThrow(DaemonStalePidException);
      // Nothing was changed by looking.
      expect(readFileSync(client.stateFilePath, 'utf8')).toBe(stateBefore);

      const again = await client.startDaemon({ numberWorkers: 1 });
      expect(again.pid).not.toBe(started.pid);
      expect(client.isDaemonRunning).toBe(true);
      expect((await client.getStatus()).workers.map((w) => w.state)).toEqual(['ready']);
      await client.stopDaemon();
    });
  }, 60_000);

  it('fails the start with the stderr of a worker program that exits at once, leaving nothing', async () => {
    await withLogs(tp, async () => {
      const client = new DaemonClient(tp.profile, {
        env: { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER, FAKE_WORKER_MODE: 'exit-at-once' },
      });
      const error = await client.startDaemon({ numberWorkers: 2 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DaemonException);
      expect((error as Error).message).toContain(
        "The daemon for profile 'crashes' failed to start",
      );
      expect((error as Error).message).toContain('cannot start (exit-at-once)');
      expect(client.isDaemonRunning).toBe(false);
      expect(existsSync(client.stateFilePath)).toBe(false);
    });
  }, 60_000);

  it('shows a worker that crashes at once after a good start as crash-looping, at low supervisor cpu', async () => {
    await withLogs(tp, async () => {
      const marker = join(tp.aiidaPath, 'first-start-done');
      const client = new DaemonClient(tp.profile, {
        env: {
          AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER,
          FAKE_WORKER_MODE: 'crash-after-first',
          FAKE_WORKER_MARKER: marker,
        },
      });
      const started = await client.startDaemon({ numberWorkers: 1 });
      const first = (await client.getStatus()).workers[0];
      if (!first?.pid) throw new Error('expected a worker');
      process.kill(first.pid, 'SIGKILL');
      const looping = await waitFor(
        async () => {
          const worker = (await client.getStatus()).workers[0];
          return worker?.state === 'crash-looping' ? worker : undefined;
        },
        { timeout: 30, what: 'the worker to show as crash-looping' },
      );
      expect(looping.lastStderr.join('\n')).toContain('cannot start (crash-after-first)');
      expect(looping.restarts).toBeGreaterThanOrEqual(1);
      // The supervisor waits (backoff) instead of spinning: under 20% of a core over 3 s.
      const ticksPerSecond = 100;
      const t0 = cpuTicks(started.pid);
      const w0 = performance.now();
      await waitFor(() => performance.now() - w0 >= 3000, { timeout: 5, what: '3 s to pass' });
      const used = (cpuTicks(started.pid) - t0) / ticksPerSecond;
      expect(used / ((performance.now() - w0) / 1000)).toBeLessThan(0.2);
      expect(client.isDaemonRunning).toBe(true);
      await client.stopDaemon();
    });
  }, 90_000);
});
