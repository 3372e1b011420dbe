/** The worker program under the CPU profiler (see cpu-profiler.ts). */
import { runProfiled, WORKER_TARGET_ENV } from './cpu-profiler.js';

await runProfiled('worker', WORKER_TARGET_ENV);
