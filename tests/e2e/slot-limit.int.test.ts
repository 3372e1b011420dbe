// Acceptance 2 (issue 4): 200 core.arithmetic.multiply_add workflows on 1 worker with
// daemon.worker_process_slots = 10 all finish (parked parents hold no slot, so no deadlock), and at
// no moment are more than 10 running: watched in the store (rows in state `running`) and in the
// worker's heartbeats (slots used), which the supervisor reports.
import { type E2E, setupE2E, waitForTerminal, withLogs } from './helpers.js';

const N = 200;
const SLOTS = 10;
let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({
    name: 'slot-limit',
    options: { 'daemon.worker_process_slots': SLOTS },
  });
});

afterAll(async () => {
  await e2e?.cleanup();
});

test('200 multiply_add on 1 worker with 10 slots: all finished, never more than 10 running', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    await client.startDaemon({ numberWorkers: 1 });
    let maxRunningRows = 0;
    let maxSlotsUsed = 0;
    let maxActivePks = 0;
    let heartbeatsSeen = 0;
    let watching = true;
    const watchStore = (async () => {
      while (watching) {
        const running = await engine.listProcesses({ states: ['running'] });
        maxRunningRows = Math.max(maxRunningRows, running.length);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const watchHeartbeats = (async () => {
      // Until the run ends, and at least until a heartbeat was seen (a fast run, as on core.store,
      // can end before the worker's first heartbeat reaches the supervisor).
      while (watching || heartbeatsSeen === 0) {
        const status = await client.getStatus().catch(() => undefined);
        for (const w of status?.workers ?? []) {
          if (w.lastHeartbeatAt === null) continue;
          heartbeatsSeen++;
          expect(w.slotsTotal).toBe(SLOTS);
          maxSlotsUsed = Math.max(maxSlotsUsed, w.slotsUsed);
          maxActivePks = Math.max(maxActivePks, w.activePks.length);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const t0 = Date.now();
    try {
      await engine.submitMany(
        Array.from({ length: N }, (_, i) => ({
          type: 'core.arithmetic.multiply_add',
          inputs: { x: i, y: 3, z: 7 },
        })),
      );
      // Each workflow has one add child.
      await waitForTerminal(engine, 2 * N, {
        timeout: 180,
        interval: 0.5,
        what: `all ${N} workflows and their children to end`,
      });
    } finally {
      watching = false;
      await Promise.all([watchStore, watchHeartbeats]);
    }
    const elapsed = (Date.now() - t0) / 1000;
    const rows = [...(await e2e.rows()).values()];
    const workflows = rows.filter((r) => r.type === 'core.arithmetic.multiply_add');
    const children = rows.filter((r) => r.type === 'core.arithmetic.add');
    expect(workflows).toHaveLength(N);
    expect(children).toHaveLength(N);
    const wrong = workflows.filter((r) => {
      const { x, y, z } = r.inputs as { x: number; y: number; z: number };
      return r.state !== 'finished' || (r.outputs as { result?: number })?.result !== x * y + z;
    });
    expect(wrong.map((r) => `${r.pk}: ${r.state} ${JSON.stringify(r.outputs)}`)).toEqual([]);
    expect(children.every((r) => r.state === 'finished' && r.parentPk !== null)).toBe(true);
    expect(maxRunningRows).toBeLessThanOrEqual(SLOTS);
    expect(maxSlotsUsed).toBeLessThanOrEqual(SLOTS);
    expect(maxActivePks).toBeLessThanOrEqual(SLOTS);
    // The limit was actually reached for (the test proves something), and heartbeats were seen.
    expect(heartbeatsSeen).toBeGreaterThan(0);
    expect(Math.max(maxRunningRows, maxSlotsUsed)).toBeGreaterThanOrEqual(SLOTS / 2);
    console.log(
      `slot-limit: ${N} workflows + ${N} children finished in ${elapsed.toFixed(1)} s; ` +
        `peak running rows ${maxRunningRows}, peak slots used ${maxSlotsUsed}, ` +
        `peak active pks ${maxActivePks} (limit ${SLOTS})`,
    );
    await client.stopDaemon();
  });
}, 240_000);
