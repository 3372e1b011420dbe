import { randomUUID } from 'node:crypto';
import { getBrokerUrl, getOption, getRedactedBrokerUrl, type Profile } from '@aiida/config';
import {
  type ContinueTask,
  continueTaskSchema,
  PROTOCOL_VERSION,
  type RpcReply,
  type RpcRequest,
  type StateChangedBroadcast,
  stateChangedBroadcastSchema,
} from '@aiida/ipc';
import { Connection, type Envelope, type Publisher, type ReturnedMessage } from 'rabbitmq-client';
import { settledWithin, withDeadline } from './deadline.js';
import { BrokerError, describeError, isBrokerError } from './errors.js';
import { ListenerWatch, listenersQueueDeclaration } from './listeners.js';
import { type BrokerLogger, stderrBrokerLogger } from './logger.js';
import { RpcCaller, type RpcHandler, RpcServer, type RpcServerOptions } from './rpc.js';
import { type StateChangedHandler, StateChangedSubscription } from './subscription.js';
import { TaskConsumer, type TaskConsumerOptions, type TaskHandler } from './task-consumer.js';
import {
  declarationLists,
  stateChangedRoutingKey,
  TASK_ROUTING_KEY,
  type TopologyDeclarations,
  type TopologyNames,
  topologyDeclarations,
  topologyNames,
} from './topology.js';

/** Options of {@link RabbitBroker}. Durations are in seconds. */
export interface BrokerOptions {
  /** The profile: its uuid names the topology, its broker settings say where RabbitMQ is. */
  profile: Profile;
  /** Name shown for the connection in RabbitMQ (`rabbitmqctl list_connections client_properties`). */
  connectionName?: string;
  /**
   * Receives every asynchronous error (connection lost, a consumer's channel failed). Without it
   * they are logged with `logger.warn`. Errors are never left unhandled.
   */
  onError?: (error: Error) => void;
  /**
   * Where log lines go (invalid messages, reconnects).
   * @default {@link stderrBrokerLogger} of the profile (its `logging.level` and `logging.format`)
   */
  logger?: BrokerLogger;
  /** Deadline of a publisher confirm, seconds. @default the profile's `broker.task_timeout` */
  taskTimeout?: number;
  /** Reconnect backoff after the first connection, seconds. @default { min: 0.5, max: 10 } */
  reconnectDelay?: { min: number; max: number };
  /** Tasks in flight at once in {@link RabbitBroker.publishContinueMany}. @default 1000 */
  publishWindow?: number;
  /**
   * AMQP heartbeat, seconds: a peer silent for about twice this long is dead, and RabbitMQ puts
   * its unacked deliveries back in the queue. Replaces the profile URL's `heartbeat` parameter
   * (AiiDA's 600 s, meant for its own client that held a delivery for a process's whole life);
   * RabbitMQ uses the lower of this and its own `heartbeat` setting. `0` turns heartbeats off
   * (only if the server's setting is 0 too).
   * @default 5 ({@link DEFAULT_BROKER_HEARTBEAT})
   */
  heartbeat?: number;
}

/**
 * Default AMQP heartbeat in seconds. A stopped or blocked peer is found dead after about two
 * heartbeats (~10 s), close to the default `daemon.lease_timeout` (10 s): its deliveries go back
 * to the queue about when its leases expire. A worker acks each task at once and holds nothing
 * for a process's life, so a short heartbeat costs nothing but a frame every 2.5 s; a body that
 * blocks the event loop longer only costs a reconnect.
 */
export const DEFAULT_BROKER_HEARTBEAT = 5;

/** The profile's broker URL with its `heartbeat` parameter replaced by `seconds`. */
function urlWithHeartbeat(url: string, seconds: number): string {
  const parsed = new URL(url);
  parsed.searchParams.set('heartbeat', String(Math.max(0, Math.round(seconds))));
  return parsed.toString();
}

/** Options of {@link RabbitBroker.connect}. */
export interface ConnectOptions {
  /** Seconds to connect and declare the topology. @default 10 */
  timeout?: number;
  /**
   * Reject on the first connection failure (refused, bad credentials) instead of retrying until
   * `timeout`. A worker wants the error at once. @default true
   */
  failFast?: boolean;
}

/** Connection state of a {@link RabbitBroker}. */
export type BrokerState =
  | 'idle'
  | 'connecting'
  | 'connected'
  | 'reconnecting'
  | 'closing'
  | 'closed';

/** Message counts of the profile's durable queues (ready messages; unacked ones not included). */
export interface QueueCounts {
  /** Ready tasks in `P.process.queue`. */
  tasks: number;
  /** Messages in `P.process.dlq`. */
  deadLetters: number;
}

interface Closable {
  close(timeout?: number): Promise<unknown>;
}

/**
 * The RabbitMQ transport of a profile: one AMQP connection (rabbitmq-client), the profile's fixed
 * topology, tasks with publisher confirms, task consumption, RPC and broadcasts. After the first
 * successful {@link connect} the connection is re-established forever by rabbitmq-client, and
 * consumers and publishers redeclare what they use on their new channels.
 */
export class RabbitBroker {
  /** Names of the profile's exchanges and queues. */
  readonly topology: Readonly<TopologyNames>;
  /** The declarations (with their arguments) every declarer of this profile uses. */
  readonly declarations: Readonly<TopologyDeclarations>;
  /** The broker URL with the password replaced by `***`, for messages and logs. */
  readonly redactedUrl: string;
  /** Deadline of a publisher confirm, seconds. */
  readonly taskTimeout: number;

  #profile: Profile;
  #options: BrokerOptions;
  #logger: BrokerLogger;
  #state: BrokerState = 'idle';
  #connection: Connection | undefined;
  #connecting: Promise<void> | undefined;
  #taskPublisher: Publisher | undefined;
  #messagePublisher: Publisher | undefined;
  #rpcCaller: RpcCaller | undefined;
  #listenerWatch: ListenerWatch | undefined;
  #listenerWatchWarned = 0;
  #returned = new Map<string, ReturnedMessage | undefined>();
  #consumers = new Set<Closable>();
  #reconnectListeners = new Set<() => void>();
  #disconnectListeners = new Set<(error: Error) => void>();

  constructor(options: BrokerOptions) {
    this.#options = options;
    this.#profile = options.profile;
    this.#logger = options.logger ?? stderrBrokerLogger(options.profile);
    this.topology = Object.freeze(topologyNames(options.profile.uuid));
    this.declarations = topologyDeclarations(
      this.topology,
      options.profile.broker.config.queueType,
    );
    // The heartbeat we connect with, not the profile's (see DEFAULT_BROKER_HEARTBEAT).
    this.redactedUrl = getRedactedBrokerUrl(options.profile).replace(
      /([?&]heartbeat=)\d+/,
      `$1${Math.max(0, Math.round(options.heartbeat ?? DEFAULT_BROKER_HEARTBEAT))}`,
    );
    this.taskTimeout =
      options.taskTimeout ??
      getOption('broker.task_timeout', {
        profile: options.profile,
        aiidaPath: options.profile.aiidaPath,
      });
  }

  /** Current connection state. */
  get state(): BrokerState {
    return this.#state;
  }

  /** True while the AMQP connection is open (and not blocked by a resource alarm). */
  get isConnected(): boolean {
    return this.#connection?.ready === true;
  }

  /** Calls `listener` each time the connection is re-established after a loss. Returns an unsubscribe. */
  onReconnect(listener: () => void): () => void {
    this.#reconnectListeners.add(listener);
    return () => this.#reconnectListeners.delete(listener);
  }

  /** Calls `listener` when an established connection is lost. Returns an unsubscribe. */
  onDisconnect(listener: (error: Error) => void): () => void {
    this.#disconnectListeners.add(listener);
    return () => this.#disconnectListeners.delete(listener);
  }

  /**
   * Connects and declares the profile's topology; resolves when both are done. Before the first
   * success, a failure rejects with `BrokerError` `broker_unreachable` naming the redacted URL and
   * the connection error, and closes the connection (no retry timer is left running). Calling it
   * again after a failure tries again; calling it while connected does nothing.
   */
  connect(options: ConnectOptions = {}): Promise<void> {
    if (this.#state === 'connected' || this.#state === 'reconnecting') return Promise.resolve();
    if (this.#state === 'closing' || this.#state === 'closed') {
      return Promise.reject(new BrokerError('broker_error', 'the broker is closed'));
    }
    this.#connecting ??= this.#connect(options).finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  async #connect(options: ConnectOptions): Promise<void> {
    const timeout = options.timeout ?? 10;
    const failFast = options.failFast ?? true;
    const started = Date.now();
    this.#state = 'connecting';
    const delay = this.#options.reconnectDelay ?? { min: 0.5, max: 10 };
    let connection: Connection;
    try {
      connection = new Connection({
        url: urlWithHeartbeat(
          getBrokerUrl(this.#profile),
          this.#options.heartbeat ?? DEFAULT_BROKER_HEARTBEAT,
        ),
        connectionName: this.#options.connectionName,
        connectionTimeout: Math.max(1, Math.round(timeout * 1000)),
        retryLow: Math.max(1, Math.round(delay.min * 1000)),
        retryHigh: Math.max(1, Math.round(delay.max * 1000)),
        // Our frames are small and latency-bound (a task, a confirm, an ack): with Nagle's
        // algorithm on (rabbitmq-client's default), each waited for the previous one's ACK and
        // submit-to-finished p50 was 3x longer in the bench.
        noDelay: true,
      });
    } catch (error) {
      this.#state = 'idle';
      throw this.#unreachable(error);
    }
    let everConnected = false;
    let firstFailure: (error: unknown) => void = () => {};
    const firstConnection = new Promise<void>((resolve, reject) => {
      connection.once('connection', () => resolve());
      firstFailure = reject;
    });
    let lastError: unknown;
    connection.on('error', (error: unknown) => {
      lastError = error;
      if (!everConnected) {
        if (failFast) firstFailure(error);
        return;
      }
      const err = error instanceof Error ? error : new Error(String(error));
      if (this.#state === 'connected' && !connection.ready) {
        this.#state = 'reconnecting';
        this.#logger.warn(
          `connection to ${this.redactedUrl} lost: ${describeError(err)}; reconnecting`,
        );
        for (const listener of this.#disconnectListeners) listener(err);
      }
      this.#reportError(err);
    });
    connection.on('connection', () => {
      if (!everConnected) return;
      if (this.#state === 'reconnecting' || this.#state === 'connected') {
        this.#state = 'connected';
        this.#logger.info(`reconnected to ${this.redactedUrl}`);
        this.#declareTopology(connection).catch((error: unknown) => {
          this.#reportError(
            new Error(`redeclaring the topology after a reconnect failed: ${describeError(error)}`),
          );
        });
        for (const listener of this.#reconnectListeners) listener();
      }
    });
    connection.on('connection.blocked', (reason: string) => {
      this.#logger.warn(`RabbitMQ blocked this connection (${reason}): publishing waits`);
    });
    connection.on('connection.unblocked', () =>
      this.#logger.info('RabbitMQ unblocked this connection'),
    );

    try {
      await withDeadline(firstConnection, timeout, () => {
        const seen = lastError === undefined ? '' : `; last error: ${describeError(lastError)}`;
        return new Error(`no connection within ${timeout} s${seen}`, { cause: lastError });
      });
    } catch (error) {
      await this.#destroy(connection);
      this.#state = 'idle';
      throw this.#unreachable(error);
    }
    everConnected = true;
    this.#connection = connection;
    try {
      const left = Math.max(0.5, timeout - (Date.now() - started) / 1000);
      await withDeadline(
        this.#declareTopology(connection),
        left,
        () =>
          new BrokerError('broker_error', `declaring the topology took longer than ${timeout} s`),
      );
    } catch (error) {
      this.#connection = undefined;
      await this.#destroy(connection);
      this.#state = 'idle';
      throw isBrokerError(error)
        ? error
        : new BrokerError(
            'broker_error',
            `connected to ${this.redactedUrl} but declaring the topology of profile ` +
              `${this.#profile.name} (${this.topology.prefix}) failed: ${describeError(error)}` +
              (/PRECONDITION_FAILED/.test(String(error))
                ? '. A queue or exchange exists with other arguments (e.g. another queue type); ' +
                  'it must be deleted before it can be declared again.'
                : ''),
            { cause: error },
          );
    }
    this.#state = 'connected';
    this.#taskPublisher = connection.createPublisher({
      confirm: true,
      // One retry on a new channel if the first fails (e.g. the channel died); duplicates of a
      // task are harmless by design, losing one is not.
      maxAttempts: 2,
      ...declarationLists(this.declarations),
    });
    this.#taskPublisher.on('basic.return', (msg: ReturnedMessage) => {
      if (msg.messageId && this.#returned.has(msg.messageId))
        this.#returned.set(msg.messageId, msg);
    });
    this.#taskPublisher.on('retry', (error: unknown) => {
      this.#logger.warn(`retrying a task publish: ${describeError(error)}`);
    });
    this.#messagePublisher = connection.createPublisher({
      exchanges: [this.declarations.exchanges.messages],
    });
    this.#rpcCaller = new RpcCaller(connection, this.topology, this.declarations, (e) =>
      this.#reportError(e),
    );
    const listeners = listenersQueueDeclaration(this.topology);
    this.#listenerWatch = new ListenerWatch(
      async () => (await connection.queueDeclare(listeners)).consumerCount,
      (error) => {
        if (Date.now() - this.#listenerWatchWarned < 60_000) return;
        this.#listenerWatchWarned = Date.now();
        this.#logger.warn(
          `checking for state-changed listeners failed (broadcasting anyway): ${describeError(error)}`,
        );
      },
    );
  }

  /**
   * Publishes a `continue` task for process `pk`: persistent, `mandatory`, and resolved only on the
   * broker's publisher confirm within `taskTimeout` seconds. Rejects `publish_failed` (nack,
   * unroutable, connection lost, deadline) or `message_invalid` (a pk that is not a positive integer).
   */
  async publishContinue(pk: number): Promise<void> {
    await this.#publishTask(this.#taskBody(pk));
  }

  /**
   * Publishes a task for each pk, pipelined (up to `publishWindow` awaiting their confirms at
   * once). Resolves when every task is confirmed; otherwise rejects `publish_failed` after all have
   * settled, with `details.confirmed` and `details.failed` (pk lists) so a caller can record what
   * was dispatched.
   */
  async publishContinueMany(pks: readonly number[]): Promise<void> {
    const bodies = pks.map((pk) => this.#taskBody(pk));
    const window = this.#options.publishWindow ?? 1000;
    const confirmed: number[] = [];
    const failed: number[] = [];
    let firstError: unknown;
    for (let start = 0; start < bodies.length; start += window) {
      const chunk = bodies.slice(start, start + window);
      const results = await Promise.allSettled(chunk.map((body) => this.#publishTask(body)));
      results.forEach((result, i) => {
        const pk = chunk[i]!.pk;
        if (result.status === 'fulfilled') confirmed.push(pk);
        else {
          failed.push(pk);
          firstError ??= result.reason;
        }
      });
    }
    if (failed.length > 0) {
      throw new BrokerError(
        'publish_failed',
        `${failed.length} of ${pks.length} tasks were not confirmed: ${describeError(firstError)}`,
        { cause: firstError, details: { confirmed, failed } },
      );
    }
  }

  /**
   * Consumes the profile's task queue. See {@link TaskConsumer} and {@link TaskHandler}: a body that
   * fails `continueTaskSchema` is logged and dead-lettered to `P.process.dlq`.
   */
  consumeTasks(handler: TaskHandler, options: TaskConsumerOptions): TaskConsumer {
    const connection = this.#requireConnection();
    let consumer: TaskConsumer | undefined;
    consumer = new TaskConsumer(connection, this.declarations, handler, options, {
      logger: this.#logger,
      reportError: (e) => this.#reportError(e),
      onClosed: () => {
        if (consumer) this.#consumers.delete(consumer);
      },
    });
    this.#consumers.add(consumer);
    return consumer;
  }

  /**
   * Starts an RPC server for this worker. It answers for no pk until {@link RpcServer.addPk}.
   * Resolves when its queue is consumed.
   */
  async serveRpc(handler: RpcHandler, options: RpcServerOptions = {}): Promise<RpcServer> {
    const connection = this.#requireConnection();
    const server: RpcServer = new RpcServer(
      connection,
      this.topology,
      this.declarations,
      handler,
      options,
      {
        logger: this.#logger,
        reportError: (e) => this.#reportError(e),
        onClosed: () => this.#consumers.delete(server),
      },
    );
    this.#consumers.add(server);
    try {
      await server.start(options.timeout ?? this.taskTimeout);
    } catch (error) {
      this.#consumers.delete(server);
      throw error;
    }
    return server;
  }

  /**
   * Sends an RPC request to whichever worker holds process `pk` and resolves with its reply (which
   * may be `{ ok: false, error }`). Rejects `no_holder` at once when no worker is bound for the pk
   * (fall back to the store), `timeout` when nobody answers within `timeout` seconds.
   * @param options.timeout seconds. @default taskTimeout
   */
  async callRpc(
    pk: number,
    request: RpcRequest,
    options: { timeout?: number } = {},
  ): Promise<RpcReply> {
    this.#requireConnection();
    const timeout = options.timeout ?? this.taskTimeout;
    return this.#rpcCaller!.call(pk, request, timeout);
  }

  /**
   * Broadcasts a state change on `P.messages` with key `broadcast.state_changed.<pk>`, while anyone
   * may listen: when a recent check found no subscription ({@link subscribeStateChanged}; they
   * are counted as consumers of `P.listeners`), it resolves without publishing. A subscription that
   * is ready gets every broadcast of a change made after that (see {@link ListenerWatch}).
   */
  async broadcastStateChanged(message: StateChangedBroadcast): Promise<void> {
    this.#requireConnection();
    const parsed = stateChangedBroadcastSchema.safeParse(message);
    if (!parsed.success) {
      throw new BrokerError(
        'message_invalid',
        `invalid state-changed broadcast: ${parsed.error.message}`,
      );
    }
    const watch = this.#listenerWatch;
    if (watch && !watch.mayHaveListeners()) {
      watch.skipped++;
      return;
    }
    const envelope: Envelope = {
      exchange: this.topology.messagesExchange,
      routingKey: stateChangedRoutingKey(parsed.data.pk),
      contentType: 'application/json',
      messageId: randomUUID(),
    };
    await withDeadline(
      this.#messagePublisher!.send(envelope, parsed.data),
      this.taskTimeout,
      () =>
        new BrokerError(
          'broker_error',
          `broadcast for process ${message.pk} not sent within ${this.taskTimeout} s`,
        ),
    ).catch((error: unknown) => {
      throw isBrokerError(error)
        ? error
        : new BrokerError('broker_error', `broadcast failed: ${describeError(error)}`, {
            cause: error,
          });
    });
  }

  /** State-changed broadcasts left out because nobody listened, since the connection was made. */
  get broadcastsSkipped(): number {
    return this.#listenerWatch?.skipped ?? 0;
  }

  /**
   * Subscribes to state-changed broadcasts of process `pk`, or of every process. Resolves when the
   * subscription's queue is bound and every publisher counts it as a listener (a second after it
   * consumes `P.listeners`: `LISTENER_ANSWER_VALIDITY_S`), so every change made
   * after it resolved is received: read the store after that for what happened before.
   */
  async subscribeStateChanged(
    handler: StateChangedHandler,
    pk?: number,
  ): Promise<StateChangedSubscription> {
    const connection = this.#requireConnection();
    const subscription: StateChangedSubscription = new StateChangedSubscription(
      connection,
      this.topology,
      this.declarations,
      handler,
      pk,
      {
        logger: this.#logger,
        reportError: (e) => this.#reportError(e),
        onClosed: () => this.#consumers.delete(subscription),
      },
    );
    this.#consumers.add(subscription);
    try {
      await subscription.start(this.taskTimeout);
    } catch (error) {
      this.#consumers.delete(subscription);
      throw error;
    }
    return subscription;
  }

  /** Ready messages in the task queue and the dead-letter queue (passive declares). */
  async queueCounts(): Promise<QueueCounts> {
    const connection = this.#requireConnection();
    try {
      const tasks = await connection.queueDeclare({
        queue: this.topology.processQueue,
        passive: true,
      });
      const dlq = await connection.queueDeclare({ queue: this.topology.dlq, passive: true });
      return { tasks: tasks.messageCount, deadLetters: dlq.messageCount };
    } catch (error) {
      throw new BrokerError(
        'broker_error',
        `cannot read the queue counts: ${describeError(error)}`,
        {
          cause: error,
        },
      );
    }
  }

  /**
   * Deletes the profile's queues and exchanges (for tests and profile deletion). Messages in them are
   * lost. Consumers of this broker should be closed first.
   */
  async deleteTopology(): Promise<void> {
    const connection = this.#requireConnection();
    const failures: string[] = [];
    const attempt = async (what: string, run: () => Promise<unknown>) => {
      try {
        await run();
      } catch (error) {
        failures.push(`${what}: ${describeError(error)}`);
      }
    };
    // The listener checks would declare `P.listeners` again: from here on, always broadcast.
    this.#listenerWatch?.stop();
    const listeners = listenersQueueDeclaration(this.topology).queue!;
    for (const queue of [this.topology.processQueue, this.topology.dlq, listeners]) {
      await attempt(`queue ${queue}`, () => connection.queueDelete({ queue }));
    }
    for (const exchange of [
      this.topology.tasksExchange,
      this.topology.dlx,
      this.topology.messagesExchange,
    ]) {
      await attempt(`exchange ${exchange}`, () => connection.exchangeDelete({ exchange }));
    }
    if (failures.length > 0) {
      throw new BrokerError('broker_error', `deleting the topology failed: ${failures.join('; ')}`);
    }
  }

  /**
   * Closes consumers (waiting for their handlers), then publishers, then the connection, each
   * within the deadline left; a connection that does not close in time is destroyed. Never rejects.
   * @param options.timeout seconds for the whole close. @default 10
   */
  async close(options: { timeout?: number } = {}): Promise<void> {
    if (this.#state === 'closed') return;
    const timeout = options.timeout ?? 10;
    const deadline = Date.now() + timeout * 1000;
    const left = () => Math.max(0, (deadline - Date.now()) / 1000);
    if (this.#connecting) await settledWithin(this.#connecting, left());
    this.#state = 'closing';
    this.#listenerWatch?.stop();
    this.#listenerWatch = undefined;
    const connection = this.#connection;
    this.#connection = undefined;
    await settledWithin(
      Promise.allSettled([...this.#consumers].map((c) => c.close(left()))),
      left(),
    );
    this.#consumers.clear();
    const publishers = [
      this.#taskPublisher?.close(),
      this.#messagePublisher?.close(),
      this.#rpcCaller?.close(),
    ].filter((p): p is Promise<void> => p !== undefined);
    if (!(await settledWithin(Promise.allSettled(publishers), left()))) {
      this.#logger.warn('publishers did not close in time');
    }
    this.#taskPublisher = this.#messagePublisher = this.#rpcCaller = undefined;
    if (connection && !(await settledWithin(connection.close(), left()))) {
      this.#logger.warn(
        `connection to ${this.redactedUrl} did not close within ${timeout} s; destroying it`,
      );
      connection.unsafeDestroy();
    }
    this.#state = 'closed';
  }

  #taskBody(pk: number): ContinueTask {
    const parsed = continueTaskSchema.safeParse({ v: PROTOCOL_VERSION, type: 'continue', pk });
    if (!parsed.success) {
      throw new BrokerError(
        'message_invalid',
        `cannot publish a task for pk ${String(pk)}: not a positive integer`,
      );
    }
    return parsed.data;
  }

  async #publishTask(body: ContinueTask): Promise<void> {
    this.#requireConnection();
    const messageId = randomUUID();
    const envelope: Envelope = {
      exchange: this.topology.tasksExchange,
      routingKey: TASK_ROUTING_KEY,
      durable: true,
      mandatory: true,
      contentType: 'application/json',
      messageId,
    };
    this.#returned.set(messageId, undefined);
    try {
      await withDeadline(
        this.#taskPublisher!.send(envelope, body),
        this.taskTimeout,
        () =>
          new BrokerError(
            'publish_failed',
            `no publisher confirm for the task of process ${body.pk} within ${this.taskTimeout} s ` +
              `(broker ${this.redactedUrl}, connection ${this.isConnected ? 'open' : 'down'})`,
          ),
      );
      // rabbitmq-client emits basic.return on a setImmediate, while the confirm that follows it
      // resolves at once: let that turn pass before looking for a return.
      await new Promise((resolve) => setImmediate(resolve));
      const returned = this.#returned.get(messageId);
      if (returned) {
        throw new BrokerError(
          'publish_failed',
          `the task of process ${body.pk} was unroutable (${returned.replyText}): ` +
            `is ${this.topology.processQueue} bound to ${this.topology.tasksExchange}?`,
        );
      }
    } catch (error) {
      if (isBrokerError(error)) throw error;
      throw new BrokerError(
        'publish_failed',
        `publishing the task of process ${body.pk} failed: ${describeError(error)}`,
        { cause: error },
      );
    } finally {
      this.#returned.delete(messageId);
    }
  }

  async #declareTopology(connection: Connection): Promise<void> {
    const channel = await connection.acquire();
    try {
      const lists = declarationLists(this.declarations);
      for (const exchange of lists.exchanges) await channel.exchangeDeclare(exchange);
      for (const queue of lists.queues) await channel.queueDeclare(queue);
      for (const binding of lists.queueBindings) await channel.queueBind(binding);
    } finally {
      if (channel.active) await channel.close().catch(() => {});
    }
  }

  #requireConnection(): Connection {
    if (this.#connection && (this.#state === 'connected' || this.#state === 'reconnecting')) {
      return this.#connection;
    }
    throw new BrokerError(
      'broker_error',
      this.#state === 'closing' || this.#state === 'closed'
        ? 'the broker is closed'
        : 'the broker is not connected: call connect() first',
    );
  }

  #unreachable(error: unknown): BrokerError {
    const cause = (error as { cause?: unknown })?.cause ?? error;
    const text = (
      error instanceof Error && error.message.startsWith('no connection within')
        ? error.message
        : describeError(cause)
    )
      // rabbitmq-client writes a refused login as "undefined: ACCESS_REFUSED - ... logfile."
      .replace(/^undefined: /, '')
      .replace(/\.+$/, '');
    return new BrokerError(
      'broker_unreachable',
      `cannot connect to RabbitMQ at ${this.redactedUrl} for profile ${this.#profile.name}: ${text}. ` +
        "Check that RabbitMQ is running and that the profile's broker settings are right.",
      { cause, details: { reason: text, url: this.redactedUrl } },
    );
  }

  async #destroy(connection: Connection): Promise<void> {
    // close() while still connecting clears the retry timer and destroys the socket.
    await settledWithin(connection.close(), 2);
    connection.unsafeDestroy();
    connection.removeAllListeners('connection');
  }

  #reportError(error: Error): void {
    if (this.#options.onError) {
      try {
        this.#options.onError(error);
        return;
      } catch {
        // fall through to the logger
      }
    }
    this.#logger.warn(describeError(error));
  }
}
