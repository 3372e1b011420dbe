// AiiDA users at home, through the built bin in throwaway AIIDA_PATHs against the real RabbitMQ:
// Python AiiDA's config.json (fixtures written from aiida-core's config schemas and migrations)
// stays byte-identical through every command, AIIDA_PATH is read by AiiDA's rules, `profile
// import-aiida` reuses AiiDA's broker, and the messages users saw wrong are right.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../../tests/support/wait-for.js';
import { CliSandbox, collect, prestoWithTestOptions, shown, TEST_OPTION_VALUES } from './cli.js';

const FIXTURES = join(
  dirname(fileURLToPath(import.meta.url)),
  '..',
  '..',
  'config',
  'test',
  'fixtures',
);

/** A local port that refuses connections (bound, then closed). */
async function closedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Puts AiiDA's config fixture of `version` in the sandbox as `.aiida/config.json`. */
function putAiidaConfig(sandbox: CliSandbox, version: number): { path: string; bytes: Buffer } {
  const dir = join(sandbox.aiidaPath, '.aiida');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'config.json');
  copyFileSync(join(FIXTURES, `aiida-config-v${version}.json`), path);
  return { path, bytes: readFileSync(path) };
}

describe.each([9, 10, 11])("AiiDA's config.json of version %i", (version) => {
  let sandbox: CliSandbox;
  beforeAll(() => {
    sandbox = new CliSandbox(`aiida-cli-home-v${version}-`);
  });
  afterAll(async () => {
    // cleanUp stops by pid whatever daemon of the sandbox still runs.
    await sandbox.cleanUp();
  });

  it('stays byte-identical through presto, profile setup, config set and the rest', async () => {
    const aiida = putAiidaConfig(sandbox, version);
    const commands: string[][] = [
      ['status'],
      ['presto'],
      ['profile', 'setup', 'second', '--broker-port', '5672', '--check'],
      ['config', 'set', 'daemon.timeout', '20'],
      ['config', 'set', '--global', 'daemon.default_workers', '2'],
      ['-p', 'second', 'config', 'set', 'daemon.worker_process_slots', '50'],
      ['config', 'unset', 'daemon.timeout'],
      ...TEST_OPTION_VALUES.map(([option, value]) => ['config', 'set', option, value]),
      ['daemon', 'start', '1'],
      ['daemon', 'status'],
      ['status'],
      ['daemon', 'stop'],
      ['profile', 'set-default', 'second'],
      ['profile', 'import-aiida', 'local', '--as', 'from-aiida', '--check'],
      ['profile', 'list'],
      ['profile', 'show', 'from-aiida'],
      ['config', 'list'],
      ['status'],
      ['profile', 'delete', 'second', '-y'],
    ];
    for (const args of commands) {
      const result = await sandbox.run(args);
      expect({ args, code: result.code, out: shown(result) }).toMatchObject({ args, code: 0 });
      expect({ args, same: readFileSync(aiida.path).equals(aiida.bytes) }).toEqual({
        args,
        same: true,
      });
    }
    // Our profiles are in our own file; besides it we add only our daemon and storage folders.
    expect(sandbox.profiles()).toEqual(['from-aiida', 'presto']);
    const entries = readdirSync(join(sandbox.aiidaPath, '.aiida')).sort();
    expect(entries.filter((name) => name !== 'daemon' && name !== 'storage')).toEqual([
      'aiida-ts.json',
      'config.json',
    ]);
  });
});

describe('aiida profile import-aiida', () => {
  let sandbox: CliSandbox;
  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-import-');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it('says so when there is no AiiDA config file, naming where it looked', async () => {
    const result = await sandbox.run(['profile', 'import-aiida', 'research']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^Error: There is no AiiDA config file at .*\/\.aiida\/config\.json\. Set AIIDA_PATH/,
    );
    expect(result.stderr).toMatch(/^Hint: Point AIIDA_PATH at the folder `verdi` uses/m);
    expect(sandbox.profiles()).toEqual([]);
  });

  it('names an unknown profile and lists those AiiDA has', async () => {
    const aiida = putAiidaConfig(sandbox, 10);
    const result = await sandbox.run(['profile', 'import-aiida', 'nope']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^Error: AiiDA profile 'nope' not found in AiiDA's config file .*config\.json\. Its profiles: local, presto, research\.$/m,
    );
    expect(readFileSync(aiida.path).equals(aiida.bytes)).toBe(true);
    expect(sandbox.profiles()).toEqual([]);
  });

  it('makes a core.store profile of an AiiDA profile without a broker, says so, and it runs', async () => {
    // AiiDA's `presto` profile of the fixture has `process_control.backend: null` (AiiDA >= 2.6
    // set up without RabbitMQ).
    const aiida = putAiidaConfig(sandbox, 10);
    const result = await sandbox.run([
      'profile',
      'import-aiida',
      'presto',
      '--as',
      'no-broker',
      '--check',
    ]);
    expect({ code: result.code, out: shown(result) }).toMatchObject({ code: 0 });
    expect(result.stdout).toMatch(
      /^Success: Created new profile `no-broker` from AiiDA profile `presto` \(.*\/\.aiida\/config\.json, config version 10\)\.$/m,
    );
    expect(result.stdout).toContain(
      'Process control: core.store (AiiDA profile `presto` has no broker: its ' +
        'process_control.backend is null): the store is the queue, no broker, so there is no ' +
        'broker to check.',
    );
    const show = await sandbox.run(['profile', 'show', 'no-broker', '--json']);
    expect(JSON.parse(show.stdout).broker.backend).toBe('core.store');
    // The daemon of the new profile runs a process with no broker.
    const run = async (args: string[]) => {
      const r = await sandbox.run(['-p', 'no-broker', ...args]);
      expect({ args, code: r.code, out: shown(r) }).toMatchObject({ args, code: 0 });
      return r;
    };
    await run(['daemon', 'start', '1']);
    const sum = await run([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=2',
      '-i',
      'y=5',
      '--wait',
      '--json',
    ]);
    expect(JSON.parse(sum.stdout)).toMatchObject([{ state: 'finished', outputs: { sum: 7 } }]);
    await run(['daemon', 'stop']);
    expect(readFileSync(aiida.path).equals(aiida.bytes)).toBe(true);
    expect(sandbox.profiles()).toEqual(['no-broker']);
    await run(['profile', 'delete', 'no-broker', '--delete-data', '-y']);
    expect(sandbox.profiles()).toEqual([]);
  });

  it('refuses an AiiDA profile whose broker is neither RabbitMQ nor none', async () => {
    const { path } = putAiidaConfig(sandbox, 10);
    const data = JSON.parse(readFileSync(path, 'utf8'));
    data.profiles.presto.process_control.backend = 'core.zmq';
    writeFileSync(path, JSON.stringify(data, null, 4));
    const bytes = readFileSync(path);
    const result = await sandbox.run(['profile', 'import-aiida', 'presto']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^Error: AiiDA profile 'presto' in .*config\.json has no RabbitMQ broker \(its process_control\.backend is "core\.zmq"\)/,
    );
    expect(readFileSync(path).equals(bytes)).toBe(true);
    expect(sandbox.profiles()).toEqual([]);
  });

  it("copies AiiDA's default profile's broker, never printing its password", async () => {
    const aiida = putAiidaConfig(sandbox, 9);
    const result = await sandbox.run(['profile', 'import-aiida']);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      'Success: Created new profile `research` with the broker of AiiDA profile `research`',
    );
    expect(result.stdout).toContain(
      'amqps://aiida:***@rabbit.example.org:5671/aiida-vhost?heartbeat=300&frame_max=131072',
    );
    expect(result.stdout).toContain('Success: `research` is the default profile.');
    const show = await sandbox.run(['profile', 'show', 'research', '--json']);
    expect(show.code).toBe(0);
    expect(JSON.parse(show.stdout).broker.config).toMatchObject({
      protocol: 'amqps',
      username: 'aiida',
      password: '***',
      host: 'rabbit.example.org',
      port: 5671,
      virtualHost: 'aiida-vhost',
    });
    for (const text of [result.stdout, result.stderr, show.stdout, show.stderr]) {
      expect(text).not.toContain('s3cret-pw');
    }
    const taken = await sandbox.run(['profile', 'import-aiida', 'research']);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/^Error: A profile named 'research' already exists/);
    expect(readFileSync(aiida.path).equals(aiida.bytes)).toBe(true);
    // Nothing was declared on rabbit.example.org: forget the profile before clean-up.
    expect((await sandbox.run(['profile', 'delete', 'research', '-y'])).code).toBe(0);
  });

  it('--check against an unreachable broker creates nothing', async () => {
    // A version 5 file (AiiDA 1.x) keeps the broker keys at the top of the profile; point it at
    // a local port that refuses connections.
    const port = await closedPort();
    const { path } = putAiidaConfig(sandbox, 5);
    const data = JSON.parse(readFileSync(path, 'utf8'));
    Object.assign(data.profiles.old, { broker_host: '127.0.0.1', broker_port: port });
    writeFileSync(path, JSON.stringify(data, null, 4));
    const bytes = readFileSync(path);
    const check = await sandbox.run(['profile', 'import-aiida', 'old', '--check', '-t', '2']);
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(
      `Checking the broker at amqp://old-user:***@127.0.0.1:${port}/legacy?heartbeat=600... FAILED`,
    );
    expect(check.stderr).toMatch(
      new RegExp(
        `^Error: Could not connect to the broker at amqp://old-user:\\*\\*\\*@127\\.0\\.0\\.1:${port}/legacy\\?heartbeat=600: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\. No profile was created\\.$`,
        'm',
      ),
    );
    expect(check.stdout + check.stderr).not.toContain('old-pw');
    expect(sandbox.profiles()).toEqual([]);
    expect(readFileSync(path).equals(bytes)).toBe(true);
  });
});

describe('AIIDA_PATH as AiiDA reads it', () => {
  let sandbox: CliSandbox;
  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-path-');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it('a list: the first entry with a config folder wins, in either form', async () => {
    const missing = join(sandbox.aiidaPath, 'missing');
    const configDir = join(sandbox.aiidaPath, '.aiida');
    mkdirSync(configDir, { recursive: true });
    for (const value of [`${missing}:${sandbox.aiidaPath}`, `${missing}:${configDir}`]) {
      const result = await sandbox.run(['profile', 'list'], { env: { AIIDA_PATH: value } });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`Report: configuration folder: ${configDir}\n`);
    }
    const none = await sandbox.run(['profile', 'list'], {
      env: { AIIDA_PATH: `${configDir}-x:${missing}` },
    });
    expect(none.stdout).toContain(`Report: configuration folder: ${join(missing, '.aiida')}\n`);
  });
});

describe('messages users saw wrong', () => {
  let sandbox: CliSandbox;
  const supervisors: number[] = [];
  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-wrong-');
    await prestoWithTestOptions(sandbox, 'wrong');
  });
  afterAll(async () => {
    await sandbox.cleanUp(supervisors);
  });

  it('config set names the rule a number broke, not "expected number, got string"', async () => {
    const cases: [string, string, string][] = [
      ['daemon.timeout', '-5', "for option 'daemon.timeout' (seconds): must be > 0, got number -5"],
      ['daemon.timeout', '0', "for option 'daemon.timeout' (seconds): must be > 0, got number 0"],
      [
        'daemon.default_workers',
        '2.5',
        "for option 'daemon.default_workers': expected integer, got number 2.5",
      ],
      ['daemon.default_workers', '0', "for option 'daemon.default_workers': must be >= 1"],
    ];
    for (const [option, value, expected] of cases) {
      const result = await sandbox.run(['config', 'set', option, value]);
      expect({ option, value, code: result.code }).toEqual({ option, value, code: 2 });
      expect(result.stderr).toContain(expected);
      expect(result.stderr).not.toContain('got string');
    }
    const word = await sandbox.run(['config', 'set', 'daemon.timeout', 'soon']);
    expect(word.stderr).toContain('expected number, got string "soon"');
  });

  it('--no-color is accepted before or after the command and removes colours', async () => {
    for (const args of [
      ['--no-color', 'profile', 'list'],
      ['profile', 'list', '--no-color'],
    ]) {
      const result = await sandbox.run(args, { env: { FORCE_COLOR: '1' } });
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('* wrong');
      expect(result.stdout).not.toContain('\u001b[');
    }
    const colored = await sandbox.run(['profile', 'list'], { env: { FORCE_COLOR: '1' } });
    expect(colored.stdout).toContain('\u001b[');
    const error = await sandbox.run(['--no-color', 'nope'], { env: { FORCE_COLOR: '1' } });
    expect(error.code).toBe(2);
    expect(error.stderr).toMatch(/^Error: Unknown command 'nope'/);
  });

  it('a stopped daemon is reported with the command to start it, not a library call', async () => {
    const status = await sandbox.run(['status']);
    expect(status.stdout).toMatch(/⏺ daemon: +The daemon for profile 'wrong' is not running/);
    expect(status.stdout).toContain('Start it with `aiida daemon start`.');
    const incr = await sandbox.run(['daemon', 'incr']);
    expect(incr.code).toBe(3);
    for (const text of [status.stdout, incr.stderr]) expect(text).not.toMatch(/[a-zA-Z]\(\)/);
    expect(incr.stderr).toContain('aiida daemon start');
  });

  it('aiida status does not show a daemon of 0 workers as healthy', async () => {
    const start = await sandbox.run(['daemon', 'start', '1']);
    expect(start.code).toBe(0);
    const json = JSON.parse((await sandbox.run(['daemon', 'status', '--json'])).stdout) as {
      status: { pid: number } | null;
    };
    if (json.status) supervisors.push(json.status.pid);
    expect((await sandbox.run(['daemon', 'decr', '1'])).code).toBe(0);
    const status = await sandbox.run(['status']);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(
      /^ ⏺ daemon: +Daemon is running with PID \d+ but has no workers: submitted processes will not run\. Add workers with `aiida daemon incr`\.$/m,
    );
    expect(status.stdout).not.toContain('✔ daemon');
    expect(status.stdout).not.toContain('0 workers ready');
    expect((await sandbox.run(['daemon', 'stop'])).code).toBe(0);
  });
});

describe('presto against a server that is not a broker', () => {
  let sandbox: CliSandbox;
  let server: Server | undefined;
  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-notamqp-');
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await sandbox.cleanUp();
  });

  it('says what answered instead of crashing, and leaves no profile', async () => {
    server = createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const result = await sandbox.run(['presto'], { env: { AIIDA_BROKER_PORT: String(port) } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      new RegExp(
        `^Error: Could not connect to the broker at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port}/\\?heartbeat=600: what answers at 127\\.0\\.0\\.1:${port} is not an AMQP 0-9-1 broker \\(it said "HTTP/1\\.1 400 Bad Request"\\)\\. No profile was created\\.$`,
        'm',
      ),
    );
    expect(result.stderr).not.toContain('    at ');
    expect(sandbox.profiles()).toEqual([]);
  });
});

/** RabbitMQ's log files (`AIIDA_TEST_RABBITMQ_LOG`, else /var/log/rabbitmq/*.log). */
function rabbitLogText(): string {
  const files =
    process.env.AIIDA_TEST_RABBITMQ_LOG !== undefined
      ? [process.env.AIIDA_TEST_RABBITMQ_LOG]
      : readdirSync('/var/log/rabbitmq')
          .filter((name) => name.endsWith('.log') && !name.endsWith('_upgrade.log'))
          .map((name) => join('/var/log/rabbitmq', name));
  if (files.length === 0) throw new Error('no RabbitMQ log found in /var/log/rabbitmq');
  return files.map((file) => readFileSync(file, 'utf8')).join('\n');
}

/**
 * The log lines of the connections a CLI process opened (client-provided names `aiida-cli
 * <pid>...`), found by RabbitMQ's connection process id once each of them was closed.
 */
async function connectionLogOf(cliPid: number, count: number): Promise<string[]> {
  const named = new RegExp(`<([0-9.]+)> .* - aiida-cli ${cliPid}[ ,)]`);
  return waitFor(
    () => {
      const lines = rabbitLogText().split('\n');
      const ids = new Set(
        lines.map((line) => named.exec(line)?.[1]).filter((id) => id !== undefined),
      );
      const mine = lines.filter((line) => [...ids].some((id) => line.includes(`<${id}>`)));
      const closed = mine.filter((line) => line.includes('closing AMQP connection'));
      return closed.length >= count ? mine : undefined;
    },
    {
      timeout: 20,
      what: `RabbitMQ to log the close of ${count} connections of aiida-cli ${cliPid}`,
    },
  );
}

describe("RabbitMQ's log after aiida status and presto", () => {
  let sandbox: CliSandbox;
  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-rabbitlog-');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it.each([['presto'], ['status']])(
    'aiida %s closes its connections (the version probe too) without a warning',
    async (command) => {
      const child = sandbox.spawn([command]);
      const result = await collect(child, 60, [command]);
      expect({ code: result.code, out: shown(result) }).toMatchObject({ code: 0 });
      expect(result.stdout).toMatch(/RabbitMQ \d+\.\d+/);
      const lines = await connectionLogOf(child.pid as number, 2);
      expect(lines.some((line) => line.includes(`aiida-cli ${child.pid} version probe`))).toBe(
        true,
      );
      expect(lines.filter((line) => /\[(warning|error)\]/.test(line))).toEqual([]);
    },
  );
});
