import { bootId, checkLiveness, type ProcReader, processStartTime } from '@aiida/daemon-supervisor';
import { parseProcStat } from '../src/process-identity.js';

const BOOT = '5c7f1b8e-0000-4000-8000-000000000001';

/** A /proc with the given processes: pid -> [state, start time]. */
function fakeProc(processes: Record<number, [string, number]>, boot = BOOT): ProcReader {
  return (path) => {
    if (path === '/proc/sys/kernel/random/boot_id') return `${boot}\n`;
    const match = /^\/proc\/(\d+)\/stat$/.exec(path);
    const entry = match ? processes[Number(match[1])] : undefined;
    if (!entry) return undefined;
    const [state, start] = entry;
    // A command name with spaces and parentheses, as /proc allows.
    const rest = Array.from({ length: 50 }, (_, i) => (i === 19 ? String(start) : '0'));
    rest[0] = state;
    return `${match?.[1]} (node (x) y) ${rest.join(' ')}\n`;
  };
}

describe('parseProcStat', () => {
  test('reads state and field 22 after the last parenthesis', () => {
    const read = fakeProc({ 42: ['S', 123456] });
    expect(parseProcStat(read('/proc/42/stat') as string)).toEqual({
      state: 'S',
      startTime: 123456,
    });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  test('the real /proc/self/stat parses', () => {
    expect(processStartTime(process.pid)).toEqual(expect.any(Number));
    expect(bootId()).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('checkLiveness', () => {
  const identity = { pid: 42, startTime: 1000, bootId: BOOT };

  test('live when pid, start time and boot id all match', () => {
    expect(checkLiveness(identity, fakeProc({ 42: ['S', 1000] }))).toEqual({ live: true });
  });

  test('stale when the pid is gone', () => {
    const result = checkLiveness(identity, fakeProc({}));
    expect(result).toEqual({ live: false, reason: 'process 42 is not running' });
  });

  test('stale when the pid is a zombie', () => {
    expect(checkLiveness(identity, fakeProc({ 42: ['Z', 1000] })).live).toBe(false);
  });

  test('stale when the pid was reused by another process', () => {
    const result = checkLiveness(identity, fakeProc({ 42: ['S', 2000] }));
    expect(result.live).toBe(false);
    expect(!result.live && result.reason).toContain('another process');
  });

  test('stale after a reboot even if pid and start time match', () => {
    const result = checkLiveness(identity, fakeProc({ 42: ['S', 1000] }, 'another-boot'));
    expect(result.live).toBe(false);
    expect(!result.live && result.reason).toContain('reboot');
  });
});
