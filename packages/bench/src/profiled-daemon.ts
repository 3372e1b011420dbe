import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  NODELAY_ENV,
  PROFILE_DIR_ENV,
  PROFILE_KIND_ENV,
  SUPERVISOR_TARGET_ENV,
  WORKER_TARGET_ENV,
} from './children/cpu-profiler.js';

/**
 * Daemon settings (for {@link BenchProfile.create}) that run the supervisor and its workers
 * through the profiling wrappers: `cpu` writes `<role>.<pid>.cpuprofile`, `memory` writes
 * `<role>.<pid>.memory.json` (`process.memoryUsage()` every 500 ms) into `dir` on exit, `none`
 * only runs them (with `noDelay`: TCP_NODELAY forced on their sockets).
 */
export function profiledDaemon(
  repoRoot: string,
  dir: string,
  kind: 'cpu' | 'memory' | 'none',
  options: { noDelay?: boolean } = {},
): { supervisorProgram: string; env: NodeJS.ProcessEnv } {
  const packages = join(repoRoot, 'packages');
  return {
    supervisorProgram: fileURLToPath(new URL('./children/profiled-supervisor.js', import.meta.url)),
    env: {
      [PROFILE_DIR_ENV]: dir,
      [PROFILE_KIND_ENV]: kind,
      ...(options.noDelay ? { [NODELAY_ENV]: '1' } : {}),
      [SUPERVISOR_TARGET_ENV]: join(packages, 'daemon-supervisor', 'dist', 'bin.js'),
      [WORKER_TARGET_ENV]: join(packages, 'worker', 'dist', 'bin.js'),
      AIIDA_DAEMON_WORKER_PROGRAM: fileURLToPath(
        new URL('./children/profiled-worker.js', import.meta.url),
      ),
    },
  };
}
