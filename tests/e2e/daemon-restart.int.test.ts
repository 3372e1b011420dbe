// Acceptance 6 (issue 4): workflows of 3 steps record each step's executions; the daemon is stopped
// while they run, then started again. All finish; each step ran once, except the one step in flight
// at the stop, which ran at most twice (its first run before the stop, its second after the start).
import { waitFor } from '../support/wait-for.js';
import { type E2E, groupBy, seededRandom, setupE2E, waitForTerminal, withLogs } from './helpers.js';

const N = 20;
let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({ name: 'daemon-restart' });
});

afterAll(async () => {
  await e2e?.cleanup();
});

test('stop and start the daemon while 3-step workflows run: all finish, only the step in flight repeats', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    await client.startDaemon({ numberWorkers: 2 });
    const random = seededRandom(4);
    // Steps of 0.8 to 2 s: some end within the drain (released at the boundary), others are
    // interrupted by it (released as interrupted: that step runs again).
    const submitted = await engine.submitMany(
      Array.from({ length: N }, () => ({
        type: 'test.three_steps',
        inputs: { stepMs: 800 + Math.round(random() * 1200) },
      })),
    );
    const pks = submitted.map((s) => s.pk);
    // Stop once every workflow is past its first step.
    await waitFor(
      () => {
        const steps = e2e.events().filter((e) => e.event === 'step' && e.step === 'b');
        return new Set(steps.map((e) => e.pk)).size === N;
      },
      { timeout: 60, what: 'every workflow to start step b' },
    );
    const stopBegan = Date.now();
    await client.stopDaemon();
    const stopped = Date.now();
    const atStop = await e2e.rows();
    const activeAtStop = pks.filter((pk) => {
      const r = atStop.get(pk)!;
      return r.state !== 'finished' && r.state !== 'excepted' && r.state !== 'killed';
    });
    // Nothing holds them now: leases released by the drain (or left to expire).
    const eventsAtStop = e2e.events().length;

    await client.startDaemon({ numberWorkers: 2 });
    const restarted = Date.now();
    await waitForTerminal(engine, N, {
      timeout: 90,
      interval: 0.25,
      what: `all ${N} workflows to end`,
    });
    const rows = await e2e.rows();
    expect(pks.filter((pk) => rows.get(pk)?.state !== 'finished')).toEqual([]);
    expect(pks.every((pk) => (rows.get(pk)?.outputs as { steps?: number })?.steps === 3)).toBe(
      true,
    );

    const events = e2e.events();
    // Nothing ran while the daemon was down.
    expect(events.slice(eventsAtStop).every((e) => e.t >= restarted - 1000)).toBe(true);
    const problems: string[] = [];
    let repeated = 0;
    const byPk = groupBy(
      events.filter((e) => e.event === 'step'),
      (e) => e.pk,
    );
    for (const pk of pks) {
      const runs = groupBy(byPk.get(pk) ?? [], (e) => e.step);
      for (const step of ['a', 'b', 'c']) {
        if (!runs.has(step)) problems.push(`${pk}: step ${step} never ran`);
      }
      const twice = [...runs.entries()].filter(([, list]) => list.length > 1);
      for (const [step, list] of runs) {
        if (list.length > 2) problems.push(`${pk}: step ${step} ran ${list.length} times`);
      }
      if (twice.length > 1) {
        problems.push(`${pk}: steps ${twice.map(([s]) => s).join(', ')} all ran more than once`);
      }
      for (const [step, list] of twice) {
        repeated++;
        const [first, second] = list.sort((a, b) => a.t - b.t);
        // The repeated step is the one in flight at the stop: first run before, second after.
        if (!(first!.t < stopped && second!.t >= stopped)) {
          problems.push(`${pk}: step ${step} ran at ${first!.t} and ${second!.t}; stop ${stopped}`);
        }
        if (second!.attempt <= first!.attempt) {
          problems.push(`${pk}: step ${step} re-ran with attempt ${second!.attempt}`);
        }
      }
    }
    expect(problems).toEqual([]);
    // The stop really caught workflows in flight.
    expect(activeAtStop.length).toBeGreaterThan(0);
    console.log(
      `daemon-restart: stop took ${((stopped - stopBegan) / 1000).toFixed(1)} s with ` +
        `${activeAtStop.length} of ${N} workflows in flight; ${repeated} step(s) ran twice ` +
        `(interrupted by the drain), the others resumed from their checkpoint; all ${N} finished`,
    );
    await client.stopDaemon();
  });
}, 180_000);
