import { readFileSync } from 'node:fs';

/**
 * Reads a file under `/proc`; returns `undefined` when it does not exist (or can't be read).
 * Injected in tests so that liveness can be checked without real processes.
 */
export type ProcReader = (path: string) => string | undefined;

/** The real reader of `/proc`. */
export const readProcFile: ProcReader = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
};

/**
 * What makes a pid ours beyond its number: the process start time (clock ticks since boot) and the
 * boot id. A pid whose start time or boot id differs is another process that reused the number.
 */
export interface ProcessIdentity {
  pid: number;
  /** Field 22 of `/proc/<pid>/stat`. */
  startTime: number;
  /** `/proc/sys/kernel/random/boot_id`. */
  bootId: string;
}

/** Whether a recorded identity still names a running process, and why not. */
export type Liveness = { live: true } | { live: false; reason: string };

interface StatFields {
  state: string;
  startTime: number;
}

/** Parses the state (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. */
export function parseProcStat(stat: string): StatFields | undefined {
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const close = stat.lastIndexOf(')');
  if (close === -1) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  // fields[0] is field 3 (state), so field 22 is fields[19].
  const state = fields[0];
  const startTime = Number(fields[19]);
  if (state === undefined || !Number.isSafeInteger(startTime)) return undefined;
  return { state, startTime };
}

/**
 * Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), or `undefined` when
 * no such process runs (zombies count as gone).
 */
export function processStartTime(pid: number, read: ProcReader = readProcFile): number | undefined {
  const stat = read(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  const parsed = parseProcStat(stat);
  if (parsed === undefined || parsed.state === 'Z' || parsed.state === 'X') return undefined;
  return parsed.startTime;
}

/** This boot's id (`/proc/sys/kernel/random/boot_id`). */
export function bootId(read: ProcReader = readProcFile): string {
  const id = read('/proc/sys/kernel/random/boot_id')?.trim();
  if (!id) throw new Error('cannot read /proc/sys/kernel/random/boot_id');
  return id;
}

/** The identity of process `pid` (by default this process). */
export function currentIdentity(
  pid: number = process.pid,
  read: ProcReader = readProcFile,
): ProcessIdentity {
  const startTime = processStartTime(pid, read);
  if (startTime === undefined) throw new Error(`cannot read /proc/${pid}/stat`);
  return { pid, startTime, bootId: bootId(read) };
}

/**
 * Checks a recorded identity: live only while the boot id is this boot's, the pid exists (not a
 * zombie) and its start time is the recorded one.
 */
export function checkLiveness(
  identity: ProcessIdentity,
  read: ProcReader = readProcFile,
): Liveness {
  let currentBoot: string;
  try {
    currentBoot = bootId(read);
  } catch (error) {
    return { live: false, reason: (error as Error).message };
  }
  if (identity.bootId !== currentBoot) {
    return {
      live: false,
      reason: `process ${identity.pid} ran before the last reboot (boot id ${identity.bootId}, now ${currentBoot})`,
    };
  }
  const startTime = processStartTime(identity.pid, read);
  if (startTime === undefined) {
    return { live: false, reason: `process ${identity.pid} is not running` };
  }
  if (startTime !== identity.startTime) {
    return {
      live: false,
      reason: `pid ${identity.pid} now belongs to another process (start time ${startTime}, recorded ${identity.startTime})`,
    };
  }
  return { live: true };
}
