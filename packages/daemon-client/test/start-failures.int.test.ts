import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { createProfile, type Profile } from '@aiida/config';
import { ErrorCodes } from '@aiida/ipc';
import { isAlive } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  DaemonClient,
  DaemonException,
  DaemonTimeoutException,
  getDaemonClient,
} from '../src/index.js';
import {
  cleanBrokerTopology,
  commandOf,
  createTestProfile,
  expectNothingLeft,
  FAKE_WORKER,
  processesOfThisFile,
  TEST_OPTIONS,
  type TestProfile,
  withLogs,
} from './helpers.js';

/** A TCP port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

const supervisorsOf = (aiidaPath: string) =>
  processesOfThisFile(aiidaPath).filter((pid) => commandOf(pid).includes('daemon-supervisor'));

describe('starts that fail or race', () => {
  let tp: TestProfile;
  let badBroker: Profile;

  beforeAll(async () => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'starts', options: { 'broker.task_timeout': 2 } });
    badBroker = createProfile(
      {
        name: 'bad-broker',
        options: TEST_OPTIONS,
        broker: { port: await closedPort() },
        pluginBaseDir: tp.aiidaPath,
      },
      { aiidaPath: tp.aiidaPath },
    );
  });
  afterEach(async () => {
    await expectNothingLeft(tp.profile);
    await expectNothingLeft(badBroker);
  });
  afterAll(async () => {
    await cleanBrokerTopology(tp.profile);
    tp.remove();
  });

  it('raises the connection error of a wrong broker port and leaves nothing running', async () => {
    const client = getDaemonClient('bad-broker');
    const started = performance.now();
    const error = await client.startDaemon({ numberWorkers: 2 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const seconds = (performance.now() - started) / 1000;
    expect(error).toBeInstanceOf(DaemonException);
    expect(error).not.toBeInstanceOf(DaemonTimeoutException);
    const message = (error as Error).message;
    expect(message).toContain("The daemon for profile 'bad-broker' failed to start");
    expect(message).toContain('ECONNREFUSED');
    expect(message).toContain(String(badBroker.broker.config.port));
    expect(seconds).toBeLessThan(client.settings.brokerTaskTimeout + 10);
    // Nothing of this start is left: no process, no state file.
    expect(processesOfThisFile(tp.aiidaPath)).toEqual([]);
    expect(client.isDaemonRunning).toBe(false);
    expect(existsSync(client.stateFilePath)).toBe(false);
  }, 60_000);

  it('gives exactly one daemon for two concurrent starts; the other raises DaemonException', async () => {
    await withLogs(tp, async () => {
      const first = getDaemonClient();
      const second = getDaemonClient();
      const outcomes = await Promise.allSettled([
        first.startDaemon({ numberWorkers: 1 }),
        second.startDaemon({ numberWorkers: 1 }),
      ]);
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      const lost = outcomes.filter((o) => o.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      const reason = (lost[0] as PromiseRejectedResult).reason as DaemonException;
      expect(reason).toBeInstanceOf(DaemonException);
      expect(reason.code).toBe(ErrorCodes.alreadyRunning);
      expect(reason.message).toContain("The daemon for profile 'starts' is already running");
      const winner = (won[0] as PromiseFulfilledResult<{ pid: number }>).value.pid;
      await waitFor(() => supervisorsOf(tp.aiidaPath).length === 1, {
        what: 'the losing supervisor to exit',
      });
      expect(supervisorsOf(tp.aiidaPath)).toEqual([winner]);
      const status = await first.getStatus();
      expect(status.pid).toBe(winner);
      expect(status.workers).toHaveLength(1);
      await first.stopDaemon();
    });
  }, 60_000);

  it('kills what it started and raises DaemonTimeoutException when workers never get ready', async () => {
    await withLogs(tp, async () => {
      const client = new DaemonClient(tp.profile, {
        env: { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER, FAKE_WORKER_MODE: 'never-ready' },
      });
      const deadline = Math.max(1, client.settings.brokerTaskTimeout + 5);
      const started = performance.now();
      const error = await client.startDaemon({ numberWorkers: 1, timeout: 1 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      const seconds = (performance.now() - started) / 1000;
      expect(error).toBeInstanceOf(DaemonTimeoutException);
      expect((error as Error).message).toContain(`within ${deadline} s`);
      // The command line shows this message: it names options, not library calls.
      expect((error as Error).message).toContain(
        'a start waits for the larger of the timeout and broker.task_timeout + 5 s',
      );
      expect((error as Error).message).not.toMatch(/startDaemon|[a-z]\(\)|max\(/);
      expect(seconds).toBeGreaterThanOrEqual(deadline - 0.05);
      expect(seconds).toBeLessThan(deadline + client.settings.gracefulTimeout + 8);
      const pid = (error as DaemonException).details?.pid as number;
      expect(isAlive(pid)).toBe(false);
      expect(processesOfThisFile(tp.aiidaPath)).toEqual([]);
      expect(client.isDaemonRunning).toBe(false);
    });
  }, 90_000);

  it('with wait: false returns once spawned; the daemon comes up by itself', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      const started = await client.startDaemon({ numberWorkers: 1, wait: false });
      expect(started).toMatchObject({ ready: false, socketPath: null });
      const status = await waitFor(
        async () => {
          if (!client.isDaemonRunning) return undefined;
          const s = await client.getStatus();
          return s.workers.every((w) => w.state === 'ready') ? s : undefined;
        },
        { what: 'the daemon to be ready' },
      );
      expect(status.pid).toBe(started.pid);
      const stopped = await client.stopDaemon({ wait: false });
      expect(stopped).toMatchObject({ wasRunning: true, stopped: false, pid: started.pid });
      await waitFor(() => !isAlive(started.pid), { what: 'the supervisor to exit' });
      expect(client.isDaemonRunning).toBe(false);
    });
  }, 60_000);
});
