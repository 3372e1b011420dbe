import { z } from 'zod';
import { PROTOCOL_VERSION } from './version.js';

/** The `v` field every message carries. */
export const versionField = z.literal(PROTOCOL_VERSION);

/** An ISO 8601 timestamp, as every message writes times. */
export const isoTimestamp = z.iso.datetime({ offset: true });

/** A duration in seconds (the unit of every duration in this project). */
export const seconds = z.number().finite().nonnegative();

/** A process pk (row id in the store). */
export const processPk = z.number().int().positive();

/** An error as data: a stable code and a message for people. */
export const serializedErrorSchema = z.object({
  code: z.string().min(1),
  message: z.string(),
  /** Optional structured details (e.g. versions that met, the offending path). */
  details: z.record(z.string(), z.unknown()).optional(),
});
/** An error as it crosses a process boundary. */
export type SerializedError = z.infer<typeof serializedErrorSchema>;
