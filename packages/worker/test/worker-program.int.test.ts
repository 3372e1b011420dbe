// Integration: the built worker program against the real RabbitMQ, driven as the supervisor does.
import { type ChildProcess, fork } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WorkerToSupervisorMessage } from '@aiida/ipc';
import { deleteProfileTopology } from '../../../tests/support/broker-cleanup.js';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import {
  createTestProfile,
  sqliteFilepath,
  type TestProfile,
} from '../../../tests/support/test-profile.js';
import { waitFor } from '../../../tests/support/wait-for.js';

const WORKER_BIN = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/bin.js');

let tp: TestProfile;
let child: ChildProcess | undefined;

interface Run {
  child: ChildProcess;
  messages: WorkerToSupervisorMessage[];
  stderr: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startWorker(profile = tp.profile): Run {
  const started = fork(WORKER_BIN, ['--profile', profile.name], {
    env: { ...process.env, AIIDA_PATH: profile.aiidaPath },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child = started;
  const messages: WorkerToSupervisorMessage[] = [];
  const stderr: string[] = [];
  started.on('message', (m) => messages.push(m as WorkerToSupervisorMessage));
  started.stderr?.on('data', (d: Buffer) => stderr.push(d.toString()));
  started.stdout?.resume();
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
    started.once('exit', (code, signal) => done({ code, signal })),
  );
  return { child: started, messages, stderr, exit };
}

beforeEach(() => {
  tp = createTestProfile({ name: 'worker' });
});

afterEach(async () => {
  if (child?.pid) await stopPid(child.pid);
  child = undefined;
  await deleteProfileTopology(tp.profile);
  tp.remove();
});

test('ready, heartbeats, then the shutdown message: drains, closes, exits 0', async () => {
  const run = startWorker();
  await waitFor(() => run.messages.filter((m) => m.type === 'heartbeat').length >= 2, {
    timeout: 20,
    what: 'ready and two heartbeats',
  });
  expect(run.messages[0]).toMatchObject({
    v: 1,
    type: 'ready',
    pid: run.child.pid,
    slotsTotal: 200,
  });
  run.child.send({ v: 1, type: 'shutdown', gracefulTimeout: 2 });
  expect(await run.exit).toEqual({ code: 0, signal: null });
});

test('SIGTERM takes the same path and exits 0', async () => {
  const run = startWorker();
  await waitFor(() => run.messages.some((m) => m.type === 'ready'), { timeout: 20, what: 'ready' });
  run.child.kill('SIGTERM');
  expect(await run.exit).toEqual({ code: 0, signal: null });
});

test('a closed IPC channel (supervisor gone) makes it drain and exit within 5 s', async () => {
  const run = startWorker();
  await waitFor(() => run.messages.some((m) => m.type === 'ready'), { timeout: 20, what: 'ready' });
  const t0 = Date.now();
  run.child.disconnect();
  expect(await run.exit).toEqual({ code: 0, signal: null });
  expect(Date.now() - t0).toBeLessThan(6000);
  expect(run.stderr.join('')).toContain("supervisor's channel closed");
});

test('an unreachable broker: fatal with ECONNREFUSED and the redacted URL, stderr, exit 1', async () => {
  const bad = createTestProfile({ name: 'worker-bad', broker: { port: 5999 } });
  try {
    const run = startWorker(bad.profile);
    expect(await run.exit).toEqual({ code: 1, signal: null });
    const fatal = run.messages.find((m) => m.type === 'fatal');
    expect(fatal).toBeDefined();
    const text = fatal?.type === 'fatal' ? fatal.error : '';
    expect(text).toContain('ECONNREFUSED');
    expect(text).toContain('amqp://guest:***@127.0.0.1:5999');
    expect(run.stderr.join('')).toContain('ECONNREFUSED');
    expect(run.messages.some((m) => m.type === 'ready')).toBe(false);
    expect(isAlive(run.child.pid as number)).toBe(false);
  } finally {
    bad.remove();
  }
});

test('a store that cannot be opened: fatal naming it, exit 1, nothing taken from the queue', async () => {
  // A folder where the SQLite file should be.
  mkdirSync(sqliteFilepath(tp.profile), { recursive: true });
  const run = startWorker();
  expect(await run.exit).toEqual({ code: 1, signal: null });
  const fatal = run.messages.find((m) => m.type === 'fatal');
  const text = fatal?.type === 'fatal' ? fatal.error : '';
  expect(text).toMatch(/^cannot start taking work: cannot open the process store at /);
  expect(text).toContain(sqliteFilepath(tp.profile));
  expect(text).not.toContain('cannot connect to the broker');
  expect(run.stderr.join('')).toContain(text);
  expect(run.messages.some((m) => m.type === 'ready')).toBe(false);
});
