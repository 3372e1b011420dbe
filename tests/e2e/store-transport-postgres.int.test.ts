// Issue 10, acceptance 5: with process control core.store on PostgreSQL, two daemons of one
// database (two AIIDA_PATHs, as two hosts would have) share the queue through the store and
// LISTEN/NOTIFY. One is killed whole (supervisor and workers, SIGKILL by pid) while it runs
// processes; the other finishes everything, one committed result each, and re-runs only what the
// killed one held. The daemons' only TCP connections are to PostgreSQL (port 5432).

import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { isAlive } from '../support/processes.js';
import { tcpSocketsOf } from '../support/sockets.js';
import { waitFor } from '../support/wait-for.js';
import {
  type BodyEvent,
  type E2E,
  groupBy,
  readyWorkerPids,
  setupE2E,
  waitForTerminal,
  withLogs,
} from './helpers.js';

const SLEEPS = 120;
const WORKFLOWS = 30;
let db: TestDatabase;
let a: E2E;
let b: E2E;

beforeAll(async () => {
  db = await createTestDatabase();
  const init = {
    storage: db.storage,
    processControl: 'core.store' as const,
    options: { 'daemon.worker_process_slots': 10 },
  };
  a = await setupE2E({ name: 'storeq-a', ...init });
  b = await setupE2E({ name: 'storeq-b', ...init });
});

afterAll(async () => {
  await a?.cleanup();
  await b?.cleanup();
  await db?.drop();
});

test('two core.store daemons share one PostgreSQL queue; one killed whole mid-run, the other finishes all', async () => {
  await withLogs(b, () =>
    withLogs(a, async () => {
      expect(a.engine.store.backend).toBe('core.psql');
      await a.client.startDaemon({ numberWorkers: 2 });
      await b.client.startDaemon({ numberWorkers: 2 });
      const workersA = await waitFor(
        async () =>
          (await readyWorkerPids(a.client)).length === 2 ? readyWorkerPids(a.client) : undefined,
        { timeout: 30, what: "daemon A's 2 workers" },
      );
      const workersB = await waitFor(
        async () =>
          (await readyWorkerPids(b.client)).length === 2 ? readyWorkerPids(b.client) : undefined,
        { timeout: 30, what: "daemon B's 2 workers" },
      );
      // Submitted through daemon A's profile; both daemons take from the one database.
      const sleeps = await a.engine.submitMany(
        Array.from({ length: SLEEPS }, (_, i) => ({
          type: 'test.sleep',
          inputs: { ms: 300 + (i % 5) * 100, x: i },
        })),
      );
      const flows = await a.engine.submitMany(
        Array.from({ length: WORKFLOWS }, (_, i) => ({
          type: 'core.arithmetic.multiply_add',
          inputs: { x: i, y: 3, z: 7 },
        })),
      );
      const events = (): BodyEvent[] => [...a.events(), ...b.events()];
      // Both daemons took work, and A holds some unfinished bodies: then kill A whole.
      const runningOnA = await waitFor(
        () => {
          const all = events();
          const starts = all.filter((e) => e.event === 'start');
          if (!starts.some((e) => workersB.includes(e.pid))) return undefined;
          const ended = new Set(
            all.filter((e) => e.event === 'end').map((e) => `${e.pk}/${e.epoch}`),
          );
          const open = starts.filter(
            (e) => workersA.includes(e.pid) && !ended.has(`${e.pk}/${e.epoch}`),
          );
          return open.length >= 3 ? open.map((e) => e.pk) : undefined;
        },
        { timeout: 60, interval: 0.02, what: 'both daemons to run bodies, 3 of them on A' },
      );
      // While both run: every TCP socket of every daemon process goes to PostgreSQL.
      const notPostgres: string[] = [];
      let socketsSeen = 0;
      for (const pid of [...a.daemonPids(), ...b.daemonPids()]) {
        for (const s of tcpSocketsOf(pid)) {
          socketsSeen++;
          if (s.remotePort !== 5432) notPostgres.push(`pid ${pid} fd ${s.fd} port ${s.remotePort}`);
        }
      }
      expect(notPostgres).toEqual([]);
      expect(socketsSeen).toBeGreaterThan(0);
      const pidsA = a.daemonPids();
      for (const pid of pidsA) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      await waitFor(() => pidsA.every((pid) => !isAlive(pid)), {
        timeout: 10,
        what: 'daemon A to be gone',
      });
      const total = SLEEPS + 2 * WORKFLOWS;
      await waitForTerminal(b.engine, total, {
        timeout: 180,
        interval: 0.5,
        what: `all ${total} processes to end on daemon B`,
      });
      const rows = await b.rows();
      expect(rows.size).toBe(total);
      const bad = [...rows.values()].filter((r) => r.state !== 'finished' || r.exitStatus !== 0);
      expect(bad.map((r) => `${r.pk}: ${r.state} ${r.exception ?? ''}`)).toEqual([]);
      for (const s of sleeps)
        expect(rows.get(s.pk)?.outputs).toMatchObject({ x: expect.any(Number) });
      for (const [i, f] of flows.entries()) {
        expect(rows.get(f.pk)?.outputs).toMatchObject({ result: i * 3 + 7 });
      }
      // Every body that A was running when it died ran again on B, with a later epoch.
      const starts = groupBy(
        events().filter((e) => e.event === 'start'),
        (e) => e.pk,
      );
      for (const pk of runningOnA) {
        const list = starts.get(pk) ?? [];
        const last = list[list.length - 1]!;
        expect(workersB).toContain(last.pid);
        expect(last.epoch).toBeGreaterThan(1);
        expect(rows.get(pk)?.ownerLosses).toBeGreaterThanOrEqual(1);
      }
      // A body ran more than once only if A held it when it was killed.
      const rerun = [...starts.entries()].filter(([, list]) => list.length > 1).map(([pk]) => pk);
      for (const pk of rerun) {
        expect(starts.get(pk)!.some((e) => workersA.includes(e.pid))).toBe(true);
      }
      console.log(
        `store-transport-postgres: ${total} processes, ${runningOnA.length} interrupted on A and rerun on B, ${rerun.length} ran twice`,
      );
      await b.client.stopDaemon();
    }),
  );
}, 300_000);
