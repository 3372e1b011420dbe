import { PROTOCOL_VERSION, type RpcReply, type RpcRequest } from '@aiida/ipc';

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

/**
 * Asks the worker that holds `pk` to kill it, waiting at most `timeout` seconds. Fast path only:
 * the kill intent is already in the store, where the owner finds it on its next lease renewal,
 * so a failure is ignored.
 */
export function requestKill(
  control: ControlChannel,
  pk: number,
  message: string,
  timeout: number,
): void {
  control
    .callRpc(pk, { v: PROTOCOL_VERSION, intent: 'kill', pk, message, force: false }, { timeout })
    .catch(() => {});
}
