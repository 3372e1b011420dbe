// Issue 9 (chaos, serial: it restarts the PostgreSQL server everyone shares): PostgreSQL restarted
// mid-run under a daemon of 2 workers on a core.psql profile. The workers and the submitter
// reconnect on their own (the same worker processes carry on), nothing is lost, and every process
// ends with one committed, correct result.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { waitFor } from '../support/wait-for.js';
import {
  type E2E,
  readyWorkerPids,
  setupE2E,
  waitForTerminal,
  withLogs,
  wrongArithmeticResults,
} from './helpers.js';

const FIRST = 400;
const SECOND = 200;
const WORKFLOWS = 50;
let db: TestDatabase;
let e2e: E2E;

beforeAll(async () => {
  db = await createTestDatabase();
  e2e = await setupE2E({ name: 'pg-restart', storage: db.storage });
});

afterAll(async () => {
  // The server must answer again before the database can be dropped.
  await waitFor(() => pgIsReady(), { what: 'PostgreSQL to answer again', timeout: 60 });
  await e2e?.cleanup();
  await db?.drop();
});

async function pgIsReady(): Promise<boolean> {
  try {
    await promisify(execFile)('pg_isready', ['-q', '-h', '127.0.0.1', '-p', '5432']);
    return true;
  } catch {
    return false;
  }
}

const adds = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    type: 'core.arithmetic.add',
    inputs: { x: from + i, y: 1 },
  }));

test('PostgreSQL restarted mid-run: workers and submitter reconnect, every process ends once, correct', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    await client.startDaemon({ numberWorkers: 2 });
    const workersBefore = (await readyWorkerPids(client)).sort();
    expect(workersBefore).toHaveLength(2);
    const first = await engine.submitMany([
      ...adds(0, FIRST),
      ...Array.from({ length: WORKFLOWS }, (_, i) => ({
        type: 'core.arithmetic.multiply_add',
        inputs: { x: i, y: 3, z: 7 },
      })),
    ]);
    // Restart while the first batch is in flight.
    await waitFor(
      async () =>
        (await engine.listProcesses({ states: ['finished'], limit: 50 })).length >= 50 || undefined,
      { what: 'the first 50 processes to finish', timeout: 120 },
    );
    await promisify(execFile)('pg_ctlcluster', ['15', 'main', 'restart'], { timeout: 120_000 });
    // The submitter's pool reconnects on its own: a submit succeeds again once the server is up.
    // The restart is over when this runs, so a store error here is a connection that died with
    // the old server failing at BEGIN: nothing was committed, and the submit is tried again.
    const second = await waitFor(
      async () => {
        try {
          return await engine.submitMany(adds(FIRST, SECOND));
        } catch (error) {
          if ((error as { code?: string }).code !== 'store_error') throw error;
          return undefined;
        }
      },
      { what: 'a submit after the restart', timeout: 60, interval: 0.5 },
    );
    const total = FIRST + SECOND + 2 * WORKFLOWS;
    expect(first.length + second.length + WORKFLOWS).toBe(total);
    await waitForTerminal(engine, total, {
      timeout: 240,
      interval: 0.5,
      what: `all ${total} processes to end after the restart`,
    });
    const rows = await e2e.rows();
    expect(rows.size).toBe(total);
    expect(wrongArithmeticResults(rows.values())).toEqual([]);
    // The same two worker processes did it all: they reconnected rather than being revived.
    expect((await readyWorkerPids(client)).sort()).toEqual(workersBefore);
    await client.stopDaemon();
  });
}, 420_000);
