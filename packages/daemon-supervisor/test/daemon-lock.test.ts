import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSupervisorError } from '@aiida/daemon-supervisor';
import { waitFor } from '../../../tests/support/wait-for.js';
import { acquireDaemonLock, parseLockFile, refuseEarlierLayoutDaemon } from '../src/daemon-lock.js';
import { FAKE_BOOT_ID, fakeProc } from './support/fake-proc.js';

let dir: string;
let lockPath: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'aiida-lock-'));
  lockPath = join(dir, 'daemon.lock');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const me = { pid: 100, startTime: 5, bootId: FAKE_BOOT_ID };
const other = { pid: 200, startTime: 7, bootId: FAKE_BOOT_ID };

test('takes a free lock, writes the identity, release removes it', () => {
  const lock = acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5 }) });
  expect(parseLockFile(readFileSync(lockPath, 'utf8'))).toEqual(me);
  expect(readdirSync(dir)).toEqual(['daemon.lock']);
  lock.release();
  expect(existsSync(lockPath)).toBe(false);
  lock.release(); // idempotent
});

test('a live holder wins: already_running naming its pid, the lock untouched', () => {
  acquireDaemonLock(lockPath, other, { read: fakeProc({ 200: 7 }) });
  const before = readFileSync(lockPath, 'utf8');
  let thrown: unknown;
  try {
    acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5, 200: 7 }), profileName: 'p' });
  } catch (error) {
    thrown = error;
  }
  expect(isSupervisorError(thrown) && thrown.code).toBe('already_running');
  expect((thrown as Error).message).toContain("profile 'p' is already running (pid 200)");
  expect(readFileSync(lockPath, 'utf8')).toBe(before);
  expect(readdirSync(dir)).toEqual(['daemon.lock']);
});

test.each<[string, Record<number, number>]>([
  ['its pid is gone', {}],
  ['its pid was reused', { 200: 999 }],
])('a lock whose holder is not live is taken over (%s)', (_what, running) => {
  acquireDaemonLock(lockPath, other, { read: fakeProc({ 200: 7 }) });
  const lock = acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5, ...running }) });
  expect(parseLockFile(readFileSync(lockPath, 'utf8'))).toEqual(me);
  expect(readdirSync(dir)).toEqual(['daemon.lock']);
  lock.release();
});

test('a lock from another boot is stale', () => {
  writeFileSync(lockPath, JSON.stringify({ ...other, bootId: 'boot-0' }));
  acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5, 200: 7 }) });
  expect(parseLockFile(readFileSync(lockPath, 'utf8'))).toEqual(me);
});

test('a corrupt lock file is stale', () => {
  writeFileSync(lockPath, '{"pid":');
  acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5 }) });
  expect(parseLockFile(readFileSync(lockPath, 'utf8'))).toEqual(me);
});

test('release leaves a lock that is no longer ours alone', () => {
  const lock = acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5 }) });
  writeFileSync(lockPath, JSON.stringify(other));
  lock.release();
  expect(parseLockFile(readFileSync(lockPath, 'utf8'))).toEqual(other);
});

test('of many starters over a stale lock one takes it over; the rest see it live', () => {
  writeFileSync(lockPath, JSON.stringify({ pid: 300, startTime: 1, bootId: FAKE_BOOT_ID }));
  const starters = Array.from({ length: 8 }, (_, i) => ({
    pid: 400 + i,
    startTime: 1,
    bootId: FAKE_BOOT_ID,
  }));
  const running = Object.fromEntries(starters.map((s) => [s.pid, 1]));
  const outcomes = starters.map((s) => {
    try {
      acquireDaemonLock(lockPath, s, { read: fakeProc(running) });
      return 'won';
    } catch (error) {
      return isSupervisorError(error) ? error.code : 'other';
    }
  });
  expect(outcomes.filter((o) => o === 'won')).toHaveLength(1);
  expect(outcomes.filter((o) => o === 'already_running')).toHaveLength(7);
});

test('of many starter processes racing over a stale lock at once, exactly one wins (5 rounds)', async () => {
  const { spawn } = await import('node:child_process');
  const lockModule = join(import.meta.dirname, '../dist/daemon-lock.js');
  const identityModule = join(import.meta.dirname, '../dist/process-identity.js');
  if (!existsSync(lockModule)) throw new Error(`build the package first: ${lockModule} is missing`);
  const script = join(dir, 'starter.mjs');
  writeFileSync(
    script,
    `import { existsSync } from 'node:fs';
import { acquireDaemonLock } from ${JSON.stringify(lockModule)};
import { bootId, processStartTime } from ${JSON.stringify(identityModule)};
import { writeFileSync } from 'node:fs';
const [lockPath, go, ready] = process.argv.slice(2);
const me = { pid: process.pid, startTime: processStartTime(process.pid), bootId: bootId() };
writeFileSync(ready, '');
while (!existsSync(go)) {}
let outcome;
try { acquireDaemonLock(lockPath, me); outcome = 'won'; } catch (error) { outcome = error.code ?? String(error); }
process.stdout.write(outcome);
// Stay alive (holding what we won) until every starter has tried.
setTimeout(() => {}, 1500);
`,
  );
  for (let round = 0; round < 5; round++) {
    const go = join(dir, `go-${round}`);
    // A stale lock: a pid that does not run.
    writeFileSync(lockPath, JSON.stringify({ pid: 2 ** 22 + 1, startTime: 1, bootId: 'old' }));
    const readyFiles = Array.from({ length: 6 }, (_, i) => join(dir, `ready-${round}-${i}`));
    const children = readyFiles.map((ready) =>
      spawn(process.execPath, [script, lockPath, go, ready], { stdio: ['ignore', 'pipe', 'pipe'] }),
    );
    const outcomes = children.map(
      (child) =>
        new Promise<string>((resolve) => {
          let out = '';
          let err = '';
          child.stdout.on('data', (chunk) => {
            out += chunk;
          });
          child.stderr.on('data', (chunk) => {
            err += chunk;
          });
          child.on('close', () => resolve(out || `no outcome: ${err}`));
        }),
    );
    // Start them together once every child spins on the go file.
    await waitFor(() => readyFiles.every((file) => existsSync(file)), {
      timeout: 20,
      what: 'every starter to be ready',
    });
    writeFileSync(go, '');
    const results = await Promise.all(outcomes);
    expect(results.filter((r) => r === 'won')).toHaveLength(1);
    expect(results.filter((r) => r === 'already_running')).toHaveLength(5);
    rmSync(lockPath, { force: true });
  }
}, 60_000);

test('a lock recorded by another host is never taken over here, even when its pid means nothing here', () => {
  acquireDaemonLock(lockPath, other, { read: fakeProc({ 200: 7 }), hostname: 'node2' });
  const before = readFileSync(lockPath, 'utf8');
  expect(parseLockFile(before)).toEqual({ ...other, hostname: 'node2' });
  let thrown: unknown;
  try {
    // Pid 200 does not run here: a lock of this host would be stale.
    acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5 }), hostname: 'node1' });
  } catch (error) {
    thrown = error;
  }
  expect(isSupervisorError(thrown) && thrown.code).toBe('already_running');
  expect((thrown as Error).message).toContain("held by host 'node2' (pid 200)");
  expect(readFileSync(lockPath, 'utf8')).toBe(before);
  // The same host judges it as usual: stale, taken over.
  const lock = acquireDaemonLock(lockPath, me, { read: fakeProc({ 100: 5 }), hostname: 'node2' });
  expect(parseLockFile(readFileSync(lockPath, 'utf8'))).toEqual({ ...me, hostname: 'node2' });
  lock.release();
});

describe('a daemon of an earlier release (its lock one folder up)', () => {
  test('refused while its holder runs: already_running naming its pid and what to do', () => {
    writeFileSync(lockPath, JSON.stringify(other));
    let thrown: unknown;
    try {
      refuseEarlierLayoutDaemon(lockPath, {
        profileName: 'p',
        hostname: 'h1',
        read: fakeProc({ 200: 7 }),
      });
    } catch (error) {
      thrown = error;
    }
    expect(isSupervisorError(thrown) && thrown.code).toBe('already_running');
    expect((thrown as Error).message).toContain(
      "earlier release is running for profile 'p' (pid 200",
    );
    expect((thrown as Error).message).toContain('kill -TERM 200');
    expect(readFileSync(lockPath, 'utf8')).toBe(JSON.stringify(other)); // untouched
  });

  test.each<[string, string | undefined, Record<number, number>]>([
    ['no lock there', undefined, {}],
    ['its holder is gone', JSON.stringify(other), {}],
    ['another host wrote it', JSON.stringify({ ...other, hostname: 'h2' }), { 200: 7 }],
    ['it is not a lock file', 'garbage', { 200: 7 }],
  ])('no refusal when %s', (_what, content, running) => {
    if (content !== undefined) writeFileSync(lockPath, content);
    expect(() =>
      refuseEarlierLayoutDaemon(lockPath, { hostname: 'h1', read: fakeProc(running) }),
    ).not.toThrow();
    if (content !== undefined) expect(readFileSync(lockPath, 'utf8')).toBe(content);
  });
});
