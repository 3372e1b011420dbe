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
