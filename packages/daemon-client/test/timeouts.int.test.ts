import { createProfile, type Profile } from '@aiida/config';
import {
  DaemonNotRunningException,
  DaemonTimeoutException,
  getDaemonClient,
} from '../src/index.js';
import {
  cleanBrokerTopology,
  createTestProfile,
  expectNothingLeft,
  TEST_OPTIONS,
  type TestProfile,
  withLogs,
} from './helpers.js';

async function timed(promise: Promise<unknown>): Promise<{ error: unknown; seconds: number }> {
  const started = performance.now();
  try {
    await promise;
    return { error: undefined, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    return { error, seconds: (performance.now() - started) / 1000 };
  }
}

describe('timeouts of the client', () => {
  let tp: TestProfile;
  let patient: Profile;

  beforeAll(() => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'timeouts', options: { 'daemon.timeout': 2 } });
    patient = createProfile(
      {
        name: 'patient',
        options: { ...TEST_OPTIONS, 'daemon.timeout': 30 },
        pluginBaseDir: tp.aiidaPath,
      },
      { aiidaPath: tp.aiidaPath },
    );
  });
  afterEach(async () => {
    await expectNothingLeft(tp.profile);
  });
  afterAll(async () => {
    await cleanBrokerTopology(tp.profile);
    tp.remove();
  });

  it('raises DaemonTimeoutException for a stopped (SIGSTOP) supervisor after the given timeout', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      const { pid } = await client.startDaemon();
      process.kill(pid, 'SIGSTOP');
      try {
        const { error, seconds } = await timed(client.getStatus({ timeout: 0.5 }));
        expect(error).toBeInstanceOf(DaemonTimeoutException);
        expect(seconds).toBeGreaterThanOrEqual(0.45);
        expect(seconds).toBeLessThan(3);
        expect((error as Error).message).toContain(
          `The daemon for profile 'timeouts' (pid ${pid}) did not answer the 'status' request within 0.5 s`,
        );
        expect((error as Error).message).toContain('daemon.timeout');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      // It answers again once continued.
      expect((await client.getStatus()).pid).toBe(pid);
      await client.stopDaemon();
    });
  }, 60_000);

  it('waits the configured daemon.timeout (2 s here) when no timeout is given', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      expect(client.timeout).toBe(2);
      const { pid } = await client.startDaemon();
      process.kill(pid, 'SIGSTOP');
      try {
        const { error, seconds } = await timed(client.getStatus());
        expect(error).toBeInstanceOf(DaemonTimeoutException);
        expect(seconds).toBeGreaterThanOrEqual(1.95);
        expect(seconds).toBeLessThan(5);
        expect((error as Error).message).toContain('within 2 s');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await client.stopDaemon();
    });
  }, 60_000);

  it('raises DaemonNotRunningException at once when there is no daemon, even with daemon.timeout 30', async () => {
    const client = getDaemonClient('patient');
    expect(client.timeout).toBe(30);
    const { error, seconds } = await timed(client.getStatus());
    expect(error).toBeInstanceOf(DaemonNotRunningException);
    expect(seconds).toBeLessThan(1);
    expect((error as Error).message).toContain("The daemon for profile 'patient' is not running");
    for (const call of [
      () => client.getWorkerInfo(),
      () => client.increaseWorkers(1),
      () => client.decreaseWorkers(1),
      () => client.restartDaemon(),
      () => client.getDaemonInfo(),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(DaemonNotRunningException);
    }
    expect(patient.name).toBe('patient');
  });
});
