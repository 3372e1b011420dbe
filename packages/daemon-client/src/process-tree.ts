import { readdirSync, readFileSync } from 'node:fs';

/** One process as `/proc/<pid>/stat` shows it. */
export interface ProcessEntry {
  pid: number;
  ppid: number;
  /** Process group id. */
  pgrp: number;
  /** Start time in clock ticks since boot (field 22): with the pid, the process's identity. */
  startTime: number;
}

function readEntry(pid: number): ProcessEntry | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  if (state === undefined || state === 'Z' || state === 'X') return undefined;
  return {
    pid,
    ppid: Number(fields[1]),
    pgrp: Number(fields[2]),
    startTime: Number(fields[19]),
  };
}

/** Every live (non-zombie) process. */
export function listProcesses(): ProcessEntry[] {
  const entries: ProcessEntry[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const entry = readEntry(Number(name));
    if (entry) entries.push(entry);
  }
  return entries;
}

/**
 * The processes a detached supervisor started: members of its process group (its pid) and its
 * descendants, the supervisor itself included when it still runs.
 */
export function processesOfSupervisor(pid: number): ProcessEntry[] {
  const all = listProcesses();
  const found = new Map<number, ProcessEntry>();
  for (const entry of all) if (entry.pgrp === pid || entry.pid === pid) found.set(entry.pid, entry);
  // Descendants that left the group (a worker in a session of its own) are still children.
  let grew = true;
  while (grew) {
    grew = false;
    for (const entry of all) {
      if (!found.has(entry.pid) && found.has(entry.ppid)) {
        found.set(entry.pid, entry);
        grew = true;
      }
    }
  }
  return [...found.values()];
}

/** True while this exact process (pid and start time) runs and is not a zombie. */
export function isSameProcessAlive(entry: Pick<ProcessEntry, 'pid' | 'startTime'>): boolean {
  return readEntry(entry.pid)?.startTime === entry.startTime;
}

/** Sends `signal` to each listed process that is still that process; errors are ignored. */
export function signalProcesses(entries: readonly ProcessEntry[], signal: NodeJS.Signals): void {
  for (const entry of entries) {
    if (!isSameProcessAlive(entry)) continue;
    try {
      process.kill(entry.pid, signal);
    } catch {
      // Gone meanwhile, or not ours to signal: nothing more to do.
    }
  }
}

/** Polls `done` every 50 ms until it is true or `timeout` seconds passed; returns the last value. */
export async function pollUntil(done: () => boolean, timeout: number): Promise<boolean> {
  const deadline = Date.now() + timeout * 1000;
  for (;;) {
    if (done()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
