import { readFileSync, unlinkSync } from 'node:fs';
import type { Profile } from '@aiida/config';
import {
  type DaemonStateReading,
  daemonStatePath,
  processStartTime,
  readDaemonState,
} from '@aiida/daemon-supervisor';
import type { DaemonStateFile } from '@aiida/ipc';

export type { DaemonStateReading };

/**
 * Read-only access to a profile's daemon state file, through `@aiida/daemon-supervisor`'s helpers
 * (one definition of "live": pid, process start time and boot id all match).
 */
export interface DaemonStateAccess {
  /** Path of the state file. */
  path(profile: Profile): string;
  /** The state file and whether it is live; `undefined` when there is none. Changes nothing. */
  read(profile: Profile): DaemonStateReading | undefined;
  /** True while the process the state file names still runs (same pid and start time). */
  isProcessAlive(state: Pick<DaemonStateFile, 'pid' | 'startTime'>): boolean;
}

/** The real {@link DaemonStateAccess}. */
export const daemonStateAccess: DaemonStateAccess = {
  path: (profile) => daemonStatePath(profile),
  read: (profile) => readDaemonState(profile),
  isProcessAlive: (state) => processStartTime(state.pid) === state.startTime,
};

/**
 * Removes a stale state file, but only if it still holds what was judged stale: a supervisor that
 * started meanwhile has replaced it (atomically) with its own, which must stay. Never removes
 * another host's file (`foreign`).
 */
export function removeStaleStateFile(path: string, stale: DaemonStateReading): boolean {
  // Another host's file can't be judged from here: it is never removed.
  if (stale.foreign) return false;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return false;
  }
  let current: Partial<DaemonStateFile> | undefined;
  try {
    current = JSON.parse(text) as Partial<DaemonStateFile>;
  } catch {
    current = undefined;
  }
  if (stale.state === undefined) {
    // An unreadable file was judged stale: keep it if a valid one took its place meanwhile.
    if (typeof current?.pid === 'number' && typeof current?.startTime === 'number') return false;
  } else if (current?.pid !== stale.state.pid || current?.startTime !== stale.state.startTime) {
    return false;
  }
  try {
    unlinkSync(path);
    return true;
  } catch {
    return false;
  }
}
