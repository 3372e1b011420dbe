import { z } from 'zod';
import { processPk, serializedErrorSchema, versionField } from './common.js';

// Bodies of broker messages: tasks on the process queue, RPC on the messages exchange, broadcasts.

/** The task that asks a worker to take a process on (start it or continue it). */
export const continueTaskSchema = z
  .object({ v: versionField, type: z.literal('continue'), pk: processPk })
  .strict();
export type ContinueTask = z.infer<typeof continueTaskSchema>;

/** RPC intents sent to the worker that holds a process (routing key `rpc.<pk>`). */
export const rpcRequestSchema = z.discriminatedUnion('intent', [
  z
    .object({
      v: versionField,
      intent: z.literal('pause'),
      pk: processPk,
      message: z.string().optional(),
    })
    .strict(),
  z.object({ v: versionField, intent: z.literal('play'), pk: processPk }).strict(),
  z
    .object({
      v: versionField,
      intent: z.literal('kill'),
      pk: processPk,
      message: z.string().optional(),
      /** Make the kill final after a short grace, whatever the body does. */
      force: z.boolean().default(false),
    })
    .strict(),
  z.object({ v: versionField, intent: z.literal('status'), pk: processPk }).strict(),
]);
export type RpcRequest = z.infer<typeof rpcRequestSchema>;
export type RpcIntent = RpcRequest['intent'];

/** The process states, as in AiiDA (plus a separate `paused` flag on the row). */
export const processStateSchema = z.enum([
  'created',
  'waiting',
  'running',
  'finished',
  'excepted',
  'killed',
]);
export type ProcessState = z.infer<typeof processStateSchema>;
/** Every process state, in life order. */
export const PROCESS_STATES: readonly ProcessState[] = processStateSchema.options;
/** States a process never leaves. */
export const TERMINAL_STATES: readonly ProcessState[] = ['finished', 'excepted', 'killed'];

/** What the holder of a process answers to `status`. */
export const rpcProcessStatusSchema = z.object({
  pk: processPk,
  state: processStateSchema,
  paused: z.boolean(),
  /** Worker id of the holder. */
  owner: z.string(),
});
export type RpcProcessStatus = z.infer<typeof rpcProcessStatusSchema>;

export const rpcReplySchema = z.discriminatedUnion('ok', [
  z.object({ v: versionField, ok: z.literal(true), result: z.unknown() }).strict(),
  z.object({ v: versionField, ok: z.literal(false), error: serializedErrorSchema }).strict(),
]);
export type RpcReply = z.infer<typeof rpcReplySchema>;

/** Broadcast on `broadcast.state_changed.<pk>` whenever a process changes state. */
export const stateChangedBroadcastSchema = z
  .object({
    v: versionField,
    type: z.literal('state_changed'),
    pk: processPk,
    from: processStateSchema,
    to: processStateSchema,
  })
  .strict();
export type StateChangedBroadcast = z.infer<typeof stateChangedBroadcastSchema>;
