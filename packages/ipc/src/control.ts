import { z } from 'zod';
import { isoTimestamp, processPk, seconds, serializedErrorSchema, versionField } from './common.js';

// ---------------------------------------------------------------------------------------------
// Requests: client -> supervisor, one JSON object per line on the control socket.
// ---------------------------------------------------------------------------------------------

const requestBase = {
  v: versionField,
  /** Chosen by the client; echoed in the response. */
  id: z.string().min(1).max(128),
};

export const pingRequestSchema = z.object({ ...requestBase, type: z.literal('ping') }).strict();
export const statusRequestSchema = z.object({ ...requestBase, type: z.literal('status') }).strict();
export const workersRequestSchema = z
  .object({ ...requestBase, type: z.literal('workers') })
  .strict();
export const incrRequestSchema = z
  .object({ ...requestBase, type: z.literal('incr'), n: z.number().int().min(1).max(1000) })
  .strict();
export const decrRequestSchema = z
  .object({ ...requestBase, type: z.literal('decr'), n: z.number().int().min(1).max(1000) })
  .strict();
export const restartRequestSchema = z
  .object({ ...requestBase, type: z.literal('restart') })
  .strict();
export const stopRequestSchema = z
  .object({
    ...requestBase,
    type: z.literal('stop'),
    /** Overrides the profile's `daemon.graceful_timeout` for this stop, in seconds. */
    gracefulTimeout: seconds.optional(),
  })
  .strict();

/** Every request the control socket accepts. */
export const controlRequestSchema = z.discriminatedUnion('type', [
  pingRequestSchema,
  statusRequestSchema,
  workersRequestSchema,
  incrRequestSchema,
  decrRequestSchema,
  restartRequestSchema,
  stopRequestSchema,
]);
export type ControlRequest = z.infer<typeof controlRequestSchema>;
export type ControlRequestType = ControlRequest['type'];
/** The request types, for a receiver that must tell "unknown type" from "bad shape". */
export const CONTROL_REQUEST_TYPES: readonly ControlRequestType[] = [
  'ping',
  'status',
  'workers',
  'incr',
  'decr',
  'restart',
  'stop',
];

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

/** The states a worker goes through, as the supervisor sees them. */
export const workerStateSchema = z.enum(['starting', 'ready', 'stopping', 'crash-looping']);
export type WorkerState = z.infer<typeof workerStateSchema>;

/** Why the supervisor started a slot's worker again. */
export const restartReasonSchema = z.enum(['exited', 'unresponsive']);
export type RestartReason = z.infer<typeof restartReasonSchema>;

/** Everything a status screen shows about one worker. */
export const workerStatusSchema = z.object({
  /** Stable slot number of this worker in the daemon (0-based); a revived worker keeps it. */
  index: z.number().int().nonnegative(),
  /** Operating-system pid, or null while a crash-looping worker waits for its next attempt. */
  pid: z.number().int().positive().nullable(),
  state: workerStateSchema,
  startedAt: isoTimestamp.nullable(),
  /** How often this slot's worker was started again after dying (or being killed as unresponsive). */
  restarts: z.number().int().nonnegative(),
  /**
   * Why this slot's worker was last started again: `exited` (it died: crash, exit, a signal from
   * outside) or `unresponsive` (its heartbeats stopped for longer than `daemon.lease_timeout`, so
   * the supervisor killed it); null before the first restart. Absent from older supervisors.
   */
  lastRestartReason: restartReasonSchema.nullable().default(null),
  lastHeartbeatAt: isoTimestamp.nullable(),
  /** CPU use in percent of one core, or null when not sampled yet. */
  cpu: z.number().nonnegative().nullable(),
  /** Resident memory in bytes, or null when not sampled yet. */
  memory: z.number().int().nonnegative().nullable(),
  slotsUsed: z.number().int().nonnegative(),
  slotsTotal: z.number().int().nonnegative(),
  activePks: z.array(processPk),
  /** Last lines the worker wrote to stderr; filled when it is crash-looping. */
  lastStderr: z.array(z.string()),
  /** When a crash-looping worker is tried again. */
  nextAttemptAt: isoTimestamp.nullable(),
});
export type WorkerStatus = z.infer<typeof workerStatusSchema>;

/**
 * The warm spare worker (`daemon.warm_spare`): `starting` while it loads and connects, `standby`
 * once it can take a dead worker's place at once. Not one of the daemon's workers.
 */
export const spareStatusSchema = z.object({
  pid: z.number().int().positive(),
  state: z.enum(['starting', 'standby']),
  startedAt: isoTimestamp,
});
export type SpareStatus = z.infer<typeof spareStatusSchema>;

/** The `status` result: the supervisor and all its workers. */
export const daemonStatusSchema = z.object({
  pid: z.number().int().positive(),
  hostname: z.string(),
  profile: z.string(),
  startedAt: isoTimestamp,
  protocolVersion: z.number().int().positive(),
  /** Number of workers the daemon is meant to run. */
  numberWorkers: z.number().int().nonnegative(),
  workers: z.array(workerStatusSchema),
  logDir: z.string(),
  /**
   * The warm spare, or null when there is none (`daemon.warm_spare` off, or being replaced).
   * Absent from older supervisors.
   */
  spare: spareStatusSchema.nullable().default(null),
  /**
   * Seconds a stop gives running processes before their workers are killed (the supervisor's
   * `daemon.graceful_timeout`). Absent from older supervisors.
   */
  gracefulTimeout: seconds.optional(),
});
export type DaemonStatus = z.infer<typeof daemonStatusSchema>;

export const pingResultSchema = z.object({
  pid: z.number().int().positive(),
  protocolVersion: z.number().int().positive(),
});
export type PingResult = z.infer<typeof pingResultSchema>;
export const workersResultSchema = z.object({ workers: z.array(workerStatusSchema) });
export type WorkersResult = z.infer<typeof workersResultSchema>;
/** `incr`, `decr` and `restart` answer with the workers as they are once done. */
export const scaleResultSchema = z.object({
  numberWorkers: z.number().int().nonnegative(),
  workers: z.array(workerStatusSchema),
});
export type ScaleResult = z.infer<typeof scaleResultSchema>;
export const stopResultSchema = z.object({
  /** Workers that had to be killed because they outlived the graceful timeout. */
  killedWorkers: z.number().int().nonnegative(),
});
export type StopResult = z.infer<typeof stopResultSchema>;

/** The result schema of each request type. */
export const controlResultSchemas = {
  ping: pingResultSchema,
  status: daemonStatusSchema,
  workers: workersResultSchema,
  incr: scaleResultSchema,
  decr: scaleResultSchema,
  restart: scaleResultSchema,
  stop: stopResultSchema,
} as const satisfies Record<ControlRequestType, z.ZodType>;
/** The result type of a request type. */
export type ControlResult<T extends ControlRequestType> = z.infer<(typeof controlResultSchemas)[T]>;

// ---------------------------------------------------------------------------------------------
// Responses: supervisor -> client.
// ---------------------------------------------------------------------------------------------

/** A successful answer; `result` is checked against {@link controlResultSchemas} by the client. */
export const controlOkResponseSchema = z
  .object({ v: versionField, id: z.string(), ok: z.literal(true), result: z.unknown() })
  .strict();
/**
 * A refusal. `id` is null when the request was too broken to carry one. `v` is any number so that
 * a peer of another version can still read why it was refused.
 */
export const controlErrorResponseSchema = z
  .object({
    v: z.number().int(),
    id: z.string().nullable(),
    ok: z.literal(false),
    error: serializedErrorSchema,
  })
  .strict();
export const controlResponseSchema = z.discriminatedUnion('ok', [
  controlOkResponseSchema,
  controlErrorResponseSchema,
]);
export type ControlResponse = z.infer<typeof controlResponseSchema>;
export type ControlOkResponse = z.infer<typeof controlOkResponseSchema>;
export type ControlErrorResponse = z.infer<typeof controlErrorResponseSchema>;
