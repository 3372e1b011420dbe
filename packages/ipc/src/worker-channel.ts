import { z } from 'zod';
import { processPk, seconds, versionField } from './common.js';

// Messages on the Node IPC channel between the supervisor and each worker it forked.

/** Worker -> supervisor: connected to the broker, topology declared, taking work. */
export const workerReadyMessageSchema = z
  .object({
    v: versionField,
    type: z.literal('ready'),
    pid: z.number().int().positive(),
    slotsTotal: z.number().int().nonnegative(),
  })
  .strict();
/**
 * What a worker counted since it started (cumulative; a new worker process starts from 0), carried
 * by its heartbeats for the supervisor's `/metrics` (`daemon.metrics_port`).
 */
export const workerCountersSchema = z
  .object({
    /** Leases it took on processes (successful claims). */
    claims: z.number().int().nonnegative(),
    /** Processes whose lease it lost while it held them. */
    leaseLosses: z.number().int().nonnegative(),
    /** Tasks its reconciler published again (while it was the elected reconciler). */
    redispatches: z.number().int().nonnegative(),
    /** Processes it ended `finished`, `excepted`, `killed`. */
    finished: z.number().int().nonnegative(),
    excepted: z.number().int().nonnegative(),
    killed: z.number().int().nonnegative(),
  })
  .strict();
export type WorkerCounters = z.infer<typeof workerCountersSchema>;

/**
 * Worker -> supervisor, from a worker started as the warm spare (`--spare`): loaded, connected to
 * the broker and its store opened, taking no work until it gets `promote`.
 */
export const workerStandbyMessageSchema = z
  .object({ v: versionField, type: z.literal('standby'), pid: z.number().int().positive() })
  .strict();
/** Worker -> supervisor, every `daemon.worker_heartbeat_interval` seconds. */
export const workerHeartbeatMessageSchema = z
  .object({
    v: versionField,
    type: z.literal('heartbeat'),
    slotsUsed: z.number().int().nonnegative(),
    slotsTotal: z.number().int().nonnegative(),
    activePks: z.array(processPk),
    /** Event-loop lag in seconds (how late the heartbeat timer fired). */
    eventLoopLag: seconds,
    /** Resident set size in bytes. */
    memory: z.number().int().nonnegative(),
    /** Its counters so far; absent from workers that count nothing (and older ones). */
    counters: workerCountersSchema.optional(),
  })
  .strict();
/** Worker -> supervisor: the worker can't go on (e.g. the broker is unreachable at start). */
export const workerFatalMessageSchema = z
  .object({ v: versionField, type: z.literal('fatal'), error: z.string() })
  .strict();

export const workerToSupervisorMessageSchema = z.discriminatedUnion('type', [
  workerReadyMessageSchema,
  workerStandbyMessageSchema,
  workerHeartbeatMessageSchema,
  workerFatalMessageSchema,
]);
export type WorkerToSupervisorMessage = z.infer<typeof workerToSupervisorMessageSchema>;
export type WorkerReadyMessage = z.infer<typeof workerReadyMessageSchema>;
export type WorkerStandbyMessage = z.infer<typeof workerStandbyMessageSchema>;
export type WorkerHeartbeatMessage = z.infer<typeof workerHeartbeatMessageSchema>;
export type WorkerFatalMessage = z.infer<typeof workerFatalMessageSchema>;

/** Supervisor -> worker: drain and exit within `gracefulTimeout` seconds. */
export const workerShutdownMessageSchema = z
  .object({ v: versionField, type: z.literal('shutdown'), gracefulTimeout: seconds })
  .strict();
/**
 * Supervisor -> the warm spare: take a dead worker's place now (start taking work, then send
 * `ready`).
 */
export const workerPromoteMessageSchema = z
  .object({ v: versionField, type: z.literal('promote') })
  .strict();
export const supervisorToWorkerMessageSchema = z.discriminatedUnion('type', [
  workerShutdownMessageSchema,
  workerPromoteMessageSchema,
]);
export type SupervisorToWorkerMessage = z.infer<typeof supervisorToWorkerMessageSchema>;
export type WorkerShutdownMessage = z.infer<typeof workerShutdownMessageSchema>;
export type WorkerPromoteMessage = z.infer<typeof workerPromoteMessageSchema>;
