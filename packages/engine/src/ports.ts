import type { RpcReply, RpcRequest } from '@aiida/ipc';

/**
 * Publishes `continue` tasks. `RabbitBroker` from `@aiida/broker` satisfies it structurally; tests
 * use an in-memory fake. Both methods resolve once the broker confirmed the publish.
 */
export interface TaskDispatcher {
  publishContinue(pk: number): Promise<void>;
  publishContinueMany(pks: number[]): Promise<void>;
}

/**
 * Sends a control RPC to the worker that holds a process (fast path only: the intent is in the
 * store first, and the owner also polls intents on every lease renewal). `RabbitBroker` satisfies
 * it structurally.
 */
export interface ControlChannel {
  callRpc(pk: number, request: RpcRequest, options?: { timeout?: number }): Promise<RpcReply>;
}
