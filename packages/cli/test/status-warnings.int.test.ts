// What `aiida daemon status` warns about, shown with a stand-in worker program (the supervisor's
// AIIDA_DAEMON_WORKER_PROGRAM): slot use above 90 %, and a crash-looping worker with its last
// stderr lines; and what `aiida daemon stop` says it waits for when slots are in use. Everything else is the real supervisor and the built bin.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../../tests/support/wait-for.js';
import { CliSandbox, prestoWithTestOptions, shown } from './cli.js';

const FAKE_WORKER = fileURLToPath(
  new URL('../../../tests/support/fake-worker.mjs', import.meta.url),
);

interface StatusJson {
  status: {
    pid: number;
    workers: {
      pid: number | null;
      state: string;
      slotsUsed: number;
      restarts: number;
      lastStderr: string[];
    }[];
  } | null;
}

describe('aiida daemon status warnings', () => {
  let sandbox: CliSandbox;
  const supervisors: number[] = [];

  async function statusJson(): Promise<StatusJson> {
    const json = JSON.parse(
      (await sandbox.run(['daemon', 'status', '--json'])).stdout,
    ) as StatusJson;
    if (json.status) supervisors.push(json.status.pid);
    return json;
  }

  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-warnings-');
    await prestoWithTestOptions(sandbox, 'warnings');
  });
  afterAll(async () => {
    await sandbox.cleanUp(supervisors);
  });

  it('warns when more than 90 % of the worker slots are in use', async () => {
    const env = { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER, FAKE_WORKER_MODE: 'busy' };
    const start = await sandbox.run(['daemon', 'start', '2'], { env });
    expect(start.code).toBe(0);
    await waitFor(
      async () => (await statusJson()).status?.workers.every((w) => w.slotsUsed === 190),
      { timeout: 20, what: 'both workers to report 190 slots in use' },
    );
    const text = await sandbox.run(['daemon', 'status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('Slots in use: 380 of 400');
    expect(text.stdout.match(/190 \/ 200$/gm)).toHaveLength(2);
    expect(text.stderr).toBe(
      "Warning: 95% of the daemon's worker slots are in use (380 of 400): new processes wait for a free slot. Add workers with `aiida daemon incr`.\n",
    );
    const list = await sandbox.run(['process', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(
      /^Report: Using 380 of 400 daemon worker slots \(95%\), 2 workers\.$/m,
    );
    expect(list.stderr).toContain("Warning: 95% of the daemon's worker slots are in use");
    expect((await sandbox.run(['daemon', 'stop'])).code).toBe(0);
  });

  it('`daemon stop` says what it waits for (running processes, workers, deadline), and nothing when idle', async () => {
    const busyEnv = { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER, FAKE_WORKER_MODE: 'busy' };
    expect((await sandbox.run(['daemon', 'start', '2'], { env: busyEnv })).code).toBe(0);
    await waitFor(
      async () => (await statusJson()).status?.workers.every((w) => w.slotsUsed === 190),
      { timeout: 20, what: 'both workers to report 190 slots in use' },
    );
    const before = Date.now();
    const stop = await sandbox.run(['daemon', 'stop']);
    expect({ code: stop.code, out: shown(stop) }).toEqual({ code: 0, out: shown(stop) });
    const wait =
      /^Waiting for 380 running processes on 2 workers to finish or checkpoint, until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) at the latest \(daemon\.graceful_timeout 3 s\); workers still running then are killed\.$/m.exec(
        stop.stdout,
      );
    expect({ wait: wait !== null, out: stop.stdout }).toEqual({ wait: true, out: stop.stdout });
    // The deadline is the graceful timeout (3 s, the test profile's) from now, in local time.
    const deadline = new Date(wait![1]!.replace(' ', 'T')).getTime();
    expect(deadline).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 2000);
    expect(deadline).toBeLessThanOrEqual(Date.now() + 3000);
    // The announcement comes before the stop itself.
    expect(stop.stdout.indexOf('Waiting for')).toBeLessThan(
      stop.stdout.indexOf('Stopping the daemon'),
    );

    expect(
      (
        await sandbox.run(['daemon', 'start', '1'], {
          env: { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER },
        })
      ).code,
    ).toBe(0);
    const idle = await sandbox.run(['daemon', 'stop']);
    expect(idle.code).toBe(0);
    expect(idle.stdout).not.toContain('Waiting for');
    expect(idle.stdout).toContain('Stopping the daemon... OK');
  });

  it('shows a crash-looping worker with its last stderr lines', async () => {
    const env = {
      AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER,
      FAKE_WORKER_MODE: 'crash-after-first',
      FAKE_WORKER_MARKER: join(sandbox.aiidaPath, 'first-start'),
      FAKE_WORKER_STDERR: 'fake worker: cannot connect to the broker\nfake worker: giving up',
    };
    const start = await sandbox.run(['daemon', 'start', '1'], { env });
    expect(start.code).toBe(0);
    const first = (await statusJson()).status?.workers[0];
    process.kill(first?.pid as number, 'SIGKILL');
    const looping = await waitFor(
      async () => {
        const worker = (await statusJson()).status?.workers[0];
        return worker?.state === 'crash-looping' && worker.lastStderr.length > 0
          ? worker
          : undefined;
      },
      { timeout: 30, what: 'the worker to be crash-looping' },
    );
    expect(looping.lastStderr).toContain('fake worker: giving up');
    const text = await sandbox.run(['daemon', 'status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^0\s+(-|\d+)\s+(crash-looping|starting)\s/m);
    expect(text.stderr).toMatch(
      /^Warning: worker 0 is crash-looping \(restarted \d+ times(; next attempt in \d+ s)?\)\. Its last stderr lines:\n {4}\| fake worker: cannot connect to the broker\n {4}\| fake worker: giving up\n/,
    );
    const status = await sandbox.run(['status']);
    expect(shown(status)).toMatch(
      /⏺ daemon: +Daemon is running with PID \d+, 0 workers ready, 1 crash-looping/,
    );
    const stop = await sandbox.run(['daemon', 'stop']);
    expect(stop.code).toBe(0);
  });
});
