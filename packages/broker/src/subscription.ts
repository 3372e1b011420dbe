import { randomUUID } from 'node:crypto';
import { type StateChangedBroadcast, stateChangedBroadcastSchema } from '@aiida/ipc';
import { type Connection, type Consumer, ConsumerStatus } from 'rabbitmq-client';
import { settledWithin } from './deadline.js';
import { describeError } from './errors.js';
import { LISTENER_ANSWER_VALIDITY_S, listenersQueueDeclaration } from './listeners.js';
import { type BrokerLogger, previewBody } from './logger.js';
import { parseBody } from './parse-body.js';
import { waitForReady } from './rpc.js';
import {
  ALL_STATE_CHANGES_KEY,
  stateChangedRoutingKey,
  type TopologyDeclarations,
  type TopologyNames,
} from './topology.js';

/** Receives state-changed broadcasts. A throw is logged; the broadcast is not redelivered. */
export type StateChangedHandler = (message: StateChangedBroadcast) => Promise<void> | void;

/**
 * A live subscription to state-changed broadcasts: an exclusive, auto-delete queue bound to
 * `P.messages` with `broadcast.state_changed.<pk>` (or `.*`), handled one message at a time in
 * order. Broadcasts sent while the connection is down are missed; read the store for the truth.
 * It also consumes `P.listeners` (nothing is published there): publishers broadcast only while
 * that queue has a consumer.
 */
export class StateChangedSubscription {
  #consumer: Consumer;
  #presence: Consumer;
  #closed = false;
  #logger: BrokerLogger;
  #onClosed: () => void;
  /** Name of the subscription's queue. */
  readonly queue: string;

  /** @internal Use {@link RabbitBroker.subscribeStateChanged}. */
  constructor(
    connection: Connection,
    names: TopologyNames,
    declarations: TopologyDeclarations,
    handler: StateChangedHandler,
    pk: number | undefined,
    hooks: { logger: BrokerLogger; reportError: (error: Error) => void; onClosed: () => void },
  ) {
    this.#logger = hooks.logger;
    this.#onClosed = hooks.onClosed;
    this.queue = `${names.prefix}.sub.${randomUUID()}`;
    this.#consumer = connection.createConsumer(
      {
        queue: this.queue,
        queueOptions: { queue: this.queue, exclusive: true, autoDelete: true, durable: false },
        exchanges: [declarations.exchanges.messages],
        queueBindings: [
          {
            exchange: names.messagesExchange,
            queue: this.queue,
            routingKey: pk === undefined ? ALL_STATE_CHANGES_KEY : stateChangedRoutingKey(pk),
          },
        ],
        qos: { prefetchCount: 100 },
        concurrency: 1,
        requeue: false,
        lazy: true,
      },
      async (msg) => {
        const parsed = parseBody(stateChangedBroadcastSchema, msg.body);
        if (!parsed.ok) {
          this.#logger.error(
            `dropping an invalid broadcast on ${msg.routingKey}: ${parsed.reason}; body: ${previewBody(msg.body)}`,
          );
          return ConsumerStatus.DROP;
        }
        try {
          await handler(parsed.value);
        } catch (error) {
          this.#logger.error(`state-changed handler threw: ${describeError(error)}`);
        }
        return ConsumerStatus.ACK;
      },
    );
    this.#consumer.on('error', (error: unknown) => {
      hooks.reportError(
        new Error(`subscription ${this.queue}: ${describeError(error)}`, { cause: error }),
      );
    });
    const listeners = listenersQueueDeclaration(names);
    this.#presence = connection.createConsumer(
      { queue: listeners.queue, queueOptions: listeners, noAck: true, lazy: true },
      () => {},
    );
    this.#presence.on('error', (error: unknown) => {
      hooks.reportError(
        new Error(`subscription ${this.queue} on ${listeners.queue}: ${describeError(error)}`, {
          cause: error,
        }),
      );
    });
  }

  /**
   * @internal Starts consuming; resolves once the queue is bound and consumed, and publishers
   * count this subscription as a listener (LISTENER_ANSWER_VALIDITY_S after it consumes
   * `P.listeners`).
   */
  async start(timeout: number): Promise<void> {
    try {
      await Promise.all([
        waitForReady(this.#consumer, timeout, `subscription queue ${this.queue}`),
        waitForReady(this.#presence, timeout, `listeners queue of ${this.queue}`),
      ]);
    } catch (error) {
      await Promise.allSettled([this.#consumer.close(), this.#presence.close()]);
      throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, LISTENER_ANSWER_VALIDITY_S * 1000));
  }

  /** Ends the subscription (its queue is deleted with the consumer). */
  async close(timeout = 10): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    void this.#presence.close().catch(() => {});
    if (!(await settledWithin(this.#consumer.close(), timeout))) {
      this.#logger.warn(`subscription ${this.queue}: handler still running after ${timeout} s`);
    }
    this.#onClosed();
  }
}
