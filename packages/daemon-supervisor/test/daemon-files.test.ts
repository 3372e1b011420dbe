import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getDaemonDir } from '@aiida/config';
import {
  chooseSocketPath,
  daemonStatePath,
  MAX_SOCKET_PATH_BYTES,
  readDaemonState,
} from '@aiida/daemon-supervisor';
import { preparePrivateSocketDir, writeFileAtomic } from '../src/daemon-files.js';
import { FAKE_BOOT_ID, fakeProc } from './support/fake-proc.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'aiida-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('chooseSocketPath', () => {
  test('the daemon folder when the path fits', () => {
    expect(chooseSocketPath('/home/u/.aiida/daemon/p')).toEqual({
      path: '/home/u/.aiida/daemon/p/daemon.sock',
    });
  });

  test('a short private folder when the path is longer than 107 bytes', () => {
    const deep = `/home/u/${'x'.repeat(120)}/.aiida/daemon/p`;
    const location = chooseSocketPath(deep, { uid: 1234, tmpRoot: '/tmp' });
    expect(location.path).toMatch(/^\/tmp\/aiida-1234-[0-9a-f]{16}\/d\.sock$/);
    expect(location.fallbackDir).toBe(location.path.slice(0, -'/d.sock'.length));
    expect(Buffer.byteLength(location.path)).toBeLessThanOrEqual(MAX_SOCKET_PATH_BYTES);
    // Stable for the same folder, different for another.
    expect(chooseSocketPath(deep, { uid: 1234 }).path).toBe(location.path);
    expect(chooseSocketPath(`${deep}2`, { uid: 1234 }).path).not.toBe(location.path);
  });

  test('counts bytes, not characters', () => {
    // 63 characters, but 113 bytes.
    const location = chooseSocketPath(`/${'é'.repeat(50)}`, { uid: 1 });
    expect(location.fallbackDir).toBeDefined();
  });

  test('the private folder is made 0700, and a foreign file in its place is refused', () => {
    const fallback = join(dir, 'sock-dir');
    preparePrivateSocketDir(fallback);
    expect(statSync(fallback).mode & 0o777).toBe(0o700);
    preparePrivateSocketDir(fallback); // exists already: fine
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    expect(() => preparePrivateSocketDir(file)).toThrow(/not a folder owned by/);
  });
});

describe('state file', () => {
  const profile = () => ({ name: 'p', aiidaPath: dir });
  const state = (pid: number, startTime: number) => ({
    v: 1,
    pid,
    hostname: 'h',
    bootId: FAKE_BOOT_ID,
    startTime,
    socketPath: '/x/daemon.sock',
    protocolVersion: 1,
    profile: 'p',
    startedAt: new Date().toISOString(),
  });
  const write = (value: unknown) => {
    mkdirSync(getDaemonDir(profile()), { recursive: true });
    writeFileAtomic(daemonStatePath(profile()), JSON.stringify(value));
  };

  test('no file: undefined', () => {
    expect(readDaemonState(profile(), fakeProc({}), 'h')).toBeUndefined();
  });

  test('live while pid, start time and boot id match; stale otherwise, with a reason', () => {
    write(state(10, 500));
    expect(readDaemonState(profile(), fakeProc({ 10: 500 }), 'h')).toMatchObject({
      live: true,
      state: { pid: 10 },
    });
    expect(readDaemonState(profile(), fakeProc({ 10: 501 }), 'h')).toMatchObject({
      live: false,
      state: { pid: 10 },
      reason: expect.stringContaining('another process'),
    });
    expect(readDaemonState(profile(), fakeProc({}), 'h')).toMatchObject({
      live: false,
      reason: 'process 10 is not running',
    });
  });

  test("another host's file is foreign, never stale, whatever this host's /proc says", () => {
    write(state(10, 500));
    expect(readDaemonState(profile(), fakeProc({}), 'other')).toMatchObject({
      live: false,
      foreign: true,
      state: { pid: 10, hostname: 'h' },
      reason: expect.stringContaining("written by host 'h'"),
    });
    expect(readDaemonState(profile(), fakeProc({ 10: 500 }), 'other')?.live).toBe(false);
  });

  test('a file that is not a state file is stale, never thrown', () => {
    write({ hello: 'world' });
    expect(readDaemonState(profile(), fakeProc({}), 'h')).toMatchObject({
      live: false,
      state: undefined,
      reason: expect.stringContaining('not a valid daemon state file'),
    });
  });

  test('atomic write leaves no temp file and mode 0600', () => {
    write(state(10, 500));
    const path = daemonStatePath(profile());
    expect(JSON.parse(readFileSync(path, 'utf8')).pid).toBe(10);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(getDaemonDir(profile())).filter((name) => name.endsWith('.tmp'))).toEqual(
      [],
    );
  });
});
