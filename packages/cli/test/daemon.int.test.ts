// `aiida daemon ...` and `aiida status` against the real RabbitMQ and real daemons, through the
// built bin. Every daemon this file starts is stopped in afterAll: `aiida daemon stop --all`, then
// by pid the supervisors that `daemon status --json` named.
import { isAlive } from '../../../tests/support/processes.js';
import { withLogTails } from '../../../tests/support/test-profile.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import { CliSandbox, collect, prestoWithTestOptions, shown, waitForOutput } from './cli.js';

interface StatusJson {
  profile: string;
  running: boolean;
  status: {
    pid: number;
    numberWorkers: number;
    workers: {
      index: number;
      pid: number | null;
      state: string;
      slotsUsed: number;
      slotsTotal: number;
    }[];
  } | null;
  error: { code: string; message: string } | null;
}

describe('aiida daemon', () => {
  let sandbox: CliSandbox;
  const supervisors: number[] = [];
  const PROFILE = 'daemon-test';

  async function status(profile = PROFILE): Promise<{ code: number | null; json: StatusJson }> {
    const result = await sandbox.run(['-p', profile, 'daemon', 'status', '--json']);
    const json = JSON.parse(result.stdout) as StatusJson;
    if (json.status) supervisors.push(json.status.pid);
    return { code: result.code, json };
  }

  function withLogs<T>(body: () => Promise<T>): Promise<T> {
    return withLogTails(() => sandbox.logs(PROFILE), body);
  }

  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-daemon-');
    await prestoWithTestOptions(sandbox, PROFILE);
  });
  afterAll(async () => {
    await sandbox.cleanUp(supervisors);
  });

  it('status of a daemon that is not running: one clear line, exit code 3; --json says so too', async () => {
    const text = await sandbox.run(['daemon', 'status']);
    expect(text.code).toBe(3);
    expect(text.stdout).toBe(`Profile: ${PROFILE}\n`);
    const lines = text.stderr.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^Error: The daemon for profile 'daemon-test' is not running/);
    expect(lines[1]).toBe('Hint: Start it with `aiida daemon start`.');
    const { code, json } = await status();
    expect(code).toBe(3);
    expect(json).toMatchObject({ profile: PROFILE, running: false, status: null });
    expect(json.error?.code).toBe('not_running');
  });

  it('commands that need a running daemon say it is not running, exit code 3', async () => {
    for (const args of [
      ['daemon', 'incr'],
      ['daemon', 'decr'],
      ['daemon', 'restart'],
    ]) {
      const result = await sandbox.run(args);
      expect(result.code).toBe(3);
      expect(result.stderr).toMatch(
        /^Error: The daemon (for|of) profile 'daemon-test' is not running/,
      );
    }
  });

  it('start 10000: refused before anything starts, naming daemon.max_workers, exit code 2', async () => {
    const result = await sandbox.run(['daemon', 'start', '10000']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      /^Error: Cannot start the daemon with 10000 workers: the option daemon\.max_workers of profile 'daemon-test' allows at most \d+ workers per daemon\./,
    );
    expect(result.stderr).toContain('aiida config set daemon.max_workers 10000');
    const { code, json } = await status();
    expect(code).toBe(3);
    expect(json.running).toBe(false);
  });

  it('stop of a daemon that is not running is OK', async () => {
    const result = await sandbox.run(['daemon', 'stop']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `Profile: ${PROFILE}\nStopping the daemon... OK (it was not running)\n`,
    );
  });

  it('start 2: "Starting the daemon with 2 workers... OK", then status shows both ready', async () => {
    await withLogs(async () => {
      const start = await sandbox.run(['daemon', 'start', '2']);
      expect(start.code).toBe(0);
      expect(start.stdout).toBe('Starting the daemon with 2 workers... OK\n');
      const { code, json } = await status();
      expect(code).toBe(0);
      expect(json.running).toBe(true);
      expect(json.status?.workers).toHaveLength(2);
      expect(json.status?.workers.every((w) => w.state === 'ready' && w.pid !== null)).toBe(true);
      expect(json.status?.workers.every((w) => w.slotsTotal === 200)).toBe(true);

      const text = await sandbox.run(['daemon', 'status']);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(
        new RegExp(`^Daemon is running as PID ${json.status?.pid} since `, 'm'),
      );
      expect(text.stdout).toContain('Active workers [2]:');
      expect(text.stdout).toMatch(
        /#\s+PID\s+state\s+CPU %\s+memory\s+started\s+uptime\s+restarts\s+slots/,
      );
      for (const w of json.status?.workers ?? []) {
        expect(text.stdout).toMatch(
          new RegExp(`^\\s*${w.index}\\s+${w.pid}\\s+ready\\s+.*\\s0 / 200$`, 'm'),
        );
      }
      expect(text.stdout).toContain('Slots in use: 0 of 400');
      expect(text.stderr).toBe('');
    });
  });

  it('start again: the daemon is already running, exit code 1', async () => {
    const result = await sandbox.run(['daemon', 'start']);
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('Starting the daemon with 1 worker... FAILED\n');
    expect(result.stderr).toMatch(/^Error: .*already running/);
  });

  it('a profile whose daemon runs is not deleted', async () => {
    const result = await sandbox.run(['profile', 'delete', PROFILE, '-y']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^Error: The daemon of profile 'daemon-test' is running; it was not deleted\./,
    );
    expect(result.stderr).toContain('aiida -p daemon-test daemon stop');
    expect(sandbox.profiles()).toContain(PROFILE);
  });

  it('aiida status: ticks for config, profile, storage, broker (with version) and daemon', async () => {
    const text = await sandbox.run(['status']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ ✔ config: +.*\.aiida$/m);
    expect(text.stdout).toMatch(/^ ✔ profile: +daemon-test$/m);
    expect(text.stdout).toMatch(/^ ✔ storage: +/m);
    expect(text.stdout).toMatch(
      /^ ✔ broker: +RabbitMQ \d+\.\d+\.\d+ @ amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\//m,
    );
    expect(text.stdout).toMatch(/^ ✔ daemon: +Daemon is running with PID \d+, 2 workers ready$/m);
    const json = JSON.parse((await sandbox.run(['status', '--json'])).stdout);
    expect(json.ok).toBe(true);
    expect(json.checks.map((c: { service: string }) => c.service)).toEqual([
      'version',
      'config',
      'profile',
      'storage',
      'broker',
      'daemon',
    ]);
  });

  it('incr and decr scale the daemon and answer when done', async () => {
    await withLogs(async () => {
      const incr = await sandbox.run(['daemon', 'incr', '2']);
      expect(incr.stdout).toBe('Starting 2 daemon workers... OK\n');
      expect((await status()).json.status?.workers.filter((w) => w.state === 'ready')).toHaveLength(
        4,
      );
      const decr = await sandbox.run(['daemon', 'decr', '3']);
      expect(decr.stdout).toBe('Stopping 3 daemon workers... OK\n');
      expect((await status()).json.status?.workers).toHaveLength(1);
      const one = await sandbox.run(['daemon', 'incr']);
      expect(one.stdout).toBe('Starting 1 daemon worker... OK\n');
      const tooMany = await sandbox.run(['daemon', 'incr', '1000']);
      expect(tooMany.code).toBe(2);
      expect(tooMany.stderr).toMatch(
        /^Error: Cannot add 1000 workers to the 2 running: the option daemon\.max_workers/,
      );
      expect((await status()).json.status?.workers).toHaveLength(2);
    });
  });

  it('restart replaces the workers under the same supervisor; --reset starts a new one', async () => {
    await withLogs(async () => {
      const before = (await status()).json.status;
      const restart = await sandbox.run(['daemon', 'restart']);
      expect(restart.code).toBe(0);
      expect(restart.stdout).toBe('Restarting the daemon workers... OK\n');
      const after = (await status()).json.status;
      expect(after?.pid).toBe(before?.pid);
      const oldPids = new Set(before?.workers.map((w) => w.pid));
      expect(after?.workers).toHaveLength(2);
      expect(after?.workers.some((w) => oldPids.has(w.pid))).toBe(false);

      const reset = await sandbox.run(['daemon', 'restart', '--reset']);
      expect(reset.code).toBe(0);
      expect(reset.stdout).toBe('Restarting the daemon with 1 worker (reset)... OK\n');
      const fresh = (await status()).json.status;
      expect(fresh?.pid).not.toBe(before?.pid);
      expect(fresh?.workers).toHaveLength(1);
      expect(isAlive(before?.pid as number)).toBe(false);
    });
  });

  it('logshow shows the supervisor log and a worker log; -f follows new lines', async () => {
    const supervisor = await sandbox.run(['daemon', 'logshow', '-n', '5']);
    expect(supervisor.code).toBe(0);
    expect(supervisor.stdout).toMatch(/supervisor\.log\n/);
    expect(supervisor.stdout.trim().split('\n').length).toBeLessThanOrEqual(6);
    const worker = await sandbox.run(['daemon', 'logshow', '--worker', '0']);
    expect(worker.code).toBe(0);
    expect(worker.stdout).toContain('worker-0.log');
    expect(worker.stdout).toMatch(/ready/);
    const missing = await sandbox.run(['daemon', 'logshow', '--worker', '42']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^Error: No log file at .*worker-42\.log\./);

    const follow = sandbox.spawn(['daemon', 'logshow', '-f', '-n', '1']);
    const done = collect(follow, 60, ['daemon', 'logshow', '-f']);
    try {
      await waitForOutput(follow, 'supervisor.log');
      const started = waitForOutput(follow, /worker 1 started/);
      const incr = await sandbox.run(['daemon', 'incr']);
      expect(incr.code).toBe(0);
      await started;
    } finally {
      follow.kill('SIGINT');
    }
    const result = await done;
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    await sandbox.run(['daemon', 'decr']);
  });

  it('status --all covers every profile; exit code 3 if any is not running', async () => {
    await sandbox.run(['-p', 'idle', 'presto']);
    await sandbox.run(['profile', 'set-default', PROFILE]);
    const result = await sandbox.run(['daemon', 'status', '--all', '--json']);
    expect(result.code).toBe(3);
    const all = JSON.parse(result.stdout) as StatusJson[];
    expect(all.map((s) => [s.profile, s.running])).toEqual([
      [PROFILE, true],
      ['idle', false],
    ]);
  });

  it('stop: "Stopping the daemon... OK"; the supervisor and its workers are gone', async () => {
    const before = (await status()).json.status;
    const stop = await sandbox.run(['daemon', 'stop']);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toBe(`Profile: ${PROFILE}\nStopping the daemon... OK\n`);
    expect(isAlive(before?.pid as number)).toBe(false);
    for (const w of before?.workers ?? []) expect(isAlive(w.pid as number)).toBe(false);
    expect((await status()).code).toBe(3);
  });

  it('start --foreground runs the daemon in this process until SIGTERM', async () => {
    await withLogs(async () => {
      const child = sandbox.spawn(['daemon', 'start', '1', '--foreground']);
      const done = collect(child, 60, ['daemon', 'start', '--foreground']);
      const running = await waitFor(
        async () => {
          const { json } = await status();
          return json.status?.workers[0]?.state === 'ready' ? json : undefined;
        },
        { timeout: 30, what: 'the foreground daemon to be ready' },
      );
      expect(running.status?.pid).toBe(child.pid);
      child.kill('SIGTERM');
      const result = await done;
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('Starting the daemon with 1 worker in the foreground');
      expect(result.stdout).toContain('The daemon stopped.');
      expect((await status()).code).toBe(3);
    });
  });

  it('worker runs one worker in the foreground until SIGINT, then drains and exits 0', async () => {
    const child = sandbox.spawn(['daemon', 'worker']);
    const done = collect(child, 60, ['daemon', 'worker']);
    await waitForOutput(child, /ready \(pid \d+, broker amqp:\/\/guest:\*\*\*@/);
    child.kill('SIGINT');
    const result = await done;
    expect(shown(result)).toContain('stopped');
    expect(result.code).toBe(0);
  });

  it('stop --all stops every profile’s daemon', async () => {
    await sandbox.run(['daemon', 'start', '1']);
    await sandbox.run(['-p', 'idle', 'daemon', 'start', '1']);
    const pids = [(await status()).json.status?.pid, (await status('idle')).json.status?.pid];
    expect(pids.every((pid) => pid !== undefined)).toBe(true);
    const result = await sandbox.run(['daemon', 'stop', '--all']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      `Profile: ${PROFILE}\nStopping the daemon... OK\nProfile: idle\nStopping the daemon... OK\n`,
    );
    const all = JSON.parse(
      (await sandbox.run(['daemon', 'status', '--all', '--json'])).stdout,
    ) as StatusJson[];
    expect(all.every((s) => !s.running)).toBe(true);
    for (const pid of pids) expect(isAlive(pid as number)).toBe(false);
  });
});
