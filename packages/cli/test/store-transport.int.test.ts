// Process control core.store from the command line: presto --broker store, status, profile
// configure-broker (refused while the daemon runs), and a daemon that runs processes with it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliSandbox, shown, TEST_OPTION_VALUES } from './cli.js';

let sandbox: CliSandbox;
beforeAll(() => {
  sandbox = new CliSandbox('aiida-cli-storeq-');
});
afterAll(async () => {
  await sandbox.cleanUp();
});

const storedBackend = (name: string): string =>
  JSON.parse(readFileSync(join(sandbox.aiidaPath, '.aiida', 'aiida-ts.json'), 'utf8')).profiles[
    name
  ].process_control.backend;

test('presto --broker store: no broker check, core.store stored, status says there is no broker', async () => {
  const presto = await sandbox.run(['-p', 'sq', 'presto', '--broker', 'store']);
  expect(presto.code).toBe(0);
  expect(presto.stdout).not.toContain('Checking the broker');
  expect(presto.stdout).toContain('Process control: core.store (chosen with --broker store)');
  expect(storedBackend('sq')).toBe('core.store');
  for (const [option, value] of TEST_OPTION_VALUES) {
    expect((await sandbox.run(['-p', 'sq', 'config', 'set', option, value])).code).toBe(0);
  }
  const status = await sandbox.run(['-p', 'sq', 'status']);
  expect(status.stdout).toMatch(/broker: +none: process control core\.store/);
  const show = await sandbox.run(['-p', 'sq', 'profile', 'show']);
  expect(show.stdout).toMatch(/broker: +core\.store \(the store is the queue/);
});

test('presto with a --broker value it does not know is a usage error and creates nothing', async () => {
  const before = sandbox.profiles();
  const result = await sandbox.run(['-p', 'bad', 'presto', '--broker', 'kafka']);
  expect(result.code).not.toBe(0);
  expect(result.stderr).toContain('Expected one of: rabbitmq, store.');
  expect(sandbox.profiles()).toEqual(before);
});

test('a core.store daemon runs submitted processes; configure-broker is refused while it runs', async () => {
  const start = await sandbox.run(['-p', 'sq', 'daemon', 'start', '2']);
  expect(start.code).toBe(0);
  try {
    const submit = await sandbox.run(
      ['-p', 'sq', 'process', 'submit', 'core.arithmetic.add', '-i', 'x=2', '-i', 'y=3', '--wait'],
      { timeout: 60 },
    );
    expect(submit.code).toBe(0);
    expect(submit.stdout).toMatch(/finished/);
    const refused = await sandbox.run(['-p', 'sq', 'profile', 'configure-broker', 'core.rabbitmq']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(
      "The daemon of profile 'sq' is running with core.store; its workers would keep taking work that way",
    );
    expect(refused.stderr).toContain('Hint: Stop it first');
    expect(storedBackend('sq')).toBe('core.store');
    const log = sandbox.logs('sq');
    expect(log).toContain('process control core.store: the store is the queue, no broker');
  } finally {
    expect((await sandbox.run(['-p', 'sq', 'daemon', 'stop'])).code).toBe(0);
  }
  const switched = await sandbox.run(['-p', 'sq', 'profile', 'configure-broker', 'core.rabbitmq']);
  expect(shown(switched)).toContain('now uses core.rabbitmq at amqp://guest:***@127.0.0.1:5672');
  expect(storedBackend('sq')).toBe('core.rabbitmq');
  const back = await sandbox.run(['profile', 'configure-broker', 'core.store', 'sq']);
  expect(back.stdout).toContain('now uses core.store');
  expect(storedBackend('sq')).toBe('core.store');
  const again = await sandbox.run(['profile', 'configure-broker', 'core.store', 'sq']);
  expect(again.stdout).toContain('already uses core.store; nothing changed');
}, 120_000);
