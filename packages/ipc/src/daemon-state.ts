import { z } from 'zod';
import { isoTimestamp, serializedErrorSchema } from './common.js';

/**
 * The supervisor's state file (`daemon.json` in the profile's daemon folder): written atomically
 * by the supervisor, read by clients. It is live only while a process with this pid, start time
 * and boot id runs; otherwise it is stale.
 */
export const daemonStateFileSchema = z
  .object({
    /** Format version of this file; any integer, so that another version can be named. */
    v: z.number().int().positive(),
    pid: z.number().int().positive(),
    hostname: z.string(),
    /** `/proc/sys/kernel/random/boot_id` when the supervisor started. */
    bootId: z.string().min(1),
    /** Process start time in clock ticks since boot (`/proc/<pid>/stat`, field 22). */
    startTime: z.number().int().nonnegative(),
    socketPath: z.string().min(1),
    protocolVersion: z.number().int().positive(),
    profile: z.string(),
    startedAt: isoTimestamp,
  })
  .strict();
export type DaemonStateFile = z.infer<typeof daemonStateFileSchema>;

/**
 * The one line a starting supervisor writes to the descriptor its starter gave it (`--report-fd`),
 * once the start is settled: every worker ready, or why not.
 */
export const supervisorStartReportSchema = z.discriminatedUnion('ok', [
  z
    .object({
      v: z.number().int().positive(),
      ok: z.literal(true),
      pid: z.number().int().positive(),
      socketPath: z.string().min(1),
    })
    .strict(),
  z
    .object({ v: z.number().int().positive(), ok: z.literal(false), error: serializedErrorSchema })
    .strict(),
]);
export type SupervisorStartReport = z.infer<typeof supervisorStartReportSchema>;
