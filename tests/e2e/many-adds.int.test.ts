// Acceptance 1 (issue 4): 1,000 core.arithmetic.add submitted to a daemon of 2 workers all finish
// with correct sums, each with one committed terminal row.
import { type E2E, setupE2E, waitForTerminal, withLogs } from './helpers.js';

const N = 1000;
let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({ name: 'many-adds' });
});

afterAll(async () => {
  await e2e?.cleanup();
});

test('1,000 core.arithmetic.add on 2 workers: all finished with correct sums', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    await client.startDaemon({ numberWorkers: 2 });
    const t0 = Date.now();
    const submitted = await engine.submitMany(
      Array.from({ length: N }, (_, i) => ({
        type: 'core.arithmetic.add',
        inputs: { x: i, y: 2 * i + 1 },
      })),
    );
    expect(new Set(submitted.map((s) => s.pk)).size).toBe(N);
    await waitForTerminal(engine, N, {
      timeout: 120,
      interval: 0.25,
      what: `all ${N} processes to end`,
    });
    const elapsed = (Date.now() - t0) / 1000;
    const rows = await e2e.rows();
    expect(rows.size).toBe(N);
    const wrong = [...rows.values()].filter((row) => {
      const { x, y } = row.inputs as { x: number; y: number };
      return (
        row.state !== 'finished' ||
        row.exitStatus !== 0 ||
        (row.outputs as { sum?: number } | null)?.sum !== x + y
      );
    });
    expect(wrong.map((r) => `${r.pk}: ${r.state} ${JSON.stringify(r.outputs)}`)).toEqual([]);
    // Each ran once: one claim (epoch 1), nothing left owned.
    expect([...rows.values()].filter((r) => r.epoch !== 1 || r.owner !== null)).toEqual([]);
    console.log(`many-adds: ${N} processes finished in ${elapsed.toFixed(1)} s on 2 workers`);
    await client.stopDaemon();
  });
}, 180_000);
