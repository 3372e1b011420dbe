import { POSTGRES_SCHEMA_VERSION, PostgresProcessStore } from '@aiida/engine';
import { createTestDatabase, type TestDatabase } from '../../../tests/support/postgres.js';
import { describeStoreContract } from './store-contract.js';

const TIME_COLUMNS = [
  'created_at',
  'modified_at',
  'started_at',
  'finished_at',
  'lease_expires_at',
  'dispatched_at',
];

function openPg(db: TestDatabase): Promise<PostgresProcessStore> {
  return PostgresProcessStore.open({ connection: db });
}

describeStoreContract('core.psql', async () => {
  const db = await createTestDatabase();
  return {
    open: () => openPg(db),
    // The store reads the database's clock, which a test cannot move: shift every stored time
    // back instead, which is the same for every rule.
    advance: async (seconds) => {
      const d = Math.round(seconds * 1000);
      await db.admin(
        `UPDATE processes SET ${TIME_COLUMNS.map((c) => `${c} = ${c} - ${d}`).join(', ')}`,
      );
      await db.admin(`UPDATE control_intents SET created_at = created_at - ${d}`);
      await db.admin(`UPDATE reports SET time = time - ${d}`);
      await db.admin(`UPDATE leader_lease SET lease_expires_at = lease_expires_at - ${d}`);
    },
    setSchemaVersion: async (version) => {
      await db.admin('DELETE FROM schema_version WHERE version > $1', [version]);
      await db.admin('INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)', [version]);
    },
    dispose: () => db.drop(),
  };
});

describe('PostgresProcessStore', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db.drop();
  });

  test('migrates a new database to the current schema version; the location hides the password', async () => {
    const store = await openPg(db);
    try {
      expect(store.schemaVersion).toBe(POSTGRES_SCHEMA_VERSION);
      expect(store.location).toBe(
        `postgresql://${db.username}@${db.hostname}:${db.port}/${db.database}`,
      );
      expect(store.location).not.toContain(db.password);
      const rows = await db.admin('SELECT MAX(version) AS v FROM schema_version');
      expect(rows.rows[0]).toEqual({ v: POSTGRES_SCHEMA_VERSION });
    } finally {
      await store.close();
    }
  });

  test('an unreachable server or a missing database is a store_error naming the store, not the password', async () => {
    const missing = { ...db, database: `${db.database}_missing` };
    await expect(PostgresProcessStore.open({ connection: missing })).rejects.toMatchObject({
      code: 'store_error',
      message: expect.stringContaining(`${db.database}_missing`),
    });
    const closedPort = { ...db, port: 1 };
    let error: unknown;
    try {
      await PostgresProcessStore.open({ connection: closedPort, connectTimeout: 2 });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'store_error' });
    expect((error as Error).message).toContain(':1/');
    expect((error as Error).message).not.toContain(db.password);
  });

  test('opened by several processes at once, the schema is migrated once', async () => {
    const stores = await Promise.all([openPg(db), openPg(db), openPg(db)]);
    await Promise.all(stores.map((s) => s.close()));
    const rows = await db.admin('SELECT COUNT(*)::int AS n FROM schema_version');
    expect(rows.rows[0]).toEqual({ n: POSTGRES_SCHEMA_VERSION });
  });
});
