import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import { DaemonException, getDaemonClient } from '../src/index.js';
import {
  allGone,
  cleanBrokerTopology,
  createTestProfile,
  expectNothingLeft,
  type TestProfile,
  withLogs,
  workerPids,
} from './helpers.js';

const FOREGROUND = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'foreground.mjs');

describe('startDaemon({ foreground: true })', () => {
  let tp: TestProfile;
  let child: ChildProcess | undefined;

  beforeAll(() => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'foreground' });
  });
  afterEach(async () => {
    if (child?.pid) await stopPid(child.pid, 10);
    child = undefined;
    await expectNothingLeft(tp.profile);
  });
  afterAll(async () => {
    await cleanBrokerTopology(tp.profile);
    tp.remove();
  });

  it('runs the supervisor in the calling process until SIGTERM, then resolves', async () => {
    await withLogs(tp, async () => {
      // Runs the built client (dist): `pnpm build` first.
      const proc = spawn(process.execPath, [FOREGROUND, '3'], {
        env: { ...process.env, AIIDA_PATH: tp.aiidaPath },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child = proc;
      let stdout = '';
      let stderr = '';
      proc.stdout?.on('data', (chunk) => {
        stdout += chunk;
      });
      proc.stderr?.on('data', (chunk) => {
        stderr += chunk;
      });
      const exited = new Promise<number | null>((resolve) =>
        proc.on('exit', (code) => resolve(code)),
      );

      const client = getDaemonClient();
      const status = await waitFor(
        async () => {
          if (!client.isDaemonRunning) return undefined;
          const s = await client.getStatus();
          return s.workers.length === 3 && s.workers.every((w) => w.state === 'ready')
            ? s
            : undefined;
        },
        { timeout: 30, what: `the foreground daemon to be ready (stderr: ${stderr})` },
      );
      expect(status.pid).toBe(proc.pid);
      // A detached start is refused meanwhile.
      await expect(client.startDaemon()).rejects.toBeInstanceOf(DaemonException);

      const workers = workerPids(status.workers);
      proc.kill('SIGTERM');
      const code = await exited;
      expect(code).toBe(0);
      const result = JSON.parse(stdout.trim());
      expect(result).toMatchObject({
        pid: proc.pid,
        numberWorkers: 3,
        ready: true,
        foreground: true,
        exitCode: 128 + 15,
      });
      expect(allGone(workers)).toBe(true);
      expect(isAlive(proc.pid as number)).toBe(false);
      expect(client.isDaemonRunning).toBe(false);
      expect(existsSync(client.stateFilePath)).toBe(false);
    });
  }, 60_000);
});
