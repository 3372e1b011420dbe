import { type ChildProcess, execFileSync, fork } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { isProcessAlive } from '@aiida/engine';

/** Environment variable that marks every process the bench starts, so leftovers can be found. */
export const BENCH_RUN_ENV = 'AIIDA_BENCH_RUN_ID';

/** True while `pid` exists and is not a zombie (the engine's check, shared). */
export const isAlive = isProcessAlive;

/** Waits a little between polls without blocking the event loop. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` every `interval` ms until it returns a value other than `undefined`/`false`;
 * throws after `timeout` seconds with `what` and the last value `describe` gives.
 */
export async function pollUntil<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  options: { timeout: number; interval?: number; what: string; describe?: () => string },
): Promise<T> {
  const deadline = Date.now() + options.timeout * 1000;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() >= deadline) {
      const last = options.describe ? ` (last seen: ${options.describe()})` : '';
      throw new Error(`timed out after ${options.timeout} s waiting for ${options.what}${last}`);
    }
    await sleep(options.interval ?? 20);
  }
}

/** Sends `signal` to `pid`, ignoring a process that is already gone. */
export function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {}
}

/** Stops `pid`: SIGTERM, then SIGKILL after `graceful` seconds. Resolves once it is gone. */
export async function stopPid(pid: number, graceful = 5): Promise<void> {
  if (!isAlive(pid)) return;
  signalPid(pid, 'SIGTERM');
  const deadline = Date.now() + graceful * 1000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(20);
  if (!isAlive(pid)) return;
  signalPid(pid, 'SIGKILL');
  const hard = Date.now() + 5000;
  while (isAlive(pid) && Date.now() < hard) await sleep(20);
}

/** A value of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`), or null if unreadable. */
export function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return match ? Number(match[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** True if `pid` runs with this bench run's marker in its environment (so it is ours to stop). */
export function carriesMarker(pid: number, runId = process.env[BENCH_RUN_ENV]): boolean {
  if (!runId) return false;
  try {
    const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    return environ.split('\0').includes(`${BENCH_RUN_ENV}=${runId}`);
  } catch {
    return false;
  }
}

/** Stops `pid` only if it carries this run's marker (a recorded pid may have been reused). */
export async function stopOurPid(pid: number, graceful = 5): Promise<void> {
  if (isAlive(pid) && carriesMarker(pid)) await stopPid(pid, graceful);
}

/** Pids of live processes whose environment carries this bench run's marker (excluding us). */
export function pidsOfRun(runId: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
      if (environ.split('\0').includes(`${BENCH_RUN_ENV}=${runId}`) && isAlive(pid)) pids.push(pid);
    } catch {}
  }
  return pids;
}

/** A forked helper (a BullMQ worker, a raw consumer) that talks to the bench over IPC. */
export interface ChildHelper {
  child: ChildProcess;
  pid: number;
  /** Resolves with the first message whose `type` is `type`. */
  next<T = Record<string, unknown>>(type: string, timeout: number): Promise<T>;
  /** Registers a listener for every message of `type`. */
  on(type: string, listener: (message: Record<string, unknown>) => void): void;
  send(message: Record<string, unknown>): void;
  /** Asks it to stop (message `stop`), then stops it by pid. */
  stop(graceful?: number): Promise<void>;
}

/** Forks `script` with `args` and an IPC channel, stdout/stderr inherited. */
export function forkHelper(script: string, args: string[], env?: NodeJS.ProcessEnv): ChildHelper {
  const child = fork(script, args, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, ...env },
  });
  if (child.pid === undefined) throw new Error(`could not fork ${script}`);
  const pid = child.pid;
  const listeners = new Map<string, Set<(m: Record<string, unknown>) => void>>();
  child.on('message', (raw) => {
    const message = raw as Record<string, unknown>;
    const type = String(message.type);
    for (const listener of listeners.get(type) ?? []) listener(message);
  });
  const on = (type: string, listener: (m: Record<string, unknown>) => void) => {
    const set = listeners.get(type) ?? new Set();
    listeners.set(type, set);
    set.add(listener);
  };
  return {
    child,
    pid,
    on,
    send: (message) => {
      if (child.connected) child.send(message);
    },
    next: <T>(type: string, timeout: number) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`helper ${script} (pid ${pid}) sent no '${type}' within ${timeout} s`));
        }, timeout * 1000);
        const onExit = (code: number | null) => {
          clearTimeout(timer);
          reject(new Error(`helper ${script} (pid ${pid}) exited (${code}) before '${type}'`));
        };
        child.once('exit', onExit);
        const listener = (message: Record<string, unknown>) => {
          listeners.get(type)?.delete(listener);
          clearTimeout(timer);
          child.off('exit', onExit);
          resolve(message as T);
        };
        on(type, listener);
      }),
    stop: async (graceful = 5) => {
      if (child.connected) child.send({ type: 'stop' });
      const deadline = Date.now() + graceful * 1000;
      while (isAlive(pid) && Date.now() < deadline) await sleep(20);
      await stopPid(pid, 1);
    },
  };
}

let clockTicks: number | undefined;

/** Clock ticks per second of /proc times (`getconf CLK_TCK`, 100 on Linux almost always). */
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU time (user + system) `pid` has used so far, in ms, from /proc/<pid>/stat; 0 if gone. */
export function cpuTimeMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After the command: state is field 3, utime 14 and stime 15 (1-based) of the whole line.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
  } catch {
    return 0;
  }
}

/** Pids whose /proc/<pid>/comm is exactly `name` (to read a server's CPU time; never to signal). */
export function pidsByComm(name: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === name) pids.push(Number(entry));
    } catch {}
  }
  return pids;
}
