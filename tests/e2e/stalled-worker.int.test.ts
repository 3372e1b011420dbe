// Issue 12, "a stalled worker strands half its processes": a daemon of 2 workers with
// `daemon.lease_timeout` 3 s runs processes of 6 s when one worker stops answering, either
// stopped with SIGSTOP for 30 s or blocked in a body that holds its event loop for 30 s.
// - Every process the stalled worker held starts again on the other worker within the lease
//   timeout plus a few heartbeats (the reconciler re-sends until a live worker claims it; the
//   broker's 5 s heartbeat returns the stalled connection's deliveries), and finishes there while
//   the stalled worker is still stalled.
// - The supervisor finds the stalled worker unresponsive (no heartbeat for longer than the lease
//   timeout), SIGTERMs it and, since `daemon.graceful_timeout` is 40 s here, lets it wake first:
//   its late writes are refused (fencing) and logged; then it exits and is replaced, counted as a
//   restart with the reason `unresponsive`.
// - One committed result each: the rows taken over were committed once by the new owner and do
//   not change after the stalled worker wakes.
import { readFileSync } from 'node:fs';
import type { ProcessRecord } from '@aiida/engine';
import { isAlive } from '../support/processes.js';
import { waitFor } from '../support/wait-for.js';
import {
  type BodyEvent,
  type E2E,
  groupBy,
  setupE2E,
  waitForTerminal,
  withLogs,
} from './helpers.js';

const LEASE_TIMEOUT = 3;
const HEARTBEAT = 0.5;
const BODY_MS = 6000;
const STALL_MS = 30_000;
/** Milliseconds from the blocking body's start to its block. */
const BLOCK_AFTER_MS = 1500;
/**
 * Seconds from the stall to the restart of each of the stalled worker's processes on the other
 * worker: the lease timeout plus a few heartbeats, with room for a loaded 2-core machine.
 */
const TAKEOVER_BOUND = LEASE_TIMEOUT + 12;

let e2e: E2E;

beforeAll(async () => {
  e2e = await setupE2E({
    name: 'stalled-worker',
    options: {
      'daemon.lease_timeout': LEASE_TIMEOUT,
      'daemon.worker_heartbeat_interval': HEARTBEAT,
      // SIGKILL only 40 s after SIGTERM, so the stalled worker wakes up first and tries its late
      // writes (with the default, it is killed while it still stalls, which proves less).
      'daemon.graceful_timeout': 40,
      'engine.max_attempts': 5,
    },
  });
});

afterAll(async () => {
  await e2e?.cleanup();
});

/** The state letter of /proc/<pid>/stat (`T` = stopped), or undefined when gone. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

function starts(events: BodyEvent[]): Map<number, BodyEvent[]> {
  return groupBy(
    events.filter((e) => e.event === 'start'),
    (e) => e.pk,
  );
}

/** Waits until the daemon has two ready workers; returns them. */
async function twoReadyWorkers() {
  const status = await e2e.client.getStatus();
  const ready = status.workers.filter((w) => w.state === 'ready' && w.pid !== null);
  expect(ready).toHaveLength(2);
  return ready.map((w) => ({ index: w.index, pid: w.pid as number }));
}

/**
 * Waits until slot `index` runs a new, ready worker (not `oldPid`) that replaced the old one as
 * unresponsive; returns that slot's status.
 */
async function replacedAsUnresponsive(index: number, oldPid: number) {
  return waitFor(
    async () => {
      const status = await e2e.client.getStatus();
      const slot = status.workers.find((w) => w.index === index);
      return slot && slot.pid !== oldPid && slot.state === 'ready' ? slot : undefined;
    },
    { timeout: 90, interval: 0.5, what: `worker ${index} (pid ${oldPid}) to be replaced` },
  );
}

/** Lines of worker `index`'s log written by process `pid`. */
function workerLogLines(index: number, pid: number): string[] {
  return readFileSync(e2e.client.workerLogFile(index), 'utf8')
    .split('\n')
    .filter((line) => line.includes(`pid=${pid} `));
}

test('a worker stopped with SIGSTOP for 30 s: its processes finish on the other one within the bound, it is replaced as unresponsive, its late writes are refused', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    await client.startDaemon({ numberWorkers: 2 });
    const workers = await twoReadyWorkers();
    const submitted = await engine.submitMany(
      Array.from({ length: 20 }, (_, i) => ({ type: 'test.sleep', inputs: { ms: BODY_MS, x: i } })),
    );
    const pks = submitted.map((s) => s.pk);
    await waitFor(() => pks.every((pk) => starts(e2e.events()).has(pk)), {
      timeout: 30,
      interval: 0.1,
      what: 'all 20 processes to start',
    });
    // The victim: the worker that started the most of them.
    const byPid = groupBy(
      e2e.events().filter((e) => e.event === 'start'),
      (e) => e.pid,
    );
    const victim = [...workers].sort(
      (a, b) => (byPid.get(b.pid)?.length ?? 0) - (byPid.get(a.pid)?.length ?? 0),
    )[0]!;
    const other = workers.find((w) => w !== victim)!;
    const held = pks.filter((pk) => starts(e2e.events()).get(pk)?.[0]?.pid === victim.pid);
    // The fault bites: the victim holds processes that have not finished yet.
    expect(held.length).toBeGreaterThan(0);
    const rowsAtStop = await e2e.rows();
    expect(held.filter((pk) => rowsAtStop.get(pk)?.state !== 'running')).toEqual([]);

    const stoppedAt = Date.now();
    process.kill(victim.pid, 'SIGSTOP');
    let heldRows: ProcessRecord[] = [];
    let slowestTakeover = 0;
    try {
      // The fault bites: the kernel shows the victim stopped (a moment after the signal).
      await waitFor(() => procState(victim.pid) === 'T', {
        timeout: 5,
        interval: 0.05,
        what: `worker ${victim.pid} to show as stopped in /proc`,
      });
      await waitFor(
        async () => {
          const rows = await e2e.rows();
          return held.every((pk) => rows.get(pk)?.state === 'finished');
        },
        {
          timeout: STALL_MS / 1000 - 2,
          interval: 0.2,
          what: `the ${held.length} processes of the stopped worker to finish elsewhere`,
        },
      );
      // Finished while the victim was still stopped: the other worker did it.
      expect(procState(victim.pid)).toBe('T');
      const rows = await e2e.rows();
      heldRows = held.map((pk) => rows.get(pk)!);
      const all = starts(e2e.events());
      const takeovers = held.map((pk) => {
        const again = all.get(pk)?.find((e) => e.pid !== victim.pid);
        return { pk, after: again ? (again.t - stoppedAt) / 1000 : Number.POSITIVE_INFINITY };
      });
      expect(takeovers.filter(({ after }) => after > TAKEOVER_BOUND)).toEqual([]);
      slowestTakeover = Math.max(...takeovers.map(({ after }) => after));
      for (const pk of held) {
        const restarts = all.get(pk)!.filter((e) => e.pid !== victim.pid);
        expect(restarts.map((e) => e.pid)).toEqual([other.pid]);
      }
      // Still stopped at 30 s (the supervisor's SIGKILL comes only after the 40 s grace).
      await waitFor(() => Date.now() - stoppedAt >= STALL_MS, {
        timeout: STALL_MS / 1000 + 5,
        interval: 0.2,
        what: 'the stall to last 30 s',
      });
      expect(procState(victim.pid)).toBe('T');
    } finally {
      if (isAlive(victim.pid)) process.kill(victim.pid, 'SIGCONT');
    }

    const replaced = await replacedAsUnresponsive(victim.index, victim.pid);
    expect(replaced).toMatchObject({ restarts: 1, lastRestartReason: 'unresponsive' });
    expect(isAlive(victim.pid)).toBe(false);
    const supervisorLog = readFileSync(client.supervisorLogFile, 'utf8');
    expect(supervisorLog).toContain(`worker ${victim.index} (pid ${victim.pid}) is unresponsive`);

    // Its late writes were refused and logged; the committed rows did not change.
    const lines = workerLogLines(victim.index, victim.pid);
    expect(
      held.filter((pk) => !lines.some((l) => l.includes(`process ${pk}: lease lost`))),
    ).toEqual([]);
    const rowsAfter = await e2e.rows();
    expect(held.map((pk) => rowsAfter.get(pk))).toEqual(heldRows);
    // One committed result each, and a second owner only for the victim's processes.
    await waitForTerminal(engine, pks.length, { timeout: 30, interval: 0.2, what: 'all 20' });
    expect(pks.filter((pk) => rowsAfter.get(pk)?.state !== 'finished')).toEqual([]);
    expect(held.map((pk) => rowsAfter.get(pk)?.epoch)).toEqual(held.map(() => 2));
    const others = pks.filter((pk) => !held.includes(pk));
    expect(others.map((pk) => starts(e2e.events()).get(pk)?.length)).toEqual(others.map(() => 1));
    console.log(
      `stalled-worker (SIGSTOP): ${held.length} processes of worker ${victim.index} taken over, ` +
        `the last restarted ${slowestTakeover.toFixed(1)} s after the stop (bound ${TAKEOVER_BOUND} s)`,
    );
    await client.stopDaemon();
  });
}, 240_000);

test('a body that blocks its worker for 30 s: the processes running there finish on the other one within the bound, the worker is replaced as unresponsive, the body runs again', async () => {
  await withLogs(e2e, async () => {
    const { client, engine } = e2e;
    if (!client.isDaemonRunning) await client.startDaemon({ numberWorkers: 2 });
    const workers = await twoReadyWorkers();
    // A body that blocks its worker 1.5 s after it starts, submitted with 10 sleepers: whatever
    // the transport hands out (RabbitMQ round-robin, or one batch claim from the store), the
    // blocked worker holds sleepers of its own by then.
    const [blocker, ...rest] = await engine.submitMany([
      { type: 'test.block', inputs: { ms: STALL_MS, after: BLOCK_AFTER_MS } },
      ...Array.from({ length: 10 }, (_, i) => ({ type: 'test.sleep', inputs: { ms: 8000, x: i } })),
    ]);
    const sleepers = rest.map(({ pk }) => pk);
    await waitFor(() => sleepers.every((pk) => starts(e2e.events()).has(pk)), {
      timeout: 30,
      interval: 0.1,
      what: 'the 10 sleepers to start',
    });
    const started = await waitFor(
      () => e2e.events().find((e) => e.event === 'start' && e.pk === blocker!.pk),
      { timeout: 30, interval: 0.1, what: 'the blocking body to start' },
    );
    // The block itself begins BLOCK_AFTER_MS after the body's start.
    const blockStart = { ...started, t: started.t + BLOCK_AFTER_MS };
    const victim = workers.find((w) => w.pid === blockStart.pid);
    if (!victim) throw new Error(`no worker with pid ${blockStart.pid}`);
    const held = sleepers.filter((pk) => starts(e2e.events()).get(pk)?.[0]?.pid === victim.pid);
    // The fault bites: the blocked worker holds sleepers that have not finished.
    const rowsAtBlock = await e2e.rows();
    expect(held.filter((pk) => rowsAtBlock.get(pk)?.state === 'running').length).toBeGreaterThan(0);

    const mine = [blocker!.pk, ...sleepers];
    await waitFor(
      async () => {
        const now = await e2e.rows();
        return mine.every((pk) => now.get(pk)?.state === 'finished');
      },
      {
        timeout: STALL_MS / 1000 - 2,
        interval: 0.2,
        what: 'the blocker and the 10 sleepers to finish',
      },
    );
    const doneAfter = (Date.now() - blockStart.t) / 1000;
    // All done while the worker was still blocked: nothing of it came from the blocked worker.
    expect(doneAfter).toBeLessThan(STALL_MS / 1000);
    const rows = await e2e.rows();
    expect(rows.get(blocker!.pk)).toMatchObject({ state: 'finished', outputs: { attempt: 2 } });
    const all = starts(e2e.events());
    // The body ran again only after its owner lost its lease, on the other worker.
    const blockerStarts = all.get(blocker!.pk)!;
    expect(blockerStarts.map((e) => e.pid)).toEqual([victim.pid, expect.any(Number)]);
    expect(blockerStarts[1]!.pid).not.toBe(victim.pid);
    expect(blockerStarts[1]!.t - blockerStarts[0]!.t).toBeGreaterThanOrEqual(LEASE_TIMEOUT * 1000);
    // The sleepers held by the blocked worker started again on the other one within the bound.
    const late = held
      .map((pk) => {
        const again = all.get(pk)?.find((e) => e.pid !== victim.pid);
        return { pk, after: again ? (again.t - blockStart.t) / 1000 : Number.POSITIVE_INFINITY };
      })
      .filter(({ after }) => after > TAKEOVER_BOUND);
    expect(late).toEqual([]);
    const heldRows = held.map((pk) => rows.get(pk));

    const replaced = await replacedAsUnresponsive(victim.index, victim.pid);
    expect(replaced.lastRestartReason).toBe('unresponsive');
    expect(replaced.restarts).toBeGreaterThanOrEqual(1);
    // Its late writes (the blocker's first attempt, the sleepers it held) were refused and logged.
    const lines = workerLogLines(victim.index, victim.pid);
    expect(
      [blocker!.pk, ...held].filter(
        (pk) => !lines.some((l) => l.includes(`process ${pk}: lease lost`)),
      ),
    ).toEqual([]);
    const rowsAfter = await e2e.rows();
    expect(held.map((pk) => rowsAfter.get(pk))).toEqual(heldRows);
    expect(rowsAfter.get(blocker!.pk)).toEqual(rows.get(blocker!.pk));
    console.log(
      `stalled-worker (blocked loop): ${held.length} sleepers were on the blocked worker; ` +
        `the blocker and all sleepers finished ${doneAfter.toFixed(1)} s after the block began`,
    );
    await client.stopDaemon();
  });
}, 240_000);
