import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  PROFILE_DIR_ENV,
  PROFILE_KIND_ENV,
  SUPERVISOR_TARGET_ENV,
  WORKER_TARGET_ENV,
} from './children/cpu-profiler.js';

/**
 * Daemon settings (for {@link BenchProfile.create}) that run the supervisor and its workers
 * through the profiling wrappers: `cpu` writes `<role>.<pid>.cpuprofile`, `memory` writes
 * `<role>.<pid>.memory.json` (`process.memoryUsage()` every 500 ms) into `dir` on exit.
 */
export function profiledDaemon(
  repoRoot: string,
  dir: string,
  kind: 'cpu' | 'memory',
): { supervisorProgram: string; env: NodeJS.ProcessEnv } {
  const packages = join(repoRoot, 'packages');
  return {
    supervisorProgram: fileURLToPath(new URL('./children/profiled-supervisor.js', import.meta.url)),
    env: {
      [PROFILE_DIR_ENV]: dir,
      [PROFILE_KIND_ENV]: kind,
      [SUPERVISOR_TARGET_ENV]: join(packages, 'daemon-supervisor', 'dist', 'bin.js'),
      [WORKER_TARGET_ENV]: join(packages, 'worker', 'dist', 'bin.js'),
      AIIDA_DAEMON_WORKER_PROGRAM: fileURLToPath(
        new URL('./children/profiled-worker.js', import.meta.url),
      ),
    },
  };
}
