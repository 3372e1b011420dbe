import { AsyncLocalStorage } from 'node:async_hooks';
import { type ContinueTask, continueTaskSchema } from '@aiida/ipc';
import {
  type AsyncMessage,
  type Channel,
  type Connection,
  type Consumer,
  type ConsumerProps,
  ConsumerStatus,
} from 'rabbitmq-client';
import { settledWithin } from './deadline.js';
import { describeError } from './errors.js';
import { type BrokerLogger, previewBody } from './logger.js';
import { parseBody } from './parse-body.js';
import type { TopologyDeclarations } from './topology.js';

/** What to do with a task's delivery once the handler is done with it. */
export type TaskOutcome = 'ack' | 'requeue' | 'dead-letter';

/** Facts about one delivery of a task, next to the validated task. */
export interface TaskDelivery {
  /** True when RabbitMQ delivered this message before (to this or another consumer). */
  redelivered: boolean;
  /** The publisher's unique message id, when it set one (our publishers always do). */
  messageId: string | undefined;
}

/**
 * Handles one validated task. Resolve with `'ack'` (or nothing) once the task is claimed or known to
 * be a harmless duplicate, `'requeue'` to give it back to the queue, `'dead-letter'` to move it to
 * `P.process.dlq`. A handler that throws is a bug: its task is requeued once, and dead-lettered when
 * it was already a redelivery, so a throwing handler can never loop.
 *
 * It is async on purpose: TypeScript checks the literal outcomes of an async handler only against
 * a promise-only return type.
 */
export type TaskHandler = (
  task: ContinueTask,
  delivery: TaskDelivery,
  // biome-ignore lint/suspicious/noConfusingVoidType: a handler may return nothing (= ack)
) => Promise<TaskOutcome | void>;

/** Options of {@link RabbitBroker.consumeTasks}. */
export interface TaskConsumerOptions {
  /** Unacknowledged deliveries RabbitMQ may push ahead (basic.qos prefetch count); >= concurrency. */
  prefetch: number;
  /** Handlers running at once; a finite positive integer. */
  concurrency: number;
}

/** States of a {@link TaskConsumer}. */
export type TaskConsumerState = 'running' | 'paused' | 'closing' | 'closed';

/** Counters of a {@link TaskConsumer} since it was created. */
export interface TaskConsumerStats {
  acknowledged: number;
  requeued: number;
  /** Dead-lettered by the handler's choice or after a throw on a redelivery. */
  deadLettered: number;
  /** Bodies that failed the schema, dead-lettered with a log line. */
  invalid: number;
  /** Handler calls that threw. */
  handlerErrors: number;
  /** Deliveries given back unhandled because they arrived while pausing or closing. */
  returned: number;
  /** `basic.ack` frames sent (one `multiple` ack settles many deliveries). */
  ackFrames: number;
}

/** Result of {@link TaskConsumer.close}. */
export interface TaskConsumerCloseResult {
  /** False when handlers were still running at the deadline (they go on; their acks may fail). */
  drained: boolean;
  /** Handlers still running when close returned. */
  inFlight: number;
}

const insideHandler = new AsyncLocalStorage<true>();

/**
 * Consumes `P.process.queue`: validates each body with `continueTaskSchema` (an invalid one is
 * logged and dead-lettered to `P.process.dlq`), runs the handler with at most `concurrency` at once,
 * and acks, requeues or dead-letters as the handler says. Survives reconnects (rabbitmq-client
 * re-creates the channel, redeclares the queue with the profile's one set of arguments and
 * re-applies qos). Create it with {@link RabbitBroker.consumeTasks}.
 *
 * {@link pause} cancels the AMQP consumer and closes its channel, so the broker takes back every
 * delivery that was prefetched but not yet handled: a paused consumer holds nothing unacked.
 */
export class TaskConsumer {
  #consumer: Consumer;
  #state: TaskConsumerState = 'running';
  #transition: Promise<void> = Promise.resolve();
  #inFlight = 0;
  #concurrency: number;
  #logger: BrokerLogger;
  #queue: string;
  readonly #stats: TaskConsumerStats = {
    acknowledged: 0,
    requeued: 0,
    deadLettered: 0,
    invalid: 0,
    handlerErrors: 0,
    returned: 0,
    ackFrames: 0,
  };
  #onClosed: () => void;

  /** @internal Use {@link RabbitBroker.consumeTasks}. */
  constructor(
    connection: Connection,
    declarations: TopologyDeclarations,
    handler: TaskHandler,
    options: TaskConsumerOptions,
    hooks: { logger: BrokerLogger; reportError: (error: Error) => void; onClosed: () => void },
  ) {
    const { prefetch, concurrency } = validateConsumerOptions(options);
    this.#logger = hooks.logger;
    this.#onClosed = hooks.onClosed;
    this.#concurrency = concurrency;
    const queue = declarations.queues.process;
    this.#queue = queue.queue ?? '';
    const props: ConsumerProps = {
      queue: queue.queue,
      queueOptions: queue,
      exchanges: [declarations.exchanges.tasks, declarations.exchanges.dlx],
      queueBindings: [declarations.bindings.process],
      qos: { prefetchCount: prefetch },
      concurrency,
      // Our wrapper never throws; if it ever did, dead-letter rather than loop.
      requeue: false,
    };
    this.#consumer = connection.createConsumer(props, (msg) => this.#handle(handler, msg));
    // Takes over acknowledging the consumer's deliveries (it patches the consumer).
    new AckBatcher(this.#consumer, this.#stats);
    this.#consumer.on('error', (error: unknown) => {
      hooks.reportError(
        new Error(`task consumer on ${this.#queue}: ${describeError(error)}`, { cause: error }),
      );
    });
  }

  /** Current state. */
  get state(): TaskConsumerState {
    return this.#state;
  }

  /** Handlers running right now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Deliveries received but not yet handed to a handler (held unacked in memory). */
  get buffered(): number {
    return this.#consumer.stats.prefetched;
  }

  /** True while an AMQP consumer is registered on the queue (false while paused or reconnecting). */
  get isConsuming(): boolean {
    return this.#consumer.consumerTag !== '';
  }

  /** Counters since creation. */
  get stats(): Readonly<TaskConsumerStats> {
    return { ...this.#stats };
  }

  /**
   * Stops taking deliveries: cancels the consumer, waits for running handlers, and closes the
   * channel so the broker requeues whatever was prefetched. Resolves when that is done. Called from
   * inside a handler it resolves at once (the stop completes when that handler returns), so a
   * handler may `await` it without deadlocking.
   */
  pause(): Promise<void> {
    if (this.#state !== 'running')
      return this.#state === 'paused' ? this.#transition : Promise.resolve();
    this.#state = 'paused';
    // rabbitmq-client keeps feeding buffered deliveries to handlers until basic.cancel-ok;
    // a concurrency of 0 stops that at once, and closing the channel gives them back.
    this.#consumer.concurrency = 0;
    const done = this.#enqueue();
    return insideHandler.getStore() ? Promise.resolve() : done;
  }

  /** Takes deliveries again after {@link pause} (a new channel and consumer). */
  resume(): Promise<void> {
    if (this.#state !== 'paused') return Promise.resolve();
    this.#state = 'running';
    return this.#enqueue();
  }

  /**
   * Cancels the consumer and waits up to `timeout` seconds for running handlers; unhandled
   * prefetched deliveries go back to the queue. Never rejects.
   * @param timeout seconds. @default 10
   */
  async close(timeout = 10): Promise<TaskConsumerCloseResult> {
    if (this.#state === 'closed') return { drained: true, inFlight: this.#inFlight };
    this.#state = 'closing';
    this.#consumer.concurrency = 0;
    const closing = this.#transition.then(() => this.#consumer.close());
    const drained = await settledWithin(closing, timeout);
    if (!drained) {
      this.#logger.warn(
        `task consumer on ${this.#queue}: ${this.#inFlight} handler(s) still running after ${timeout} s; closing anyway`,
      );
    }
    this.#state = 'closed';
    this.#onClosed();
    return { drained, inFlight: this.#inFlight };
  }

  /** Applies the wanted state after any earlier transition (pause/resume races stay ordered). */
  #enqueue(): Promise<void> {
    this.#transition = this.#transition.then(async () => {
      try {
        if (this.#state === 'paused') {
          this.#consumer.concurrency = 0;
          await this.#consumer.close();
        } else if (this.#state === 'running') {
          this.#consumer.concurrency = this.#concurrency;
          this.#consumer.start();
        }
      } catch (error) {
        this.#logger.warn(`task consumer on ${this.#queue}: ${describeError(error)}`);
      }
    });
    return this.#transition;
  }

  async #handle(handler: TaskHandler, msg: AsyncMessage): Promise<ConsumerStatus> {
    if (this.#state !== 'running') {
      // A delivery that was buffered before the cancel took effect: give it back untouched.
      this.#stats.returned++;
      return ConsumerStatus.REQUEUE;
    }
    const parsed = parseTaskBody(msg.body);
    if (!parsed.ok) {
      this.#stats.invalid++;
      this.#logger.error(
        `dead-lettering an invalid task message (messageId ${msg.messageId ?? 'none'}) from ${this.#queue}: ` +
          `${parsed.reason}; body: ${previewBody(msg.body)}`,
      );
      return ConsumerStatus.DROP;
    }
    this.#inFlight++;
    let outcome: TaskOutcome | undefined;
    try {
      outcome = (await insideHandler.run(true, () =>
        handler(parsed.value, { redelivered: msg.redelivered, messageId: msg.messageId }),
      )) as TaskOutcome | undefined;
    } catch (error) {
      this.#stats.handlerErrors++;
      const action = msg.redelivered
        ? 'dead-lettering it (it was a redelivery)'
        : 'requeueing it once';
      this.#logger.error(
        `task handler threw for process ${parsed.value.pk}: ${describeError(error)}; ${action}`,
      );
      outcome = msg.redelivered ? 'dead-letter' : 'requeue';
    } finally {
      this.#inFlight--;
    }
    switch (outcome) {
      case undefined:
      case 'ack':
        this.#stats.acknowledged++;
        return ConsumerStatus.ACK;
      case 'requeue':
        this.#stats.requeued++;
        return ConsumerStatus.REQUEUE;
      case 'dead-letter':
        this.#stats.deadLettered++;
        return ConsumerStatus.DROP;
      default:
        this.#logger.error(
          `task handler returned ${JSON.stringify(outcome)} for process ${parsed.value.pk}; acknowledging`,
        );
        this.#stats.acknowledged++;
        return ConsumerStatus.ACK;
    }
  }
}

/** Validates a task body (already JSON-decoded by rabbitmq-client, or raw). */
export function parseTaskBody(body: unknown) {
  return parseBody(continueTaskSchema, body);
}

/** Checks prefetch and concurrency: positive integers, prefetch >= concurrency. */
export function validateConsumerOptions(options: TaskConsumerOptions): TaskConsumerOptions {
  const { prefetch, concurrency } = options;
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a finite positive integer, got ${concurrency}`);
  }
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > 65535) {
    throw new RangeError(`prefetch must be an integer from 1 to 65535, got ${prefetch}`);
  }
  if (prefetch < concurrency) {
    throw new RangeError(
      `prefetch (${prefetch}) must be at least concurrency (${concurrency}), or handlers sit idle`,
    );
  }
  return { prefetch, concurrency };
}

/** The parts of rabbitmq-client 5's `Consumer` that {@link AckBatcher} replaces or reads. */
interface ConsumerInternals {
  _ch?: Channel;
  _prefetched: AsyncMessage[];
  _handler: (msg: AsyncMessage, reply: never) => Promise<ConsumerStatus> | ConsumerStatus;
  _props: ConsumerProps;
  _execHandler: (msg: AsyncMessage) => Promise<void>;
  emit(event: 'error', error: unknown): boolean;
}

/**
 * Acknowledges a consumer's deliveries in batches: every delivery whose handler said ACK in one
 * turn of the event loop is settled by one `basic.ack` with `multiple`, up to the highest tag
 * below every delivery still unsettled on that channel (being handled or prefetched); acks above
 * that go one by one. Requeues and dead-letters are sent at once, one by one, before any later
 * `multiple` ack could cover them. A delivery is acked only after its handler resolved, as before
 * (for tasks: after the claim committed or was refused); its handler call counts as running until
 * its ack is written, so a pause or close (which close the channel after the running handlers)
 * never drops an ack that was due.
 *
 * It replaces the consumer's per-message handler wrapper (`_execHandler`, rabbitmq-client 5.0.x;
 * the constructor checks the method exists, so an upgrade that renames it fails loudly).
 */
class AckBatcher {
  #c: ConsumerInternals;
  /** Tags being handled, per channel (a reconnect brings a new channel with new tags). */
  #handling = new Map<Channel, Set<number>>();
  #due = new Map<Channel, { tag: number; done: () => void }[]>();
  #scheduled = false;

  constructor(
    consumer: Consumer,
    private readonly stats: { ackFrames: number },
  ) {
    this.#c = consumer as unknown as ConsumerInternals;
    if (typeof this.#c._execHandler !== 'function' || !Array.isArray(this.#c._prefetched)) {
      throw new Error('rabbitmq-client Consumer internals changed: cannot batch acks');
    }
    this.#c._execHandler = (msg) => this.#exec(msg);
  }

  async #exec(msg: AsyncMessage): Promise<void> {
    const c = this.#c;
    const ch = c._ch;
    if (!ch) return;
    const tag = msg.deliveryTag;
    let handling = this.#handling.get(ch);
    if (!handling) {
      handling = new Set();
      this.#handling.set(ch, handling);
      ch.once('close', () => {
        this.#handling.delete(ch);
        for (const d of this.#due.get(ch) ?? []) d.done();
        this.#due.delete(ch);
      });
    }
    handling.add(tag);
    let status: ConsumerStatus;
    try {
      status = await c._handler(msg, undefined as never);
    } catch (error) {
      handling.delete(tag);
      this.#nack(ch, tag, c._props.requeue !== false);
      c.emit('error', error);
      return;
    }
    handling.delete(tag);
    if (status === ConsumerStatus.DROP || status === ConsumerStatus.REQUEUE) {
      this.#nack(ch, tag, status === ConsumerStatus.REQUEUE);
      return;
    }
    await new Promise<void>((done) => {
      let due = this.#due.get(ch);
      if (!due) {
        due = [];
        this.#due.set(ch, due);
      }
      due.push({ tag, done });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #nack(ch: Channel, tag: number, requeue: boolean): void {
    try {
      ch.basicNack({ deliveryTag: tag, requeue });
    } catch (error) {
      this.#failed(error);
    }
  }

  #failed(error: unknown): void {
    const e = error instanceof Error ? error : new Error(String(error));
    e.message = `failed to ack/nack message; ${e.message}`;
    this.#c.emit('error', e);
  }

  #flush(): void {
    this.#scheduled = false;
    const all = this.#due;
    this.#due = new Map();
    for (const [ch, due] of all) {
      try {
        if (!ch.active) continue; // closed: the broker gave these deliveries back already
        let lowest = Number.POSITIVE_INFINITY;
        for (const t of this.#handling.get(ch) ?? []) lowest = Math.min(lowest, t);
        const buffered = this.#c._ch === ch ? this.#c._prefetched[0] : undefined;
        if (buffered) lowest = Math.min(lowest, buffered.deliveryTag);
        let upTo = 0;
        for (const d of due) {
          if (d.tag < lowest) upTo = Math.max(upTo, d.tag);
        }
        if (upTo > 0) {
          ch.basicAck({ deliveryTag: upTo, multiple: true });
          this.stats.ackFrames++;
        }
        for (const d of due) {
          if (d.tag > lowest) {
            ch.basicAck({ deliveryTag: d.tag });
            this.stats.ackFrames++;
          }
        }
      } catch (error) {
        this.#failed(error);
      } finally {
        for (const d of due) d.done();
      }
    }
  }
}
