/** The supervisor program under the CPU profiler (see cpu-profiler.ts). */
import { runProfiled, SUPERVISOR_TARGET_ENV } from './cpu-profiler.js';

await runProfiled('supervisor', SUPERVISOR_TARGET_ENV);
