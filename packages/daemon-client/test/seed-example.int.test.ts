import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createProfile, getDefaultProfileName, type Profile } from '@aiida/config';
import { ErrorCodes } from '@aiida/ipc';
import { isAlive } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  DaemonClient,
  DaemonException,
  DaemonStalePidException,
  getDaemonClient,
} from '../src/index.js';
import {
  cleanBrokerTopology,
  createTestProfile,
  expectNothingLeft,
  snapshotDaemonDir,
  TEST_OPTIONS,
  type TestProfile,
  withLogs,
  writeDaemonState,
} from './helpers.js';

// The seed's example (docs/topics/daemon.rst, "Client"), translated.
describe('the seed example', () => {
  let tp: TestProfile;
  let other: Profile;
  const savedProfileEnv = process.env.AIIDA_PROFILE;

  beforeAll(() => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'seed' });
    other = createProfile(
      { name: 'some-profile', options: TEST_OPTIONS, pluginBaseDir: tp.aiidaPath },
      { aiidaPath: tp.aiidaPath },
    );
  });
  afterEach(async () => {
    await expectNothingLeft(tp.profile);
    await expectNothingLeft(other);
  });
  afterAll(async () => {
    if (savedProfileEnv === undefined) delete process.env.AIIDA_PROFILE;
    else process.env.AIIDA_PROFILE = savedProfileEnv;
    await cleanBrokerTopology(tp.profile);
    await cleanBrokerTopology(other);
    tp.remove();
  });

  it('controls the daemon of the default profile', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      expect(client.profile.name).toBe('seed');
      await client.startDaemon();
      expect(client.isDaemonRunning).toBe(true);
      const status = await client.getStatus();
      expect(status.workers).toHaveLength(1); // daemon.default_workers
      expect(status.workers.every((w) => w.state === 'ready')).toBe(true);
      const pid = client.getDaemonPid();
      expect(pid).toBe(status.pid);
      await client.stopDaemon({ wait: true });
      expect(client.isDaemonRunning).toBe(false);
      expect(isAlive(pid as number)).toBe(false);
      expect(existsSync(client.stateFilePath)).toBe(false);
      expect(client.getDaemonPid()).toBeNull();
    });
  });

  it('controls the daemon of an explicit profile, without changing the default', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient('some-profile');
      expect(client.profile.name).toBe('some-profile');
      const started = await client.startDaemon();
      expect(started).toMatchObject({ ready: true, numberWorkers: 1, foreground: false });
      expect(client.isDaemonRunning).toBe(true);
      // The default profile's daemon is another one, and is not running.
      expect(getDaemonClient().isDaemonRunning).toBe(false);
      const stopped = await client.stopDaemon({ wait: true });
      expect(stopped).toMatchObject({ wasRunning: true, stopped: true, pid: started.pid });
      expect(client.isDaemonRunning).toBe(false);
      expect(getDefaultProfileName({ aiidaPath: tp.aiidaPath })).toBe('seed');
    });
  });

  it('honours AIIDA_PROFILE when no profile is named', () => {
    process.env.AIIDA_PROFILE = 'some-profile';
    try {
      expect(getDaemonClient().profile.name).toBe('some-profile');
      expect(getDaemonClient('seed').profile.name).toBe('seed');
    } finally {
      delete process.env.AIIDA_PROFILE;
    }
    expect(getDefaultProfileName({ aiidaPath: tp.aiidaPath })).toBe('seed');
  });

  it('reads the timeout from daemon.timeout once, at construction', () => {
    const client = new DaemonClient(tp.profile);
    expect(client.timeout).toBe(TEST_OPTIONS['daemon.timeout']);
    expect(client.settings).toMatchObject({ gracefulTimeout: 3, defaultWorkers: 1 });
  });

  it('refuses to start a daemon that is already running, naming its pid', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      const started = await client.startDaemon();
      const before = snapshotDaemonDir(client.daemonDir);
      const error = await client.startDaemon().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DaemonException);
      expect((error as DaemonException).code).toBe(ErrorCodes.alreadyRunning);
      expect((error as Error).message).toBe(
        `The daemon for profile 'seed' is already running (pid ${started.pid})`,
      );
      expect(snapshotDaemonDir(client.daemonDir)).toEqual(before);
      expect((await client.getStatus()).pid).toBe(started.pid);
      await client.stopDaemon();
    });
  });

  it('treats stop on a stopped daemon as done, and removes a stale state file', async () => {
    const client = getDaemonClient();
    expect(await client.stopDaemon()).toEqual({
      wasRunning: false,
      staleStateRemoved: false,
      pid: null,
      stopped: false,
      killedWorkers: 0,
    });
    // A state file whose process is gone.
    writeDaemonState(client);
    expect(client.isDaemonRunning).toBe(false);
    expect(() => client.getDaemonPid()).toThrow(DaemonStalePidException);
    await expect(client.getStatus()).rejects.toBeInstanceOf(DaemonStalePidException);
    expect(existsSync(client.stateFilePath)).toBe(true); // reading changes nothing
    expect(await client.stopDaemon()).toMatchObject({ wasRunning: false, staleStateRemoved: true });
    expect(existsSync(client.stateFilePath)).toBe(false);
  });

  it("never judges another host's state file stale: stop leaves it, start refuses", async () => {
    const client = getDaemonClient();
    writeDaemonState(client, { hostname: 'another-host' });
    const before = readFileSync(client.stateFilePath, 'utf8');
    expect(client.isDaemonRunning).toBe(false);
    expect(() => client.getDaemonPid()).toThrow(/written by host 'another-host'/);
    expect(await client.stopDaemon()).toMatchObject({
      wasRunning: false,
      staleStateRemoved: false,
    });
    await expect(client.startDaemon({ wait: false })).rejects.toMatchObject({
      code: 'already_running',
      message: expect.stringContaining("written by host 'another-host'"),
    });
    expect(readFileSync(client.stateFilePath, 'utf8')).toBe(before);
    rmSync(client.stateFilePath);
  });

  it('starts over a stale state file', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      writeDaemonState(client);
      const started = await client.startDaemon();
      expect(client.getDaemonPid()).toBe(started.pid);
      await client.stopDaemon();
      await waitFor(() => !isAlive(started.pid), { what: 'the supervisor to exit' });
    });
  });
});
