import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { Profile } from '@aiida/config';

/**
 * The path of the worker program (`aiida-worker`, the bin of `@aiida/worker`), resolved through
 * this package's dependency, as the supervisor resolves it.
 */
function workerProgramPath(): string {
  const require = createRequire(import.meta.url);
  const manifestPath = require.resolve('@aiida/worker/package.json');
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as {
    bin?: string | Record<string, string>;
  };
  const bin =
    typeof manifest.bin === 'string' ? manifest.bin : (manifest.bin?.['aiida-worker'] ?? undefined);
  if (bin === undefined) throw new Error(`${manifestPath} names no bin 'aiida-worker'`);
  return resolve(dirname(manifestPath), bin);
}

/**
 * Runs one worker of `profile` in the foreground, its output on this terminal, outside any daemon
 * (AiiDA's `verdi daemon worker`). Resolves to its exit code (128 + signal number when a signal
 * ended it).
 *
 * Signals: SIGTERM is passed on (the worker drains and exits). Ctrl+C in a terminal reaches the
 * worker directly (same process group), so SIGINT is passed on only when there is no terminal,
 * or the worker would see it twice and exit at once instead of draining. The worker is forked
 * with an IPC channel, so if this process dies it notices, drains for a few seconds and exits.
 */
export function runForegroundWorker(profile: Profile): Promise<number> {
  const child = spawn(process.execPath, [workerProgramPath(), '--profile', profile.name], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, AIIDA_PATH: profile.aiidaPath },
  });
  // The worker reports ready and heartbeats over the channel; nobody here needs them.
  child.on('message', () => {});
  const onTerm = () => child.kill('SIGTERM');
  const onInt = () => {
    if (process.stdin.isTTY !== true) child.kill('SIGINT');
  };
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  return new Promise((resolvePromise, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      if (child.connected) child.disconnect();
      resolvePromise(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
