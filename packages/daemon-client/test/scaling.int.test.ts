import type { DaemonStatus } from '@aiida/ipc';
import { isAlive } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import { getDaemonClient } from '../src/index.js';
import {
  allGone,
  cleanBrokerTopology,
  createTestProfile,
  expectNothingLeft,
  type TestProfile,
  withLogs,
  workerPids,
} from './helpers.js';

const readyCount = (status: { workers: readonly { state: string }[] }) =>
  status.workers.filter((w) => w.state === 'ready').length;

describe('scaling and restarting the daemon', () => {
  let tp: TestProfile;

  beforeAll(() => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'scaling' });
  });
  afterEach(async () => {
    await expectNothingLeft(tp.profile);
  });
  afterAll(async () => {
    await cleanBrokerTopology(tp.profile);
    tp.remove();
  });

  it('starts 4, grows to 6, shrinks to 3, restarts rolling, and resets', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();

      const started = await client.startDaemon({ numberWorkers: 4 });
      expect(started).toMatchObject({ numberWorkers: 4, ready: true });
      let status = await client.getStatus();
      expect(status.pid).toBe(started.pid);
      expect(status.numberWorkers).toBe(4);
      expect(readyCount(status)).toBe(4);
      expect(await client.getNumberOfWorkers()).toBe(4);

      const grown = await client.increaseWorkers(2);
      expect(grown.numberWorkers).toBe(6);
      expect(readyCount(grown)).toBe(6);
      expect(readyCount(await client.getStatus())).toBe(6);

      const before = (await client.getWorkerInfo()).map((w) => w.pid);
      const shrunk = await client.decreaseWorkers(3);
      expect(shrunk.numberWorkers).toBe(3);
      expect(shrunk.workers).toHaveLength(3);
      expect(readyCount(shrunk)).toBe(3);
      // The stopped workers are gone on return.
      const removed = before.filter((pid) => !workerPids(shrunk.workers).includes(pid as number));
      expect(removed).toHaveLength(3);
      expect(allGone(removed as number[])).toBe(true);

      // Rolling restart, with status polled all along: never fewer than N - 1 = 2 ready.
      const oldPids = workerPids(shrunk.workers);
      const polls: DaemonStatus[] = [];
      let restarting = true;
      const poller = (async () => {
        while (restarting) {
          polls.push(await client.getStatus());
        }
      })();
      const restarted = await client.restartDaemon().finally(() => {
        restarting = false;
      });
      await poller;
      expect(restarted.reset).toBe(false);
      expect(restarted.pid).toBe(started.pid);
      expect(restarted.numberWorkers).toBe(3);
      const newPids = workerPids(restarted.workers);
      expect(newPids).toHaveLength(3);
      expect(newPids.filter((pid) => oldPids.includes(pid))).toEqual([]);
      expect(readyCount(restarted)).toBe(3);
      expect(polls.length).toBeGreaterThanOrEqual(3);
      const fewestReady = Math.min(...polls.map(readyCount));
      expect(fewestReady).toBeGreaterThanOrEqual(2);
      expect(polls.every((p) => p.pid === started.pid)).toBe(true);
      // The poll saw the restart happen (some poll shows a mix or fewer than 3 ready ones).
      expect(polls.some((p) => workerPids(p.workers).some((pid) => !oldPids.includes(pid)))).toBe(
        true,
      );
      expect(allGone(oldPids)).toBe(true);
      status = await client.getStatus();
      expect(status.pid).toBe(started.pid);

      // Reset: a new supervisor with daemon.default_workers (1) workers.
      const reset = await client.restartDaemon({ reset: true });
      expect(reset.reset).toBe(true);
      expect(reset.pid).not.toBe(started.pid);
      expect(isAlive(started.pid)).toBe(false);
      expect(allGone(newPids)).toBe(true);
      expect(reset.numberWorkers).toBe(1);
      status = await client.getStatus();
      expect(status.pid).toBe(reset.pid);
      expect(status.numberWorkers).toBe(1);
      expect(readyCount(status)).toBe(1);

      await client.stopDaemon({ wait: true });
      await waitFor(() => !isAlive(reset.pid), { what: 'the new supervisor to exit' });
    });
  }, 120_000);
});
