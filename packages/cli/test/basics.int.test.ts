// The command line as a whole: help with examples everywhere, version, usage errors as one line
// plus a hint, no colours and no prompts without a terminal. Runs the built bin; needs no broker.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliSandbox, shown } from './cli.js';

/** Every command of the tree (kept in step with the program by the `--help` listing test). */
const COMMANDS = [
  [],
  ['presto'],
  ['profile'],
  ['profile', 'list'],
  ['profile', 'show'],
  ['profile', 'setup'],
  ['profile', 'import-aiida'],
  ['profile', 'set-default'],
  ['profile', 'configure-broker'],
  ['profile', 'delete'],
  ['config'],
  ['config', 'list'],
  ['config', 'get'],
  ['config', 'set'],
  ['config', 'unset'],
  ['daemon'],
  ['daemon', 'start'],
  ['daemon', 'stop'],
  ['daemon', 'restart'],
  ['daemon', 'status'],
  ['daemon', 'incr'],
  ['daemon', 'decr'],
  ['daemon', 'logshow'],
  ['daemon', 'worker'],
  ['process'],
  ['process', 'submit'],
  ['process', 'run'],
  ['process', 'list'],
  ['process', 'show'],
  ['process', 'report'],
  ['process', 'status'],
  ['process', 'call-root'],
  ['process', 'pause'],
  ['process', 'play'],
  ['process', 'kill'],
  ['process', 'watch'],
  ['process', 'delete'],
  ['status'],
  ['demo'],
  ['completion'],
  ['web'],
];

// biome-ignore lint/suspicious/noControlCharactersInRegex: looking for colour escapes
const ESCAPES = /\u001b\[/;

describe('aiida: help, version and usage errors', () => {
  let sandbox: CliSandbox;

  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-basics-');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it.each(COMMANDS.map((c) => [c.join(' ') || '(root)', c]))(
    '`aiida %s --help` exits 0 and shows usage and examples',
    async (_name, command) => {
      const result = await sandbox.run([...(command as string[]), '--help']);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^Usage: aiida/);
      expect(result.stdout).toContain('Examples:');
      expect(result.stdout).toMatch(/\$ aiida /);
      expect(result.stderr).toBe('');
    },
  );

  it('lists exactly the commands the tests know about under each group', async () => {
    for (const group of ['profile', 'config', 'daemon', 'process']) {
      const result = await sandbox.run([group, '--help']);
      const listed = [...result.stdout.matchAll(/^ {2}([a-z-]+)(?: \[| <| {2})/gm)]
        .map((m) => m[1])
        .filter((name) => name !== 'help');
      const known = COMMANDS.filter((c) => c.length === 2 && c[0] === group).map((c) => c[1]);
      expect(listed.sort()).toEqual(known.sort());
    }
  });

  it('prints its version', async () => {
    const result = await sandbox.run(['--version']);
    const manifest = JSON.parse(readFileSync(join(__dirname_(), '..', 'package.json'), 'utf8'));
    expect(result.code).toBe(0);
    expect(result.stdout.trim()).toBe(manifest.version);
  });

  it('an unknown command is one error line plus a hint, exit code 2', async () => {
    const result = await sandbox.run(['deamon', 'start']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    const lines = result.stderr.trim().split('\n');
    expect(lines[0]).toMatch(/^Error: Unknown command 'deamon'. \(Did you mean daemon\?\)$/);
    expect(lines[lines.length - 1]).toMatch(/^Hint: .*aiida --help/);
    expect(lines.length).toBeLessThanOrEqual(2);
  });

  it('a bad option value names the option and the expected type, exit code 2', async () => {
    const timeout = await sandbox.run(['daemon', 'status', '--timeout', 'soon']);
    expect(timeout.code).toBe(2);
    expect(timeout.stderr).toMatch(
      /^Error: Option '-t, --timeout <seconds>' argument 'soon' is invalid\. Expected a number of seconds/,
    );
    expect(timeout.stderr).toContain('Hint: Run `aiida daemon status --help`');

    const workers = await sandbox.run(['daemon', 'start', 'two']);
    expect(workers.code).toBe(2);
    expect(workers.stderr).toMatch(
      /value 'two' is invalid for argument 'number'\. Expected a positive integer/,
    );

    const port = await sandbox.run(['presto', '--broker-port', '99999']);
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(
      /--broker-port <port>' argument '99999' is invalid\. Expected a port number/,
    );

    const input = await sandbox.run(['process', 'submit', 'core.arithmetic.add', '-i', 'x']);
    expect(input.code).toBe(2);
    expect(input.stderr).toMatch(
      /--input <key=value>' argument 'x' is invalid\. Expected key=value/,
    );
  });

  it('a command that needs a profile, with none configured, says how to make one', async () => {
    const result = await sandbox.run(['daemon', 'status']);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^Error: No profile given, AIIDA_PROFILE is not set/);
    expect(result.stderr).toContain('aiida presto');
    expect(result.stdout).toBe('');
  });

  it('an unknown profile is one clear line and a hint, exit code 1', async () => {
    const result = await sandbox.run(['-p', 'nope', 'daemon', 'status']);
    expect(result.code).toBe(1);
    const [first, second] = result.stderr.trim().split('\n');
    expect(first).toMatch(/^Error: Profile 'nope' not found in .*aiida-ts\.json\./);
    expect(second).toMatch(/^Hint: .*aiida profile list/);
  });

  it('never colours output that is not a terminal', async () => {
    const results = await Promise.all([
      sandbox.run(['--help']),
      sandbox.run(['-p', 'nope', 'status']),
      sandbox.run(['config', 'list', '--global']),
    ]);
    for (const result of results) {
      expect(ESCAPES.test(result.stdout + result.stderr)).toBe(false);
    }
  });

  it('colours with FORCE_COLOR', async () => {
    const result = await sandbox.run(['-p', 'nope', 'daemon', 'status'], {
      env: { FORCE_COLOR: '1' },
    });
    expect(ESCAPES.test(result.stderr)).toBe(true);
  });

  it('without a terminal, a command that needs confirmation fails instead of prompting', async () => {
    await sandbox.run(['profile', 'setup', 'victim']);
    sandbox.remember('victim');
    const result = await sandbox.run(['profile', 'delete', 'victim']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/needs confirmation, and there is no terminal/);
    expect(result.stderr).toContain('Hint: Pass -y/--yes');
    expect(sandbox.profiles()).toContain('victim');
    const yes = await sandbox.run(['profile', 'delete', 'victim', '-y']);
    expect(yes.code).toBe(0);
    expect(sandbox.profiles()).not.toContain('victim');
  });

  it('process commands refuse contradictory arguments with a usage error', async () => {
    const result = await sandbox.run(['process', 'kill']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^Error: Give the pks of the processes to kill, or --all\.\n/);
    expect(result.stderr).not.toContain('not both');
    const both = await sandbox.run(['process', 'pause', '3', '--all']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/^Error: Give either process pks or --all, not both\.\n/);
    const none = await sandbox.run(['process', 'delete']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(
      /^Error: Give the pks of the processes to delete, or --older-than DAYS\.\n/,
    );
    const delBoth = await sandbox.run(['process', 'delete', '3', '--older-than', '2']);
    expect(delBoth.code).toBe(2);
    expect(shown(delBoth)).toContain('Give either process pks or --older-than DAYS, not both.');
  });
});

function __dirname_(): string {
  return new URL('.', import.meta.url).pathname;
}
