import { readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { ProcessGroupRecord } from './process-store.js';

/** Environment variable every external command of a process carries: the process's uuid. */
export const PROCESS_MARKER_ENV = 'AIIDA_PROCESS_MARKER';

/** `/proc/sys/kernel/random/boot_id`, or null off Linux. */
export function readBootId(): string | null {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return null;
  }
}

function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces and parentheses).
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22), or null. */
export function readStartTime(pid: number): number | null {
  const fields = statFields(pid);
  // Field 22 overall is index 19 after the state (field 3).
  return fields?.[19] === undefined ? null : Number(fields[19]);
}

/** True while `pid` exists and is not a zombie. */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const fields = statFields(pid);
  if (fields === null) return process.platform !== 'linux';
  return fields[0] !== 'Z' && fields[0] !== 'X';
}

/** Live (non-zombie) members of process group `pgid`, from `/proc`. */
function processGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return members;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = statFields(Number(entry));
    if (fields === null || fields[0] === 'Z' || fields[0] === 'X') continue;
    if (Number(fields[2]) === pgid) members.push(Number(entry));
  }
  return members;
}

function hasMarker(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1')
      .split('\0')
      .includes(`${PROCESS_MARKER_ENV}=${marker}`);
  } catch {
    return false;
  }
}

/** Describes the process group led by `pgid` (just spawned, `detached`), for the store. */
export function describeProcessGroup(pgid: number, marker: string): ProcessGroupRecord {
  return {
    pgid,
    startTime: readStartTime(pgid),
    bootId: readBootId(),
    hostname: hostname(),
    marker,
  };
}

/**
 * Live members of a recorded group that provably belong to it: same host and boot, and either the
 * leader still has the recorded start time or a member carries the marker. Empty when the group is
 * gone, or its id was reused by someone else.
 */
export function verifiedGroupMembers(group: ProcessGroupRecord): number[] {
  if (group.hostname !== hostname()) return [];
  const bootId = readBootId();
  if (group.bootId !== null && bootId !== null && group.bootId !== bootId) return [];
  const members = processGroupMembers(group.pgid);
  if (members.length === 0) return [];
  const leaderMatches =
    group.startTime !== null &&
    members.includes(group.pgid) &&
    readStartTime(group.pgid) === group.startTime;
  if (leaderMatches || members.some((pid) => hasMarker(pid, group.marker))) return members;
  return [];
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

/**
 * Terminates a recorded process group: SIGTERM to the group, then SIGKILL to whatever is left after
 * `grace` seconds. Does nothing to a group that can't be verified as this one (see
 * {@link verifiedGroupMembers}). Resolves true when something was signalled.
 */
export async function killProcessGroup(
  group: ProcessGroupRecord,
  options: {
    /** Seconds between SIGTERM and SIGKILL. @default 2 */
    grace?: number;
    /** The caller itself spawned the group and it has not been reaped: skip verification. */
    trusted?: boolean;
  } = {},
): Promise<boolean> {
  if (!options.trusted && verifiedGroupMembers(group).length === 0) return false;
  signalGroup(group.pgid, 'SIGTERM');
  const deadline = Date.now() + (options.grace ?? 2) * 1000;
  while (Date.now() < deadline) {
    if (!groupAlive(group.pgid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  signalGroup(group.pgid, 'SIGKILL');
  const hardDeadline = Date.now() + 2000;
  while (Date.now() < hardDeadline && groupAlive(group.pgid)) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

/** True while group `pgid` has a live member (zombies excluded where `/proc` tells). */
export function groupAlive(pgid: number): boolean {
  if (process.platform === 'linux') return processGroupMembers(pgid).length > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}
