// Pure parts of the command line: table and value formatting, argument parsing, error reports,
// the daemon status view, broker settings from the environment, verdi's call tree and report
// layout, and the store query of `process list`.
import { InvalidArgumentError } from 'commander';
import { type CallTree, formatCallTree, formatReports, type TreeReport } from '../src/call-tree.js';
import { brokerSettingsFromEnvironment } from '../src/commands/presto.js';
import { listFilter } from '../src/commands/process.js';
import {
  type DaemonStatus,
  renderClusterStatus,
  renderDaemonStatus,
  slotWarning,
} from '../src/daemon-status-view.js';
import { CliError, describeError, ExitCodes } from '../src/errors.js';
import { formatAge, formatBytes, formatDuration, formatUptime } from '../src/format.js';
import { parseKeyValue, parsePk, parsePort, parsePositiveInt, parseSeconds } from '../src/parse.js';
import { countStates, describeProgress } from '../src/process-wait.js';
import { formatTable } from '../src/table.js';

describe('formatTable', () => {
  it('lines up columns like tabulate "simple", numbers right-aligned', () => {
    expect(
      formatTable(
        ['PK', 'State'],
        [
          [1, 'finished'],
          [12, 'running'],
        ],
      ),
    ).toBe(['PK  State', '--  --------', ' 1  finished', '12  running'].join('\n'));
  });

  it('ignores colour escapes when measuring', () => {
    const red = '\u001b[31mkilled\u001b[39m';
    const table = formatTable(
      ['a', 'b'],
      [
        [red, 'x'],
        ['finished', 'y'],
      ],
    );
    expect(table.split('\n')[2]).toBe(`${red}    x`);
  });

  it('prints only the header for no rows', () => {
    expect(formatTable(['PK'], [])).toBe('PK\n--');
  });
});

describe('formatting', () => {
  it('uptimes, ages, durations and sizes', () => {
    expect(formatUptime(3725)).toBe('1:02:05');
    expect(formatUptime(90_000)).toBe('1D 1:00:00');
    const now = Date.parse('2024-05-01T12:00:00Z');
    expect(formatAge('2024-05-01T11:59:30Z', now)).toBe('30s ago');
    expect(formatAge('2024-05-01T11:00:00Z', now)).toBe('1h ago');
    expect(formatAge('2024-04-28T12:00:00Z', now)).toBe('3D ago');
    expect(formatDuration(0.25)).toBe('250 ms');
    expect(formatDuration(4.25)).toBe('4.3 s');
    expect(formatDuration(185)).toBe('3 min 5 s');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(66_479_718)).toBe('63.4 MB');
  });
});

describe('argument parsers name what they expected', () => {
  it.each([
    ['parsePositiveInt', '0', parsePositiveInt, /positive integer/],
    ['parsePositiveInt', '2.5', parsePositiveInt, /positive integer/],
    ['parseSeconds', '-1', parseSeconds, /number of seconds/],
    ['parseSeconds', 'soon', parseSeconds, /number of seconds/],
    ['parsePort', '70000', parsePort, /port number/],
    ['parsePk', 'x', (v: string) => parsePk(v), /process pk/],
    ['parseKeyValue', 'novalue', (v: string) => parseKeyValue(v), /key=value/],
  ] as const)('%s rejects %p', (_name, value, parse, expected) => {
    expect(() => parse(value)).toThrow(InvalidArgumentError);
    expect(() => parse(value)).toThrow(expected);
  });

  it('accepts good values', () => {
    expect(parsePositiveInt('4')).toBe(4);
    expect(parseSeconds('2.5')).toBe(2.5);
    expect(parsePk('3', [1])).toEqual([1, 3]);
  });

  it('input values parse as JSON, else as strings; later keys win', () => {
    let inputs = parseKeyValue('x=1');
    inputs = parseKeyValue('name=hello world', inputs);
    inputs = parseKeyValue('list=[1,2]', inputs);
    inputs = parseKeyValue('eq=a=b', inputs);
    inputs = parseKeyValue('x=2', inputs);
    expect(inputs).toEqual({ x: 2, name: 'hello world', list: [1, 2], eq: 'a=b' });
  });
});

describe('describeError', () => {
  it('maps package error codes to a hint and an exit code', () => {
    const notRunning = Object.assign(new Error('The daemon is not running.'), {
      code: 'not_running',
    });
    expect(describeError(notRunning)).toMatchObject({
      message: 'The daemon is not running.',
      exitCode: ExitCodes.notRunning,
    });
    const badOption = Object.assign(new Error('bad'), { code: 'option_invalid' });
    expect(describeError(badOption).exitCode).toBe(ExitCodes.usage);
    expect(describeError(badOption).hint).toContain('aiida config list');
    const busy = Object.assign(new Error('its control socket stayed busy'), { code: 'busy' });
    expect(describeError(busy)).toMatchObject({ exitCode: ExitCodes.failure });
    expect(describeError(busy).hint).toContain('try again shortly');
  });

  it('recognises the daemon exceptions by name, and passes CliErrors through', () => {
    const stale = Object.assign(new Error('stale'), { name: 'DaemonStalePidException' });
    expect(describeError(stale).exitCode).toBe(ExitCodes.notRunning);
    const own = new CliError('x', 'own message', { hint: 'do this', exitCode: ExitCodes.usage });
    expect(describeError(own)).toEqual({ message: 'own message', hint: 'do this', exitCode: 2 });
    expect(describeError('a string')).toMatchObject({ message: 'a string', exitCode: 1 });
  });
});

function worker(index: number, overrides: Partial<DaemonStatus['workers'][number]> = {}) {
  return {
    index,
    pid: 1000 + index,
    state: 'ready' as const,
    startedAt: '2024-05-01T10:00:00.000Z',
    restarts: 0,
    lastRestartReason: null,
    lastHeartbeatAt: null,
    cpu: 1.25,
    memory: 50 * 1024 * 1024,
    slotsUsed: 0,
    slotsTotal: 10,
    activePks: [],
    lastStderr: [],
    nextAttemptAt: null,
    ...overrides,
  };
}

describe('the daemon status view', () => {
  const base: DaemonStatus = {
    pid: 999,
    hostname: 'host',
    profile: 'p',
    startedAt: '2024-05-01T10:00:00.000Z',
    protocolVersion: 1,
    numberWorkers: 2,
    workers: [worker(0), worker(1)],
    logDir: '/logs',
    spare: null,
  };
  const now = Date.parse('2024-05-01T10:05:00.000Z');

  it('shows the supervisor, a row per worker with slots, and the log folder', () => {
    const { text, warnings } = renderDaemonStatus(base, now);
    expect(text).toMatch(/^Daemon is running as PID 999 since .* \(uptime 0:05:00\)$/m);
    expect(text).toContain('Active workers [2]:');
    expect(text).toMatch(/^0\s+1000\s+ready\s+1\.3\s+50\.0 MB\s+.*\s+0:05:00\s+0\s+0 \/ 10$/m);
    expect(text).toContain('Slots in use: 0 of 20');
    expect(text).toContain('Log folder: /logs');
    expect(warnings).toEqual([]);
  });

  it('shows the warm spare when there is one, and nothing about it when there is none', () => {
    expect(renderDaemonStatus(base, now).text).not.toContain('Warm spare');
    const spare = { pid: 1234, startedAt: '2024-05-01T10:00:01.000Z' };
    const standby = renderDaemonStatus({ ...base, spare: { ...spare, state: 'standby' } }, now);
    expect(standby.text).toContain(
      "Warm spare: PID 1234, loaded and connected, takes a dead worker's place at once",
    );
    const starting = renderDaemonStatus({ ...base, spare: { ...spare, state: 'starting' } }, now);
    expect(starting.text).toContain('Warm spare: PID 1234, starting');
    // The spare is not one of the workers.
    expect(standby.text).toContain('Active workers [2]:');
  });

  it('shows the reason of the last restart next to the count', () => {
    const replaced = worker(1, { restarts: 2, lastRestartReason: 'unresponsive' });
    const { text } = renderDaemonStatus({ ...base, workers: [worker(0), replaced] }, now);
    expect(text).toMatch(/^1\s+1001\s+ready\s.*\s2 \(unresponsive\)\s+0 \/ 10$/m);
    expect(text).toMatch(/^0\s+1000\s+ready\s.*\s0\s+0 \/ 10$/m);
  });

  it('warns above 90 % slot use, not at 90 %', () => {
    const at90 = [worker(0, { slotsUsed: 9 }), worker(1, { slotsUsed: 9 })];
    expect(slotWarning(at90)).toBeUndefined();
    const above = [worker(0, { slotsUsed: 10 }), worker(1, { slotsUsed: 9 })];
    expect(slotWarning(above)).toMatch(/^95% of the daemon's worker slots are in use \(19 of 20\)/);
  });

  it('shows a crash-looping worker with its last stderr lines and next attempt', () => {
    const looping = worker(1, {
      pid: null,
      state: 'crash-looping',
      restarts: 4,
      lastStderr: ['Error: boom', '    at main'],
      nextAttemptAt: '2024-05-01T10:05:08.000Z',
    });
    const { text, warnings } = renderDaemonStatus({ ...base, workers: [worker(0), looping] }, now);
    expect(text).toMatch(/^1\s+-\s+crash-looping\s/m);
    expect(warnings).toEqual([
      'worker 1 is crash-looping (restarted 4 times; next attempt in 8 s). Its last stderr lines:\n' +
        '    | Error: boom\n    |     at main',
    ]);
  });

  it('says so when there are no workers', () => {
    expect(renderDaemonStatus({ ...base, workers: [] }, now).text).toContain(
      'No workers are running. Use `aiida daemon incr` to start some!',
    );
  });
});

describe('daemon status --all-hosts', () => {
  const now = Date.parse('2024-05-01T10:00:30Z');
  const w = (pid: number, stale: boolean) => ({
    workerId: `h:${pid}:x`,
    pid,
    slotsUsed: 3,
    slotsTotal: 200,
    startedAt: '2024-05-01T10:00:00Z',
    lastHeartbeatAt: stale ? '2024-05-01T10:00:05Z' : '2024-05-01T10:00:29Z',
    stale,
  });
  const host = (hostname: string, thisHost: boolean, stale: boolean) => ({
    hostname,
    thisHost,
    workers: [w(10, stale), w(11, stale)],
    liveWorkers: stale ? 0 : 2,
    slotsUsed: stale ? 0 : 6,
    slotsTotal: stale ? 0 : 400,
  });

  it('one row per worker of every host, this host starred, stale ones marked', () => {
    const text = renderClusterStatus(
      {
        profile: 'p',
        backend: 'core.psql',
        thisHost: 'alpha',
        staleAfter: 10,
        hosts: [host('alpha', true, false), host('beta', false, true)],
        workers: 4,
        staleWorkers: 2,
      },
      now,
    );
    expect(text).toContain('this host: alpha; 2 hosts, 2 live and 2 stale workers');
    const rows = text.split('\n').filter((line) => /^(alpha|beta)/.test(line));
    expect(rows).toHaveLength(4);
    expect(rows.filter((r) => r.startsWith('alpha* ') && r.endsWith('live'))).toHaveLength(2);
    expect(rows.filter((r) => r.startsWith('beta ') && r.endsWith('stale'))).toHaveLength(2);
    expect(rows[2]).toContain('25s ago');
    expect(rows[0]).toContain('3 / 200');
  });

  it('says so when no worker is registered', () => {
    const text = renderClusterStatus({
      profile: 'p',
      backend: 'core.sqlite',
      thisHost: 'alpha',
      staleAfter: 10,
      hosts: [],
      workers: 0,
      staleWorkers: 0,
    });
    expect(text).toContain('No worker of any host is registered');
  });
});

describe('progress of a batch', () => {
  it('counts states and describes them in one line', () => {
    const rows = ['finished', 'finished', 'running', 'excepted', 'created'].map((state, pk) => ({
      pk,
      state,
      exitStatus: state === 'finished' ? 0 : null,
    })) as unknown as Parameters<typeof countStates>[0];
    const counts = countStates(rows);
    expect(counts).toMatchObject({ finished: 2, running: 1, excepted: 1, created: 1, failed: 1 });
    expect(describeProgress(counts, 5, 2)).toBe(
      '3/5 done [############........] 1 created, 1 running, 1 failed, 2.0 s',
    );
  });

  it('counts a process that finished with a non-zero exit status as failed', () => {
    const rows = [
      { pk: 1, state: 'finished', exitStatus: 400 },
      { pk: 2, state: 'finished', exitStatus: 0 },
    ] as unknown as Parameters<typeof countStates>[0];
    const counts = countStates(rows);
    expect(counts).toMatchObject({ finished: 2, failed: 1 });
    expect(describeProgress(counts, 2, 1)).toBe('2/2 done [####################] 1 failed, 1.0 s');
  });
});

describe('presto broker settings', () => {
  it('take AIIDA_BROKER_* variables, with options winning', () => {
    const env = {
      AIIDA_BROKER_HOST: 'rabbit',
      AIIDA_BROKER_PORT: '5673',
      AIIDA_BROKER_USERNAME: 'u',
      AIIDA_BROKER_PASSWORD: 'p',
      AIIDA_BROKER_VIRTUAL_HOST: 'v',
    };
    expect(brokerSettingsFromEnvironment({}, env)).toEqual({
      host: 'rabbit',
      port: 5673,
      username: 'u',
      password: 'p',
      virtualHost: 'v',
    });
    expect(
      brokerSettingsFromEnvironment({ brokerHost: 'other', brokerPort: 1 }, env),
    ).toMatchObject({
      host: 'other',
      port: 1,
    });
    expect(brokerSettingsFromEnvironment({}, {})).toEqual({});
  });

  it('refuse a port that is not a number, naming the variable', () => {
    expect(() => brokerSettingsFromEnvironment({}, { AIIDA_BROKER_PORT: 'x' })).toThrow(
      /AIIDA_BROKER_PORT='x' is not a port number/,
    );
  });
});

describe("verdi's call tree and report layout", () => {
  const node = (pk: number, type: string, state: string, children: CallTree[] = []): CallTree =>
    ({
      record: { pk, type, state, exitStatus: state === 'finished' ? 0 : null, paused: false },
      depth: 0,
      children,
    }) as unknown as CallTree;

  it('draws middle branches with ├── and │, the last with └──, as verdi', () => {
    const tree = node(1, 'wf', 'waiting', [
      node(2, 'calc', 'finished'),
      node(3, 'sub', 'running', [node(4, 'calc', 'created'), node(5, 'calc', 'excepted')]),
      node(6, 'calc', 'killed'),
    ]);
    expect(formatCallTree(tree)).toBe(
      [
        'wf<1> Waiting',
        '    ├── calc<2> Finished [0]',
        '    ├── sub<3> Running',
        '    │   ├── calc<4> Created',
        '    │   └── calc<5> Excepted',
        '    └── calc<6> Killed',
      ].join('\n'),
    );
  });

  it('pads ids left and levels right, and indents by depth', () => {
    const at = new Date(2024, 4, 1, 9, 44, 7).toISOString();
    const reports: TreeReport[] = [
      { id: 9, pk: 1, time: at, level: 'report', message: 'a', depth: 0 },
      { id: 10, pk: 2, time: at, level: 'warning', message: 'b', depth: 2 },
    ];
    expect(formatReports(reports, 2)).toEqual([
      '2024-05-01 09:44:07 [9  |  REPORT]: a',
      '2024-05-01 09:44:07 [10 | WARNING]:     b',
    ]);
  });
});

describe('the store query of process list', () => {
  const base = { orderBy: 'ctime', orderDir: 'asc' } as const;

  it('shows the active processes by default, oldest first, as verdi', () => {
    expect(listFilter({ ...base })).toMatchObject({
      states: ['created', 'waiting', 'running'],
      orderBy: 'createdAt',
      order: 'asc',
    });
    expect(listFilter({ ...base, all: true, processState: ['killed'] }).states).toBeUndefined();
    expect(listFilter({ ...base, processState: ['killed'] }).states).toEqual(['killed']);
  });

  it('-X and -E mean finished processes, whatever -a says; -p counts days back from now', () => {
    expect(listFilter({ ...base, failed: true })).toMatchObject({
      states: undefined,
      failed: true,
    });
    expect(listFilter({ ...base, exitStatus: 0 })).toMatchObject({
      states: undefined,
      exitStatus: 0,
    });
    const before = Date.now();
    const since = listFilter({ ...base, pastDays: 2 }).createdAfter as Date;
    expect(before - since.getTime()).toBeGreaterThanOrEqual(2 * 86_400_000 - 1000);
    expect(before - since.getTime()).toBeLessThanOrEqual(2 * 86_400_000 + 1000);
    expect(listFilter({ ...base, orderBy: 'id', orderDir: 'desc', limit: 3 })).toMatchObject({
      orderBy: 'pk',
      order: 'desc',
      limit: 3,
    });
  });
});
