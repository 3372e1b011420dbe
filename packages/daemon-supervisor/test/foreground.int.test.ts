// Integration: runSupervisor in this very process (what the client's `foreground: true` uses).

import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getDaemonDir } from '@aiida/config';
import { readDaemonState, runSupervisor, type Supervisor } from '@aiida/daemon-supervisor';
import type { DaemonStatus } from '@aiida/ipc';
import { deleteProfileTopology } from '../../../tests/support/broker-cleanup.js';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import {
  createTestProfile,
  type TestProfile,
  withLogTails,
} from '../../../tests/support/test-profile.js';
import { controlResult } from './support/supervisor-process.js';

const WORKER_BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../../worker/dist/bin.js');

let tp: TestProfile;
let supervisor: Supervisor | undefined;
const workerPids: number[] = [];

beforeEach(() => {
  tp = createTestProfile({ name: 'fg' });
});

afterEach(async () => {
  await supervisor?.stop({ gracefulTimeout: 2 }).catch(() => {});
  supervisor = undefined;
  for (const pid of workerPids.splice(0)) await stopPid(pid);
  await deleteProfileTopology(tp.profile);
  tp.remove();
});

test('runSupervisor starts the workers in-process, serves the socket, stop() ends it with 0', async () => {
  await withLogTails(tp.logTails, async () => {
    const started: unknown[] = [];
    supervisor = await runSupervisor({
      profile: tp.profile,
      numberWorkers: 2,
      handleSignals: false,
      workerProgram: WORKER_BIN,
      onStarted: (info) => started.push(info),
    });
    expect(started).toEqual([{ pid: process.pid, socketPath: supervisor.socketPath }]);
    expect(readDaemonState(tp.profile)).toMatchObject({ live: true, state: { pid: process.pid } });
    const s = await controlResult<DaemonStatus>(supervisor.socketPath, { type: 'status' });
    expect(s.workers.map((w) => w.state)).toEqual(['ready', 'ready']);
    for (const w of s.workers) workerPids.push(w.pid as number);

    await supervisor.stop();
    expect(await supervisor.done).toBe(0);
    for (const pid of workerPids) expect(isAlive(pid)).toBe(false);
    expect(existsSync(join(getDaemonDir(tp.profile), 'daemon.json'))).toBe(false);
    expect(existsSync(supervisor.socketPath)).toBe(false);
  });
});

test('a second runSupervisor for the same profile is refused with already_running', async () => {
  await withLogTails(tp.logTails, async () => {
    supervisor = await runSupervisor({
      profile: tp.profile,
      numberWorkers: 1,
      handleSignals: false,
      workerProgram: WORKER_BIN,
    });
    await expect(
      runSupervisor({ profile: tp.profile, numberWorkers: 1, handleSignals: false }),
    ).rejects.toMatchObject({ code: 'already_running' });
    // The refused one touched nothing of the running daemon.
    expect(readDaemonState(tp.profile)).toMatchObject({ live: true });
    expect(existsSync(supervisor.socketPath)).toBe(true);
  });
});
