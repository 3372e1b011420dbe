// One full session as a user types it, through the built bin, against the real RabbitMQ:
// presto, daemon start 2, submit 50 calculations and wait, list, daemon status, daemon stop.
import { isAlive } from '../../../tests/support/processes.js';
import { CliSandbox, shown } from './cli.js';

interface Row {
  pk: number;
  type: string;
  state: string;
  exitStatus: number | null;
  inputs: { x: number; y: number };
  outputs: { sum: number } | null;
}

interface StatusJson {
  running: boolean;
  status: {
    pid: number;
    workers: { pid: number | null; state: string; slotsUsed: number; slotsTotal: number }[];
  } | null;
}

describe('a full session', () => {
  let sandbox: CliSandbox;
  const supervisors: number[] = [];

  async function step(args: string[], timeout = 120) {
    const result = await sandbox.run(args, { timeout });
    if (result.code !== 0) {
      throw new Error(`aiida ${args.join(' ')}\n${shown(result)}\n\n${sandbox.logs('session')}`);
    }
    return result;
  }

  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-session-');
  });
  afterAll(async () => {
    await sandbox.cleanUp(supervisors);
  });

  it('presto, daemon start 2, submit --count 50 --wait, process list, daemon status, daemon stop', async () => {
    const presto = await step(['-p', 'session', 'presto']);
    expect(presto.stdout).toContain('Success: Created new profile `session`');
    // Short, safe timings for a 2-core machine (see TESTING.md).
    await step(['config', 'set', 'daemon.graceful_timeout', '3']);
    await step(['config', 'set', 'daemon.worker_heartbeat_interval', '0.5']);

    const start = await step(['daemon', 'start', '2']);
    expect(start.stdout).toBe('Starting the daemon with 2 workers... OK\n');
    const running = JSON.parse((await step(['daemon', 'status', '--json'])).stdout) as StatusJson;
    supervisors.push(running.status?.pid as number);
    expect(running.status?.workers).toHaveLength(2);

    const submit = await step(
      [
        'process',
        'submit',
        'core.arithmetic.add',
        '-i',
        'x=1',
        '-i',
        'y=2',
        '--count',
        '50',
        '--wait',
        '-t',
        '120',
      ],
      180,
    );
    expect(submit.stdout).toMatch(
      /^Success: Submitted 50 processes of core\.arithmetic\.add \(pk \d+ to \d+\)\.$/m,
    );
    expect(submit.stdout).toMatch(/^50\/50 done \[#{20}\] 0 failed/m);
    expect(submit.stdout).toMatch(/^Success: 50 of 50 processes finished in .* per second\)\.$/m);
    expect(submit.stderr).toBe('');

    const list = await step(['process', 'list', '-a']);
    expect(list.stdout).toContain('Total results: 50');
    expect(list.stdout.match(/core\.arithmetic\.add\s+finished \[0\]/g)).toHaveLength(50);
    expect(list.stdout).toMatch(
      /^Report: Using \d+ of 400 daemon worker slots \(\d+%\), 2 workers\.$/m,
    );
    const rows = JSON.parse((await step(['process', 'list', '-a', '--json'])).stdout) as Row[];
    expect(rows).toHaveLength(50);
    for (const row of rows) {
      expect(row).toMatchObject({ state: 'finished', exitStatus: 0, outputs: { sum: 3 } });
    }

    const status = await step(['daemon', 'status']);
    expect(status.stdout).toContain('Active workers [2]:');
    expect(status.stdout.match(/\sready\s/g)).toHaveLength(2);

    const stop = await step(['daemon', 'stop']);
    expect(stop.stdout).toBe('Profile: session\nStopping the daemon... OK\n');
    expect(isAlive(running.status?.pid as number)).toBe(false);
    for (const worker of running.status?.workers ?? [])
      expect(isAlive(worker.pid as number)).toBe(false);
    const after = await sandbox.run(['daemon', 'status']);
    expect(after.code).toBe(3);
  });
});
