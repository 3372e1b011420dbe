// `aiida presto`, `aiida profile ...` and `aiida config ...` against the real RabbitMQ, through
// the built bin, in a throwaway AIIDA_PATH.
import { existsSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { CliSandbox, shown } from './cli.js';

/** A local port that refuses connections (bound, then closed). */
async function closedPort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('aiida presto, profile and config', () => {
  let sandbox: CliSandbox;
  const configFile = () => join(sandbox.aiidaPath, '.aiida', 'aiida-ts.json');

  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-profile-');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it('presto with an unreachable broker: one clear line naming the redacted URL, exit 1, no profile left', async () => {
    const port = await closedPort();
    const result = await sandbox.run(['presto'], {
      env: { AIIDA_BROKER_PORT: String(port), AIIDA_BROKER_PASSWORD: 's3cret' },
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toContain(`Checking the broker at amqp://guest:***@127.0.0.1:${port}/`);
    expect(result.stdout).toContain('FAILED');
    const [line, hint] = result.stderr.trim().split('\n');
    expect(line).toMatch(
      new RegExp(
        `^Error: Could not connect to the broker at amqp://guest:\\*\\*\\*@127\\.0\\.0\\.1:${port}/.*: .*ECONNREFUSED`,
      ),
    );
    expect(line).toContain('No profile was created.');
    expect(hint).toMatch(/^Hint: Is RabbitMQ running there\?/);
    expect(result.stdout + result.stderr).not.toContain('s3cret');
    expect(sandbox.profiles()).toEqual([]);
    expect(existsSync(join(sandbox.aiidaPath, '.aiida', 'storage', 'presto'))).toBe(false);
  });

  it('presto with a broker port that is not a number names the variable', async () => {
    const result = await sandbox.run(['presto'], { env: { AIIDA_BROKER_PORT: 'fivesix' } });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^Error: AIIDA_BROKER_PORT='fivesix' is not a port number/);
    expect(sandbox.profiles()).toEqual([]);
  });

  it('presto creates a working default profile from AIIDA_BROKER_* and checks the broker', async () => {
    const result = await sandbox.run(['presto'], {
      env: { AIIDA_BROKER_HOST: '127.0.0.1', AIIDA_BROKER_PORT: '5672' },
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /Checking the broker at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/.*\.\.\. OK/,
    );
    expect(result.stdout).toContain('Success: Created new profile `presto`');
    expect(result.stdout).toContain('Success: Configured the new profile as default.');
    const config = JSON.parse(readFileSync(configFile(), 'utf8'));
    expect(config.default_profile).toBe('presto');
  });

  it('presto again picks a free name; -p names it', async () => {
    const again = await sandbox.run(['presto']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('`presto-2`');
    const named = await sandbox.run(['-p', 'work', 'presto']);
    expect(named.code).toBe(0);
    const taken = await sandbox.run(['-p', 'work', 'presto']);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/^Error: A profile named 'work' already exists/);
  });

  it('profile list marks the default; --json parses', async () => {
    const text = await sandbox.run(['profile', 'list']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^\* work$/m);
    expect(text.stdout).toMatch(/^ {2}presto$/m);
    const json = await sandbox.run(['profile', 'list', '--json']);
    const profiles = JSON.parse(json.stdout) as { name: string; default: boolean }[];
    expect(profiles.map((p) => p.name)).toEqual(['presto', 'presto-2', 'work']);
    expect(profiles.find((p) => p.default)?.name).toBe('work');
  });

  it('profile show redacts the password, in text and JSON', async () => {
    const text = await sandbox.run(['profile', 'show', 'presto']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('amqp://guest:***@127.0.0.1:5672/');
    expect(text.stdout).toContain('core.sqlite');
    const json = JSON.parse(
      (await sandbox.run(['-p', 'presto', 'profile', 'show', '--json'])).stdout,
    );
    expect(json.name).toBe('presto');
    expect(json.broker.config.password).toBe('***');
    expect(json.broker.url).toBe('amqp://guest:***@127.0.0.1:5672/?heartbeat=600');
  });

  it('profile setup and set-default', async () => {
    const setup = await sandbox.run([
      'profile',
      'setup',
      'custom',
      '--broker-port',
      '5672',
      '--broker-queue-type',
      'quorum',
      '-o',
      'daemon.default_workers=3',
      '--check',
    ]);
    expect(setup.code).toBe(0);
    expect(setup.stdout).toContain('Success: Created new profile `custom`.');
    const shownProfile = JSON.parse(
      (await sandbox.run(['profile', 'show', 'custom', '--json'])).stdout,
    );
    expect(shownProfile.broker.config.queueType).toBe('quorum');
    expect(shownProfile.options['daemon.default_workers']).toBe(3);
    const bad = await sandbox.run(['profile', 'setup', 'bad name']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^Error: .*bad name/);
    const set = await sandbox.run(['profile', 'set-default', 'presto']);
    expect(set.code).toBe(0);
    expect(JSON.parse(readFileSync(configFile(), 'utf8')).default_profile).toBe('presto');
    const unknown = await sandbox.run(['profile', 'set-default', 'ghost']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^Error: Profile 'ghost' not found/);
  });

  it('config list shows value, source, default, unit and description; --json parses', async () => {
    const text = await sandbox.run(['config', 'list']);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('options of profile `presto`');
    expect(text.stdout).toMatch(
      /^daemon\.timeout\s+default\s+10 s\s+10 s\s+How long a client waits.*\[seconds\]$/m,
    );
    const json = JSON.parse(
      (await sandbox.run(['-p', 'custom', 'config', 'list', '--json'])).stdout,
    );
    const workers = json.find((o: { name: string }) => o.name === 'daemon.default_workers');
    expect(workers).toMatchObject({ value: 3, source: 'profile', default: 1, needsRestart: true });
  });

  it('config set/get/unset on the profile and --global, in resolution order', async () => {
    expect((await sandbox.run(['config', 'set', '--global', 'daemon.timeout', '20'])).code).toBe(0);
    expect((await sandbox.run(['config', 'get', 'daemon.timeout'])).stdout.trim()).toBe('20');
    const set = await sandbox.run(['config', 'set', 'daemon.timeout', '30']);
    expect(set.code).toBe(0);
    expect(set.stdout).toContain("Success: 'daemon.timeout' set to 30 s for profile `presto`.");
    const get = JSON.parse(
      (await sandbox.run(['config', 'get', 'daemon.timeout', '--json'])).stdout,
    );
    expect(get).toMatchObject({ value: 30, source: 'profile', unit: 's', default: 10 });
    expect((await sandbox.run(['config', 'get', '--global', 'daemon.timeout'])).stdout.trim()).toBe(
      '20',
    );
    expect(
      (await sandbox.run(['-p', 'work', 'config', 'get', 'daemon.timeout'])).stdout.trim(),
    ).toBe('20');
    expect((await sandbox.run(['config', 'unset', 'daemon.timeout'])).code).toBe(0);
    expect((await sandbox.run(['config', 'get', 'daemon.timeout'])).stdout.trim()).toBe('20');
    expect((await sandbox.run(['config', 'unset', '--global', 'daemon.timeout'])).code).toBe(0);
    expect((await sandbox.run(['config', 'get', 'daemon.timeout'])).stdout.trim()).toBe('10');
    const list = await sandbox.run(['config', 'set', 'engine.plugins', '["./plugin.js"]']);
    expect(list.code).toBe(0);
    expect(
      JSON.parse((await sandbox.run(['config', 'get', 'engine.plugins', '--json'])).stdout).value,
    ).toEqual(['./plugin.js']);
  });

  it('a bad option value names the option and the expected type, and changes nothing', async () => {
    const before = readFileSync(configFile());
    const result = await sandbox.run(['config', 'set', 'daemon.worker_process_slots', 'many']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^Error: Invalid value "many" for option 'daemon\.worker_process_slots'.*expected number/,
    );
    expect(result.stderr).toContain('Hint: See `aiida config list`');
    const unknown = await sandbox.run(['config', 'set', 'daemon.timout', '3']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(
      /^Error: Unknown option 'daemon\.timout'\. Did you mean 'daemon\.timeout'\?/,
    );
    const rule = await sandbox.run(['config', 'set', 'daemon.lease_timeout', '1']);
    expect(rule.code).toBe(2);
    expect(rule.stderr).toMatch(/daemon\.lease_timeout/);
    expect(readFileSync(configFile()).equals(before)).toBe(true);
  });

  it('profile delete refuses without -y, then deletes (keeping or deleting data)', async () => {
    sandbox.remember('presto-2');
    const keep = await sandbox.run(['profile', 'delete', 'presto-2', '-y']);
    expect(keep.code).toBe(0);
    expect(keep.stdout).toContain('its data stays in');
    const gone = await sandbox.run(['profile', 'delete', 'custom', '--delete-data', '-y']);
    expect(gone.code).toBe(0);
    expect(existsSync(join(sandbox.aiidaPath, '.aiida', 'storage', 'custom'))).toBe(false);
    expect(sandbox.profiles().sort()).toEqual(['presto', 'work']);
    const ghost = await sandbox.run(['profile', 'delete', 'ghost', '-y']);
    expect(ghost.code).toBe(1);
    expect(shown(ghost)).toContain("Profile 'ghost' not found");
  });
});
