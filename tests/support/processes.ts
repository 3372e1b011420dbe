import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { waitFor } from './wait-for.js';

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * Stops a process this test started, by pid: SIGTERM, then SIGKILL if it is still there after
 * `graceful` seconds. Resolves once it is gone.
 */
export async function stopPid(pid: number, graceful = 5): Promise<void> {
  if (!isAlive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  try {
    await waitFor(() => !isAlive(pid), { timeout: graceful, what: `pid ${pid} to exit` });
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
    await waitFor(() => !isAlive(pid), { timeout: 5, what: `pid ${pid} to die after SIGKILL` });
  }
}

/** Pids of live processes whose environment carries this test run's marker (excluding us). */
export function pidsOfThisRun(runId = process.env.AIIDA_TEST_RUN_ID): number[] {
  if (!runId) return [];
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      const environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
      if (environ.split('\0').includes(`AIIDA_TEST_RUN_ID=${runId}`) && isAlive(pid))
        pids.push(pid);
    } catch {}
  }
  return pids;
}

/** Direct children of `pid` (from /proc), for finding the workers of a supervisor. */
export function childPids(pid: number): number[] {
  const children: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) children.push(Number(entry));
    } catch {}
  }
  return children;
}

/**
 * Runs `command args` in `cwd` to its end and returns its exit code and its stdout and stderr
 * interleaved. The command ends by itself; `timeoutSeconds` only bounds a hang (it is then
 * SIGKILLed and its code is null).
 */
export function runCollectingOutput(
  command: string,
  args: string[],
  options: { cwd: string; timeoutSeconds: number; env?: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const deadline = setTimeout(() => child.kill('SIGKILL'), options.timeoutSeconds * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(deadline);
      resolve({ code, output });
    });
  });
}
