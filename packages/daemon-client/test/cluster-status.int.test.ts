// DaemonClient.getClusterStatus() reads the store's worker registry: no daemon, no broker.
import { createProfile, getHostname } from '@aiida/config';
import { SqliteProcessStore } from '@aiida/engine';
import { DaemonClient, DaemonException } from '../src/index.js';
import { createTestProfile, type TestProfile } from './helpers.js';

let tp: TestProfile;
beforeEach(() => {
  tp = createTestProfile({ options: { 'daemon.lease_timeout': 5 } });
});
afterEach(() => tp.remove());

function storeAt(offsetMs: number): SqliteProcessStore {
  if (tp.profile.storage.backend !== 'core.sqlite') throw new Error('expected a SQLite profile');
  return new SqliteProcessStore({
    filepath: tp.profile.storage.config.filepath,
    clock: { now: () => Date.now() + offsetMs },
  });
}

const worker = (workerId: string, hostname: string, pid: number, slotsUsed = 0) => ({
  workerId,
  hostname,
  pid,
  slotsUsed,
  slotsTotal: 10,
});

test('every host and its workers from the registry, this host flagged, stale ones marked and not counted', async () => {
  const here = getHostname();
  const old = storeAt(-60_000);
  await old.registerWorker(worker('gone:7:a', 'zeta-gone', 7));
  await old.close();
  const now = storeAt(0);
  await now.registerWorker(worker(`${here}:1:a`, here, 1, 3));
  await now.registerWorker(worker('alpha:2:b', 'alpha', 2, 4));
  await now.registerWorker(worker('alpha:3:c', 'alpha', 3, 5));
  await now.close();

  const status = await new DaemonClient(tp.profile).getClusterStatus();
  expect(status).toMatchObject({
    profile: tp.profile.name,
    backend: 'core.sqlite',
    thisHost: here,
    staleAfter: 5,
    workers: 4,
    staleWorkers: 1,
  });
  const names = [here, 'alpha', 'zeta-gone'].sort();
  expect(status.hosts.map((h) => h.hostname)).toEqual(names);
  const byName = Object.fromEntries(status.hosts.map((h) => [h.hostname, h]));
  expect(byName.alpha).toMatchObject({
    thisHost: false,
    liveWorkers: 2,
    slotsUsed: 9,
    slotsTotal: 20,
  });
  expect(byName.alpha!.workers.map((w) => [w.pid, w.stale])).toEqual([
    [2, false],
    [3, false],
  ]);
  expect(byName[here]).toMatchObject({ thisHost: true, liveWorkers: 1, slotsUsed: 3 });
  expect(byName['zeta-gone']).toMatchObject({ liveWorkers: 0, slotsUsed: 0, slotsTotal: 0 });
  expect(byName['zeta-gone']!.workers).toMatchObject([{ workerId: 'gone:7:a', stale: true }]);
});

test('a store that cannot be opened is a DaemonException store_error naming it, not its password', async () => {
  const profile = createProfile(
    {
      name: 'unreachable',
      storage: {
        backend: 'core.psql',
        config: {
          database_hostname: '127.0.0.1',
          database_port: 1, // nothing listens there
          database_username: 'nobody',
          database_password: 'secret-pw-not-shown',
          database_name: 'nowhere',
        },
      },
    },
    { aiidaPath: tp.aiidaPath },
  );
  const error = await new DaemonClient(profile).getClusterStatus().catch((e: unknown) => e);
  expect(error).toBeInstanceOf(DaemonException);
  expect(error).toMatchObject({ code: 'store_error' });
  expect((error as Error).message).toContain("worker registry of profile 'unreachable'");
  expect((error as Error).message).toContain('127.0.0.1:1/nowhere');
  expect((error as Error).message).not.toContain('secret-pw-not-shown');
});

test('with an open store given, the registry is read through it and the store is left open', async () => {
  const now = storeAt(0);
  await now.registerWorker(worker('alpha:2:b', 'alpha', 2, 4));
  // A store whose clock runs a minute ahead: read through it, the worker is already stale.
  const ahead = storeAt(60_000);
  try {
    const client = new DaemonClient(tp.profile);
    const through = await client.getClusterStatus({ store: ahead });
    expect(through).toMatchObject({ backend: 'core.sqlite', workers: 1, staleWorkers: 1 });
    expect(through.hosts[0]).toMatchObject({ hostname: 'alpha', liveWorkers: 0 });
    // Opened by the call (the store's own clock): live.
    expect(await client.getClusterStatus()).toMatchObject({ workers: 1, staleWorkers: 0 });
    // Still open for its owner.
    expect(await ahead.listWorkers({ staleAfterSeconds: 5 })).toHaveLength(1);
  } finally {
    await ahead.close();
    await now.close();
  }
});
