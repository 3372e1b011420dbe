// `aiida web` as a user runs it: the built bin serves the dashboard of the profile until Ctrl+C;
// a non-loopback host gets a generated token; a short token is a usage error.
import type { ChildProcess } from 'node:child_process';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import {
  CliSandbox,
  collect,
  freePort,
  prestoWithTestOptions,
  shown,
  waitForOutput,
} from './cli.js';

describe('aiida web', () => {
  let sandbox: CliSandbox;
  const started: ChildProcess[] = [];

  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-web-');
    await prestoWithTestOptions(sandbox, 'web-cli');
  }, 60_000);
  afterAll(async () => {
    for (const child of started) if (child.pid && isAlive(child.pid)) await stopPid(child.pid, 3);
    await sandbox.cleanUp();
  }, 60_000);

  test('serves the dashboard, the API and /metrics on loopback, and stops on Ctrl+C', async () => {
    const port = await freePort();
    const child = sandbox.spawn(['-p', 'web-cli', 'web', '--port', String(port)]);
    started.push(child);
    const done = collect(child, 60, ['web']);
    await waitForOutput(child, `at http://127.0.0.1:${port}/`);
    const page = await fetch(`http://127.0.0.1:${port}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('web-cli');
    const list = await fetch(`http://127.0.0.1:${port}/api/processes`);
    expect(await list.json()).toEqual({ total: 0, processes: [] });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('# TYPE aiida_processes gauge');
    expect(metrics).toContain('aiida_daemon_up 0');
    child.kill('SIGINT');
    const result = await done;
    expect(result.code).toBe(0);
    await waitFor(
      async () =>
        fetch(`http://127.0.0.1:${port}/`).then(
          () => false,
          () => true,
        ),
      {
        timeout: 10,
        what: 'the port to be closed',
      },
    );
  }, 60_000);

  test('a non-loopback host prints a generated token that every request needs', async () => {
    const port = await freePort();
    const child = sandbox.spawn([
      '-p',
      'web-cli',
      'web',
      '--host',
      '0.0.0.0',
      '--port',
      String(port),
    ]);
    started.push(child);
    const done = collect(child, 60, ['web']);
    const output = await waitForOutput(child, /Access token[^:]*: (\S+)/);
    const token = /Access token[^:]*: (\S+)/.exec(output)![1]!;
    const refused = await fetch(`http://127.0.0.1:${port}/api/processes`);
    expect(refused.status).toBe(401);
    const allowed = await fetch(`http://127.0.0.1:${port}/api/processes`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(allowed.status).toBe(200);
    child.kill('SIGINT');
    expect((await done).code).toBe(0);
  }, 60_000);

  test('a token shorter than 16 characters is a usage error naming the rule', async () => {
    const result = await sandbox.run([
      '-p',
      'web-cli',
      'web',
      '--host',
      '0.0.0.0',
      '--token',
      'short',
      '--port',
      String(await freePort()),
    ]);
    expect([result.code, shown(result)]).toEqual([2, expect.any(String)]);
    expect(result.stderr).toContain('at least 16 characters');
    expect(result.stderr).toContain('Hint:');
  }, 60_000);
});
