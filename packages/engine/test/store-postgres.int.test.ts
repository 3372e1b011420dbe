import {
  calculation,
  POSTGRES_SCHEMA_VERSION,
  PostgresProcessStore,
  ProcessExecutor,
  ProcessRegistry,
  Reconciler,
} from '@aiida/engine';
import pg from 'pg';
import { z } from 'zod';
import {
  createTestDatabase,
  PG_ADMIN,
  type TestDatabase,
} from '../../../tests/support/postgres.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import { describeStoreContract } from './store-contract.js';

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

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
      await db.admin(
        `UPDATE workers SET started_at = started_at - ${d}, last_heartbeat_at = last_heartbeat_at - ${d}`,
      );
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

describe('PostgresProcessStore: leases on the database clock', () => {
  let db: TestDatabase;
  const stores: PostgresProcessStore[] = [];
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    await db.drop();
  });

  async function open(): Promise<PostgresProcessStore> {
    const s = await openPg(db);
    stores.push(s);
    return s;
  }

  /** A calculation whose body holds until its lease is lost (its signal fires). */
  function holdingRegistry(): ProcessRegistry {
    const registry = new ProcessRegistry();
    registry.register(
      calculation({
        name: 'test.hold',
        inputs: z.object({}),
        outputs: z.object({}),
        run: (_inputs, ctx) =>
          new Promise((_resolve, reject) => {
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
          }),
      }),
    );
    return registry;
  }

  function worker(
    store: PostgresProcessStore,
    ownerId: string,
    shiftMinutes: number,
    registry: ProcessRegistry,
  ): ProcessExecutor {
    return new ProcessExecutor({
      store,
      registry,
      ownerId,
      leaseTimeout: 2,
      maxAttempts: 5,
      killGrace: 0.5,
      logger: silent,
      clock: { now: () => Date.now() + shiftMinutes * 60_000 },
    });
  }

  test("two hosts' reconcilers on one database: one leads and dispatches; the other takes over once the leader stops renewing", async () => {
    const published: Record<string, number[]> = { alpha: [], beta: [] };
    const reconcilerOf = async (host: 'alpha' | 'beta') =>
      new Reconciler({
        store: await open(),
        ownerId: `${host}:1:x`,
        leaseTimeout: 4,
        neverDispatchedGrace: 0,
        dispatcher: {
          publishContinue: async (pk) => {
            published[host]!.push(pk);
          },
          publishContinueMany: async (pks) => {
            published[host]!.push(...pks);
          },
        },
        logger: silent,
      });
    const alpha = await reconcilerOf('alpha');
    const beta = await reconcilerOf('beta');
    const submitter = await open();
    const [first] = await submitter.createProcesses([{ type: 'test.hold', inputs: {} }]);
    expect((await alpha.tick()).leader).toBe(true);
    expect(await beta.tick()).toEqual({ leader: false, dispatched: [], killed: [] });
    expect(published).toEqual({ alpha: [first!.pk], beta: [] });
    // alpha renews within its lease: beta stays out.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await alpha.tick()).leader).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect((await beta.tick()).leader).toBe(false);
    // alpha stops; once its lease (4 s on the database clock) lapses, beta leads and works.
    const [second] = await submitter.createProcesses([{ type: 'test.hold', inputs: {} }]);
    await waitFor(async () => (await beta.tick()).leader, {
      timeout: 10,
      what: 'beta to be elected after alpha stopped renewing',
    });
    expect(published.beta).toContain(second!.pk);
    expect((await alpha.tick()).leader).toBe(false);
  });

  test('a worker whose clock is minutes off neither steals a live lease nor keeps an expired one', async () => {
    const registry = holdingRegistry();
    const submitter = await open();
    const [a, b] = await submitter.createProcesses([
      { type: 'test.hold', inputs: {} },
      { type: 'test.hold', inputs: {} },
    ]);
    const behind = worker(await open(), 'behind', -10, registry);
    const ahead = worker(await open(), 'ahead', +10, registry);

    // `behind` holds a: by the clock of `ahead` that lease ended 10 minutes ago, yet it is live.
    const ca = await behind.claim(a!.pk);
    if (!ca.claimed) throw new Error(`claim a: ${ca.reason}`);
    const runA = ca.run();
    expect(await ahead.claim(a!.pk)).toMatchObject({ claimed: false, reason: 'owned' });
    // `ahead` holds b: by the clock of `behind` that lease runs 10 more minutes.
    const cb = await ahead.claim(b!.pk);
    if (!cb.claimed) throw new Error(`claim b: ${cb.reason}`);
    const runB = cb.run();
    expect(await behind.claim(b!.pk)).toMatchObject({ claimed: false, reason: 'owned' });

    // No heartbeats: both leases expire after 2 s of the database's time; each is taken over.
    let takenA: Awaited<ReturnType<ProcessExecutor['claim']>> | undefined;
    await waitFor(
      async () => {
        takenA = await ahead.claim(a!.pk);
        return takenA.claimed;
      },
      { what: `'ahead' taking over process ${a!.pk}`, timeout: 20 },
    );
    let takenB: Awaited<ReturnType<ProcessExecutor['claim']>> | undefined;
    await waitFor(
      async () => {
        takenB = await behind.claim(b!.pk);
        return takenB.claimed;
      },
      {
        what: `'behind' taking over process ${b!.pk} (its clock says 10 more minutes)`,
        timeout: 20,
      },
    );
    if (!takenA?.claimed || !takenB?.claimed) throw new Error('unreachable');
    expect(takenA.lease).toMatchObject({ epoch: 2, attempt: 2 });
    expect(takenB.lease).toMatchObject({ epoch: 2, attempt: 2 });

    // The previous owners learn on their next renewal that the leases are gone: bodies aborted.
    const lostBehind = await behind.renewAll();
    const lostAhead = await ahead.renewAll();
    expect(lostBehind.lost).toContain(a!.pk);
    expect(lostAhead.lost).toContain(b!.pk);
    expect(await runA).toBe('lease_lost');
    expect(await runB).toBe('lease_lost');
    // And their late writes are refused.
    await expect(
      submitter.complete(ca.lease, { state: 'finished', outputs: {} }),
    ).rejects.toMatchObject({
      code: 'lease_lost',
    });
    expect(await submitter.getProcess(a!.pk)).toMatchObject({ owner: 'ahead', epoch: 2 });
    expect(await submitter.getProcess(b!.pk)).toMatchObject({ owner: 'behind', epoch: 2 });
    // Stop the new owners: their bodies end on the shutdown signal and the leases are released.
    await behind.drain(1);
    await ahead.drain(1);
  });

  test('a claim that waited for a row lock gets its whole lease, counted from its write', async () => {
    const store = await open();
    const [row] = await store.createProcesses([
      { type: 'core.arithmetic.add', inputs: { x: 1, y: 2 } },
    ]);
    // Another session holds the row, as a host cut off mid-transaction would, for 3 s.
    const holder = new pg.Client({ ...PG_ADMIN, database: db.database });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT * FROM processes WHERE pk = $1 FOR UPDATE', [row!.pk]);
      const claim = store.claim(row!.pk, 'waiter', 5, { maxAttempts: 5 });
      await waitFor(
        async () => {
          const r = await db.admin(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
          );
          return r.rows[0].n > 0;
        },
        { what: 'the claim to wait for the lock' },
      );
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await holder.query('COMMIT');
      const result = await claim;
      expect(result.ok).toBe(true);
      const r = await db.admin(
        `SELECT lease_expires_at - (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS left_ms
           FROM processes WHERE pk = $1`,
        [row!.pk],
      );
      // Counted from the transaction's start, less than 2 s would be left; from the write, ~5 s.
      expect(Number(r.rows[0].left_ms)).toBeGreaterThan(4000);
    } finally {
      await holder.end();
    }
  });

  test('4 claimers with their own pools racing for the same rows never hand a process to two owners', async () => {
    const submitter = await open();
    const rows = await submitter.createProcesses(
      Array.from({ length: 200 }, (_, i) => ({
        type: 'core.arithmetic.add',
        inputs: { x: i, y: 1 },
      })),
    );
    const pks = rows.map((r) => r.pk);
    const claimers = await Promise.all([open(), open(), open(), open()]);
    const granted = new Map<number, string[]>();
    await Promise.all(
      claimers.map(async (store, i) => {
        const owner = `w${i}`;
        // Each claimer walks the rows in its own order, in batches and one by one.
        const order = i % 2 === 0 ? [...pks] : [...pks].reverse();
        for (let k = 0; k < order.length; k += 10) {
          const batch = order.slice(k, k + 10);
          const results =
            i < 2
              ? await store.claimMany(batch, owner, 60, { maxAttempts: 5 })
              : await Promise.all(
                  batch.map((pk) => store.claim(pk, owner, 60, { maxAttempts: 5 })),
                );
          results.forEach((r, j) => {
            if (r.ok) granted.set(batch[j]!, [...(granted.get(batch[j]!) ?? []), owner]);
            else expect(r.reason).toBe('owned');
          });
        }
      }),
    );
    expect(granted.size).toBe(pks.length);
    const doubles = [...granted].filter(([, owners]) => owners.length !== 1);
    expect(doubles).toEqual([]);
    const stored = await submitter.getProcesses(pks);
    for (const row of stored) {
      expect(row.epoch).toBe(1);
      expect(row.owner).toBe(granted.get(row.pk)![0]);
    }
  });
});
