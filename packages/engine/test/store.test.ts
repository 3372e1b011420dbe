import { statSync } from 'node:fs';
import { join } from 'node:path';
import { openStore, STORE_SCHEMA_VERSION } from '@aiida/engine';
import Database from 'better-sqlite3';
import { FakeClock, openTestStore, tempDir } from './helpers.js';
import { describeStoreContract } from './store-contract.js';

describeStoreContract('core.sqlite', async () => {
  const tmp = tempDir();
  const clock = new FakeClock();
  const file = join(tmp.dir, 'store', 'aiida.sqlite');
  return {
    open: async () => openTestStore(tmp.dir, clock),
    advance: async (seconds) => clock.advance(seconds),
    setSchemaVersion: async (version) => {
      const db = new Database(file);
      db.prepare('DELETE FROM schema_version WHERE version > ?').run(version);
      db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(version, 0);
      db.close();
    },
    dispose: async () => tmp.remove(),
  };
});

describe('SqliteProcessStore', () => {
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => {
    tmp.remove();
  });

  test('creates its file in a 0700 folder, in WAL mode, at the current schema version', async () => {
    const store = openTestStore(tmp.dir);
    const file = join(tmp.dir, 'store', 'aiida.sqlite');
    expect(statSync(join(tmp.dir, 'store')).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const db = new Database(file, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.prepare('SELECT MAX(version) AS v FROM schema_version').get()).toEqual({
      v: STORE_SCHEMA_VERSION,
    });
    db.close();
    await store.close();
  });

  test('openStore uses profile.storage.config.filepath', async () => {
    const filepath = join(tmp.dir, 'p', 'x.sqlite');
    const s = openStore({ storage: { config: { filepath } } });
    expect(s.location).toBe(filepath);
    await s.close();
  });

  test('a store newer than the code is refused without touching its file', async () => {
    const store = openTestStore(tmp.dir);
    await store.close();
    const file = join(tmp.dir, 'store', 'aiida.sqlite');
    const db = new Database(file);
    db.prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)').run(
      STORE_SCHEMA_VERSION + 1,
      0,
    );
    db.close();
    const before = statSync(file).mtimeMs;
    expect(() => openTestStore(tmp.dir)).toThrow(/written by a newer version/);
    expect(statSync(file).mtimeMs).toBe(before);
  });
});

describe('SqliteProcessStore on a fake clock', () => {
  test('findDispatchable with expiredRedispatchSeconds re-sends with a doubling backoff: 1, 2, 4, then every 4 s', async () => {
    const tmp = tempDir();
    const clock = new FakeClock();
    const store = openTestStore(tmp.dir, clock);
    try {
      const [a] = await store.createProcesses([
        { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
      ]);
      await store.claim(a!.pk, 'w1', 10, { maxAttempts: 5 });
      const find = () =>
        store.findDispatchable({
          neverDispatchedGraceSeconds: 5,
          expiredRedispatchSeconds: { min: 1, max: 4 },
        });
      clock.advance(11); // the lease expired 1 s ago
      expect(await find()).toEqual([a!.pk]);
      await store.markDispatched([a!.pk]);
      // Sent at expiry + 1; again once the time since the send reaches half the time since the
      // expiry, at least 1 s, at most 4 s.
      const sends: number[] = [];
      for (let t = 2; t <= 20; t++) {
        clock.advance(1);
        if ((await find()).includes(a!.pk)) {
          sends.push(t);
          await store.markDispatched([a!.pk]);
        }
      }
      expect(sends).toEqual([2, 4, 8, 12, 16, 20]);
    } finally {
      await store.close();
      tmp.remove();
    }
  });
});
