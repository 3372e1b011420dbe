// Issue 10, acceptance 2: the main job with no route to any broker. `aiida demo` runs inside a
// network namespace of its own with only loopback up (`unshare -n`), where 127.0.0.1:5672 refuses;
// it picks core.store (the store is the queue), says so in its first lines, finishes every process
// and checks every result. A namespace test: chaos layer (serial). The namespace goes with its
// last process; the demo stops its daemon itself, and the sandbox's clean-up stops any leftover.
import { spawn } from 'node:child_process';
import { getProfile } from '@aiida/config';
import { BIN, CliSandbox, collect, shown } from './cli.js';

/** Runs `node ...args` in a new network namespace with loopback up, in the sandbox's environment. */
function inIsolatedNetwork(sandbox: CliSandbox, args: string[], timeout: number) {
  const quoted = [process.execPath, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && exec ${quoted}`], {
    env: sandbox.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return collect(child, timeout, ['unshare -n', ...args]);
}

describe('aiida demo with no broker to reach', () => {
  let sandbox: CliSandbox;
  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-nobroker-');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it('inside the namespace, a connection to 127.0.0.1:5672 is refused (the cut bites)', async () => {
    const probe = await inIsolatedNetwork(
      sandbox,
      [
        '-e',
        "require('node:net').connect(5672, '127.0.0.1').on('error', (e) => { console.log(e.code); process.exit(0) }).on('connect', () => { console.log('CONNECTED'); process.exit(1) })",
      ],
      30,
    );
    expect(shown(probe)).toContain('ECONNREFUSED');
    expect(probe.code).toBe(0);
  });

  it('picks core.store, says so first, and finishes and checks every process', async () => {
    const result = await inIsolatedNetwork(
      sandbox,
      [
        BIN,
        'demo',
        '--calculations',
        '60',
        '--workflows',
        '15',
        '--sleep',
        '0.5',
        '--aiida-path',
        sandbox.aiidaPath,
      ],
      240,
    );
    expect(shown(result)).toContain('Success: The demo passed');
    expect(result.code).toBe(0);
    const firstLines = result.stdout.split('\n').slice(0, 4).join('\n');
    expect(firstLines).toMatch(
      /Checking the broker at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:5672\/.*no answer/,
    );
    expect(firstLines).toContain(
      'Process control: core.store (the store is the queue, no broker), since RabbitMQ at amqp://guest:***@127.0.0.1:5672/?heartbeat=600 did not answer (connect ECONNREFUSED 127.0.0.1:5672)',
    );
    expect(result.stdout).toContain('Results checked: 75 of 75 correct');
    expect(result.stdout).toMatch(/^core\.arithmetic\.add\s+60\s+60\s+0\s+0\s+0$/m);
    expect(result.stdout).toMatch(/^core\.arithmetic\.multiply_add\s+15\s+15\s+0\s+0\s+0$/m);
    expect(result.stdout).toMatch(/Stopping the daemon\.\.\. OK\n/);
    expect(result.stderr).toBe('');
    const profile = getProfile(undefined, { aiidaPath: sandbox.aiidaPath });
    expect(profile.broker.backend).toBe('core.store');
  }, 300_000);
});
