import { randomUUID } from 'node:crypto';
import {
  PROTOCOL_VERSION,
  type RpcReply,
  type RpcRequest,
  rpcReplySchema,
  rpcRequestSchema,
} from '@aiida/ipc';
import {
  type AsyncMessage,
  type Channel,
  type Connection,
  type Consumer,
  type ConsumerProps,
  ConsumerStatus,
  type ReturnedMessage,
} from 'rabbitmq-client';
import { settledWithin, withDeadline } from './deadline.js';
import { BrokerError, describeError } from './errors.js';
import { type BrokerLogger, previewBody } from './logger.js';
import { parseBody } from './parse-body.js';
import {
  type QueueBinding,
  rpcRoutingKey,
  type TopologyDeclarations,
  type TopologyNames,
} from './topology.js';

/**
 * Answers one RPC request for a process this worker holds. Resolve with the result (sent as
 * `{ ok: true, result }`); throw to answer `{ ok: false, error }` with the error's string `code`
 * (or `internal`) and message.
 */
export type RpcHandler = (request: RpcRequest) => Promise<unknown> | unknown;

/** Options of {@link RabbitBroker.serveRpc}. */
export interface RpcServerOptions {
  /** Requests prefetched. @default 20 */
  prefetch?: number;
  /** Requests handled at once. @default 10 */
  concurrency?: number;
  /** Seconds to wait for the consumer to be registered. @default 10 */
  timeout?: number;
}

/**
 * Serves RPC for the processes a worker holds: one exclusive, auto-delete queue per server, bound
 * to `P.messages` with `rpc.<pk>` for each pk added. Replies go to the request's `replyTo` with its
 * `correlationId`. Bindings survive reconnects (the queue is redeclared and every registered pk
 * rebound). Create it with {@link RabbitBroker.serveRpc}.
 */
export class RpcServer {
  #connection: Connection;
  #consumer: Consumer;
  #names: TopologyNames;
  #bindings: QueueBinding[] = [];
  #pks = new Set<number>();
  #logger: BrokerLogger;
  #reportError: (error: Error) => void;
  #onClosed: () => void;
  #closed = false;
  /** Name of this server's exclusive queue. */
  readonly queue: string;

  /** @internal Use {@link RabbitBroker.serveRpc}. */
  constructor(
    connection: Connection,
    names: TopologyNames,
    declarations: TopologyDeclarations,
    handler: RpcHandler,
    options: RpcServerOptions,
    hooks: { logger: BrokerLogger; reportError: (error: Error) => void; onClosed: () => void },
  ) {
    this.#connection = connection;
    this.#names = names;
    this.#logger = hooks.logger;
    this.#reportError = hooks.reportError;
    this.#onClosed = hooks.onClosed;
    this.queue = `${names.prefix}.rpc.${randomUUID()}`;
    const concurrency = options.concurrency ?? 10;
    const props: ConsumerProps = {
      queue: this.queue,
      queueOptions: { queue: this.queue, exclusive: true, autoDelete: true, durable: false },
      exchanges: [declarations.exchanges.messages],
      // rabbitmq-client reads this array at every (re)setup, so pks added later are rebound too.
      queueBindings: this.#bindings,
      qos: { prefetchCount: Math.max(options.prefetch ?? 20, concurrency) },
      concurrency,
      requeue: false,
      lazy: true,
    };
    this.#consumer = connection.createConsumer(props, (msg, reply) =>
      this.#handle(handler, msg, reply),
    );
    this.#consumer.on('error', (error: unknown) => {
      hooks.reportError(
        new Error(`RPC server ${this.queue}: ${describeError(error)}`, { cause: error }),
      );
    });
  }

  /** @internal Starts consuming; resolves once the consumer is registered. */
  async start(timeout: number): Promise<void> {
    await waitForReady(this.#consumer, timeout, `RPC server queue ${this.queue}`);
  }

  /** Pks this server answers for. */
  get pks(): ReadonlySet<number> {
    return this.#pks;
  }

  /**
   * Starts answering RPC for process `pk` (binds `rpc.<pk>`). Never rejects: when the binding can't
   * be made now (connection down), the pk stays registered and is bound at the next reconnect; the
   * failure goes to `onError`. Callers fall back to the store when an RPC finds no holder.
   */
  async addPk(pk: number): Promise<void> {
    if (this.#closed || this.#pks.has(pk)) return;
    this.#pks.add(pk);
    const binding: QueueBinding = {
      exchange: this.#names.messagesExchange,
      queue: this.queue,
      routingKey: rpcRoutingKey(pk),
    };
    this.#bindings.push(binding);
    if (this.#consumer.consumerTag === '') return; // not set up yet: setup binds it
    try {
      await this.#connection.queueBind(binding);
    } catch (error) {
      this.#reportError(
        new Error(
          `RPC server: binding rpc.${pk} failed (retried at reconnect): ${describeError(error)}`,
          {
            cause: error,
          },
        ),
      );
    }
  }

  /** Stops answering RPC for process `pk` (unbinds `rpc.<pk>`). Never rejects. */
  async removePk(pk: number): Promise<void> {
    if (!this.#pks.delete(pk)) return;
    const index = this.#bindings.findIndex((b) => b.routingKey === rpcRoutingKey(pk));
    const [binding] = this.#bindings.splice(index, 1);
    if (this.#closed || binding === undefined || this.#consumer.consumerTag === '') return;
    try {
      await this.#connection.queueUnbind(binding);
    } catch (error) {
      // The queue is exclusive to this connection: after a reconnect it is rebuilt without it.
      this.#logger.warn(`RPC server: unbinding rpc.${pk} failed: ${describeError(error)}`);
    }
  }

  /** Cancels the consumer (the queue goes with it) and waits up to `timeout` s for handlers. */
  async close(timeout = 10): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!(await settledWithin(this.#consumer.close(), timeout))) {
      this.#logger.warn(`RPC server ${this.queue}: handlers still running after ${timeout} s`);
    }
    this.#onClosed();
  }

  async #handle(
    handler: RpcHandler,
    msg: AsyncMessage,
    reply: (body: unknown, envelope?: { contentType?: string }) => Promise<void>,
  ): Promise<ConsumerStatus> {
    const parsed = parseBody(rpcRequestSchema, msg.body);
    let answer: RpcReply;
    if (!parsed.ok) {
      this.#logger.error(
        `dropping an invalid RPC request on ${msg.routingKey}: ${parsed.reason}; body: ${previewBody(msg.body)}`,
      );
      answer = {
        v: PROTOCOL_VERSION,
        ok: false,
        error: { code: 'message_invalid', message: `invalid RPC request: ${parsed.reason}` },
      };
    } else {
      try {
        const result = await handler(parsed.value);
        answer = { v: PROTOCOL_VERSION, ok: true, result: result ?? null };
      } catch (error) {
        const code = (error as { code?: unknown } | null)?.code;
        answer = {
          v: PROTOCOL_VERSION,
          ok: false,
          error: {
            code: typeof code === 'string' && code !== '' ? code : 'internal',
            message: error instanceof Error ? error.message : String(error),
          },
        };
      }
    }
    if (msg.replyTo) {
      try {
        await reply(answer);
      } catch (error) {
        this.#logger.warn(`RPC reply on ${msg.routingKey} failed: ${describeError(error)}`);
      }
    }
    // RPC is transient: nothing to dead-letter, nothing to retry.
    return ConsumerStatus.ACK;
  }
}

interface PendingCall {
  resolve(reply: RpcReply): void;
  reject(error: BrokerError): void;
  pk: number;
  intent: string;
}

const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/**
 * @internal The calling side of RPC: one channel in confirm mode consuming RabbitMQ's direct
 * reply-to pseudo-queue. Requests are published `mandatory`, so a request nobody is bound for comes
 * back as `basic.return` (before its confirm) and rejects at once with `no_holder`.
 */
export class RpcCaller {
  #connection: Connection;
  #names: TopologyNames;
  #declarations: TopologyDeclarations;
  #channel: Channel | undefined;
  #setup: Promise<Channel> | undefined;
  #pending = new Map<string, PendingCall>();
  #closed = false;
  #reportError: (error: Error) => void;

  constructor(
    connection: Connection,
    names: TopologyNames,
    declarations: TopologyDeclarations,
    reportError: (error: Error) => void,
  ) {
    this.#connection = connection;
    this.#names = names;
    this.#declarations = declarations;
    this.#reportError = reportError;
  }

  async call(pk: number, request: RpcRequest, timeout: number): Promise<RpcReply> {
    if (this.#closed) throw new BrokerError('broker_error', 'the broker is closed');
    const correlationId = randomUUID();
    const describe = `the ${request.intent} RPC for process ${pk}`;
    const answered = new Promise<RpcReply>((resolve, reject) => {
      this.#pending.set(correlationId, { resolve, reject, pk, intent: request.intent });
    });
    // Attach a handler now: the promise may reject (return, channel loss) before it is awaited.
    answered.catch(() => {});
    const exchange = async () => {
      const channel = await this.#getChannel();
      try {
        await channel.basicPublish(
          {
            exchange: this.#names.messagesExchange,
            routingKey: rpcRoutingKey(pk),
            mandatory: true,
            replyTo: DIRECT_REPLY_TO,
            correlationId,
            messageId: correlationId,
            contentType: 'application/json',
            // A request nobody took in time must not act later.
            expiration: String(Math.max(1, Math.ceil(timeout * 1000))),
          },
          request,
        );
      } catch (error) {
        throw new BrokerError(
          'broker_error',
          `publishing ${describe} failed: ${describeError(error)}`,
          {
            cause: error,
          },
        );
      }
      return answered;
    };
    try {
      return await withDeadline(
        exchange(),
        timeout,
        () =>
          new BrokerError(
            'timeout',
            `no answer to ${describe} within ${timeout} s (routing key rpc.${pk} on ${this.#names.messagesExchange})`,
            { details: { pk, intent: request.intent, timeout } },
          ),
      );
    } finally {
      this.#pending.delete(correlationId);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    const channel = this.#channel ?? (await this.#setup?.catch(() => undefined));
    this.#rejectAll(
      new BrokerError('broker_error', 'the broker was closed before the RPC answered'),
    );
    if (channel?.active) await channel.close();
  }

  #getChannel(): Promise<Channel> {
    if (this.#channel?.active) return Promise.resolve(this.#channel);
    this.#setup ??= this.#open().finally(() => {
      this.#setup = undefined;
    });
    return this.#setup;
  }

  async #open(): Promise<Channel> {
    const channel = await this.#connection.acquire({ emitErrorsFromChannel: true });
    channel.on('error', (error: unknown) => {
      this.#reportError(new Error(`RPC client channel: ${describeError(error)}`, { cause: error }));
    });
    channel.once('close', () => {
      if (this.#channel === channel) this.#channel = undefined;
      this.#rejectAll(
        new BrokerError('broker_error', 'the RPC channel closed before an answer came'),
      );
    });
    channel.on('basic.return', (msg: ReturnedMessage) => {
      const call = msg.correlationId ? this.#pending.get(msg.correlationId) : undefined;
      if (!call || !msg.correlationId) return;
      this.#pending.delete(msg.correlationId);
      call.reject(
        new BrokerError(
          'no_holder',
          `no worker holds process ${call.pk}: the ${call.intent} RPC was unroutable (${msg.replyText})`,
          { details: { pk: call.pk, intent: call.intent } },
        ),
      );
    });
    try {
      await channel.exchangeDeclare(this.#declarations.exchanges.messages);
      await channel.confirmSelect();
      await channel.basicConsume({ queue: DIRECT_REPLY_TO, noAck: true }, (msg) =>
        this.#onReply(msg),
      );
    } catch (error) {
      await channel.close().catch(() => {});
      throw new BrokerError(
        'broker_error',
        `cannot open the RPC channel: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    }
    this.#channel = channel;
    return channel;
  }

  #onReply(msg: AsyncMessage): void {
    const id = msg.correlationId;
    const call = id ? this.#pending.get(id) : undefined;
    if (!call || !id) return; // late answer after a timeout: dropped
    this.#pending.delete(id);
    const parsed = parseBody(rpcReplySchema, msg.body);
    if (parsed.ok) call.resolve(parsed.value);
    else {
      call.reject(
        new BrokerError(
          'message_invalid',
          `invalid reply to the ${call.intent} RPC for process ${call.pk}: ${parsed.reason}`,
        ),
      );
    }
  }

  #rejectAll(error: BrokerError): void {
    for (const call of this.#pending.values()) call.reject(error);
    this.#pending.clear();
  }
}

/** Starts a lazy consumer and resolves on its first `ready`, or rejects after `timeout` s. */
export async function waitForReady(
  consumer: Consumer,
  timeout: number,
  what: string,
): Promise<void> {
  let lastError: unknown;
  const onError = (error: unknown) => {
    lastError = error;
  };
  consumer.on('error', onError);
  const ready = new Promise<void>((resolve) => consumer.once('ready', () => resolve()));
  consumer.start();
  try {
    await withDeadline(
      ready,
      timeout,
      () =>
        new BrokerError(
          'broker_error',
          `${what}: consumer not ready within ${timeout} s` +
            (lastError === undefined ? '' : `: ${describeError(lastError)}`),
          { cause: lastError },
        ),
    );
  } catch (error) {
    await consumer.close().catch(() => {});
    throw error;
  } finally {
    consumer.off('error', onError);
  }
}
