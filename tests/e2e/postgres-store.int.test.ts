// Issue 9: a daemon of 2 workers on a core.psql profile (with RabbitMQ) runs a batch of adds and
// multiply_add workflows to completion, one committed result each.
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import {
  type E2E,
  setupE2E,
  waitForTerminal,
  withLogs,
  wrongArithmeticResults,
} from './helpers.js';

const ADDS = 300;
const WORKFLOWS = 100;
let db: TestDatabase;
let e2e: E2E;

beforeAll(async () => {
  db = await createTestDatabase();
  e2e = await setupE2E({ name: 'pg-store', storage: db.storage });
});

afterAll(async () => {
  await e2e?.cleanup();
  await db?.drop();
});

test(`${ADDS} adds and ${WORKFLOWS} multiply_add on 2 workers with a PostgreSQL store: all finished, correct`, async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    expect(engine.store.backend).toBe('core.psql');
    await client.startDaemon({ numberWorkers: 2 });
    const adds = await engine.submitMany(
      Array.from({ length: ADDS }, (_, i) => ({
        type: 'core.arithmetic.add',
        inputs: { x: i, y: 2 * i + 1 },
      })),
    );
    const workflows = await engine.submitMany(
      Array.from({ length: WORKFLOWS }, (_, i) => ({
        type: 'core.arithmetic.multiply_add',
        inputs: { x: i, y: 3, z: 7 },
      })),
    );
    expect(new Set([...adds, ...workflows].map((s) => s.pk)).size).toBe(ADDS + WORKFLOWS);
    // Each workflow has one add child.
    const total = ADDS + 2 * WORKFLOWS;
    await waitForTerminal(engine, total, {
      timeout: 240,
      interval: 0.5,
      what: `all ${total} processes to end`,
    });
    const rows = await e2e.rows();
    expect(rows.size).toBe(total);
    expect(wrongArithmeticResults(rows.values())).toEqual([]);
    // No owner was lost: every body ran once (a workflow is claimed again when its child wakes it).
    expect([...rows.values()].filter((r) => r.ownerLosses !== 0 || r.attempts !== 1)).toEqual([]);
    await client.stopDaemon();
  });
}, 300_000);
