import type { ProcReader } from '@aiida/daemon-supervisor';

/** The boot id of {@link fakeProc}'s machine. */
export const FAKE_BOOT_ID = 'boot-1';

/** A /proc where the given pids run (state `S`) with the given start times (field 22). */
export const fakeProc =
  (pids: Record<number, number>): ProcReader =>
  (path) => {
    if (path === '/proc/sys/kernel/random/boot_id') return FAKE_BOOT_ID;
    const pid = Number(/^\/proc\/(\d+)\/stat$/.exec(path)?.[1]);
    const start = pids[pid];
    if (start === undefined) return undefined;
    const rest = Array.from({ length: 30 }, (_, i) => (i === 19 ? String(start) : '0'));
    rest[0] = 'S';
    return `${pid} (node) ${rest.join(' ')}`;
  };
