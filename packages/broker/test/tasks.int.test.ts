import { RabbitBroker, type TaskConsumer, type TaskHandler } from '@aiida/broker';
import { getBrokerUrl } from '@aiida/config';
import { PROTOCOL_VERSION } from '@aiida/ipc';
import { Connection } from 'rabbitmq-client';
import { queueRow } from './rabbitmqctl.js';
import { createTempProfile, type TempProfile, waitFor } from './support.js';

describe('tasks: publish with confirms, consume, dead-letter, pause', () => {
  let test: TempProfile;
  let broker: RabbitBroker;
  const logLines: string[] = [];
  const logger = {
    info: () => {},
    warn: (m: string) => logLines.push(`warn: ${m}`),
    error: (m: string) => logLines.push(`error: ${m}`),
  };
  let consumer: TaskConsumer | undefined;

  beforeAll(async () => {
    test = createTempProfile('broker-tasks');
    broker = new RabbitBroker({
      profile: test.profile,
      logger,
      connectionName: 'broker-tasks-test',
    });
    await broker.connect({ timeout: 10 });
  });

  afterEach(async () => {
    await consumer?.close(5);
    consumer = undefined;
  });

  afterAll(async () => {
    await broker?.deleteTopology().catch(() => {});
    await broker?.close({ timeout: 5 });
    test?.remove();
  });

  /** Publishes one raw message to the task exchange, as a foreign or broken publisher would. */
  async function publishRaw(body: unknown): Promise<void> {
    const connection = new Connection(getBrokerUrl(test.profile));
    connection.on('error', () => {});
    const publisher = connection.createPublisher({ confirm: true });
    try {
      await publisher.send(
        {
          exchange: broker.topology.tasksExchange,
          routingKey: 'process',
          durable: true,
          mandatory: true,
        },
        body,
      );
    } finally {
      await publisher.close();
      await connection.close();
    }
  }

  it('delivers 500 confirmed tasks exactly once, honouring prefetch and concurrency', async () => {
    const pks = Array.from({ length: 500 }, (_, i) => i + 1);
    await broker.publishContinueMany(pks);
    await waitFor(async () => (await broker.queueCounts()).tasks === 500, {
      what: '500 ready tasks',
    });
    const seen = new Map<number, number>();
    let running = 0;
    let maxRunning = 0;
    let maxHeld = 0;
    const handler: TaskHandler = async (task) => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      maxHeld = Math.max(maxHeld, (consumer?.inFlight ?? 0) + (consumer?.buffered ?? 0));
      expect(task).toEqual({ v: PROTOCOL_VERSION, type: 'continue', pk: task.pk });
      seen.set(task.pk, (seen.get(task.pk) ?? 0) + 1);
      await new Promise((resolve) => setImmediate(resolve));
      running--;
      return 'ack';
    };
    consumer = broker.consumeTasks(handler, { prefetch: 20, concurrency: 5 });
    await waitFor(() => seen.size === 500, {
      what: `500 tasks handled (seen ${seen.size})`,
      timeout: 30,
    });
    await waitFor(() => consumer!.stats.acknowledged === 500, { what: '500 acks' });
    await waitFor(async () => (await broker.queueCounts()).tasks === 0, { what: 'empty queue' });
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(maxRunning).toBeLessThanOrEqual(5);
    expect(maxRunning).toBeGreaterThan(1);
    expect(maxHeld).toBeLessThanOrEqual(20);
    expect(consumer.stats).toMatchObject({ acknowledged: 500, invalid: 0, requeued: 0 });
    const row = await queueRow(broker.topology.processQueue, [
      'messages',
      'messages_unacknowledged',
    ]);
    expect(row).toMatchObject({ messages: 0, messages_unacknowledged: 0 });
  });

  it('acks in batches (multiple), never over a delivery still being handled or given back', async () => {
    const pks = Array.from({ length: 300 }, (_, i) => 1000 + i);
    await broker.publishContinueMany(pks);
    const seen = new Map<number, number>();
    const errorsBefore = logLines.length;
    consumer = broker.consumeTasks(
      async (task) => {
        const n = (seen.get(task.pk) ?? 0) + 1;
        seen.set(task.pk, n);
        // Every tenth is given back once; every seventh is slow, so later ones settle first.
        if (task.pk % 10 === 0 && n === 1) return 'requeue';
        if (task.pk % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 150));
        else await new Promise((resolve) => setImmediate(resolve));
        return 'ack';
      },
      { prefetch: 100, concurrency: 50 },
    );
    await waitFor(() => consumer!.stats.acknowledged === 300, {
      what: `300 acks (have ${consumer?.stats.acknowledged})`,
      timeout: 30,
    });
    await waitFor(
      async () => {
        const row = await queueRow(broker.topology.processQueue, [
          'messages',
          'messages_unacknowledged',
        ]);
        return row?.messages === 0 && row.messages_unacknowledged === 0;
      },
      { what: 'nothing ready or unacked' },
    );
    const requeued = pks.filter((pk) => pk % 10 === 0);
    for (const pk of pks) expect([pk, seen.get(pk)]).toEqual([pk, requeued.includes(pk) ? 2 : 1]);
    expect(consumer.stats).toMatchObject({ acknowledged: 300, requeued: requeued.length });
    // Fewer ack frames than acks: deliveries settled in the same turn share one `multiple` ack.
    expect(consumer.stats.ackFrames).toBeLessThan(300);
    expect(consumer.stats.ackFrames).toBeGreaterThan(0);
    expect(logLines.slice(errorsBefore)).toEqual([]);
  });

  it('dead-letters an invalid body with a log line and keeps consuming', async () => {
    const before = await broker.queueCounts();
    const handled: number[] = [];
    consumer = broker.consumeTasks(
      async (task) => {
        handled.push(task.pk);
      },
      { prefetch: 4, concurrency: 2 },
    );
    await publishRaw({ v: PROTOCOL_VERSION, type: 'bogus', pk: 'x' });
    await waitFor(async () => (await broker.queueCounts()).deadLetters === before.deadLetters + 1, {
      what: 'the dead-letter count to rise by one',
    });
    expect(consumer.stats.invalid).toBe(1);
    expect(
      logLines.some((l) => /^error: dead-lettering an invalid task message.*bogus/.test(l)),
    ).toBe(true);
    await publishRaw(Buffer.from('not json at all'));
    await waitFor(async () => (await broker.queueCounts()).deadLetters === before.deadLetters + 2, {
      what: 'the dead-letter count to rise by two',
    });
    await broker.publishContinue(9001);
    await waitFor(() => handled.includes(9001), { what: 'a valid task after the invalid ones' });
    expect(handled).toEqual([9001]);
  });

  it('dead-letters or requeues as the handler says, and a throwing handler never loops', async () => {
    const before = await broker.queueCounts();
    const calls = new Map<number, boolean[]>();
    consumer = broker.consumeTasks(
      async (task, delivery) => {
        calls.set(task.pk, [...(calls.get(task.pk) ?? []), delivery.redelivered]);
        if (task.pk === 1) return 'dead-letter';
        if (task.pk === 2) return calls.get(2)!.length === 1 ? 'requeue' : 'ack';
        if (task.pk === 3) throw new Error('handler bug');
        return undefined;
      },
      { prefetch: 4, concurrency: 1 },
    );
    await broker.publishContinueMany([1, 2, 3]);
    await waitFor(() => calls.get(2)?.length === 2 && calls.get(3)?.length === 2, {
      what: 'the requeued and the throwing task redelivered once',
    });
    await waitFor(async () => (await broker.queueCounts()).deadLetters === before.deadLetters + 2, {
      what: 'two dead letters (chosen, and thrown on a redelivery)',
    });
    expect(calls.get(1)).toEqual([false]);
    expect(calls.get(2)).toEqual([false, true]);
    expect(calls.get(3)).toEqual([false, true]);
    expect(consumer.stats).toMatchObject({ deadLettered: 2, requeued: 2, handlerErrors: 2 });
    expect(
      logLines.some((l) =>
        l.includes('handler threw for process 3: handler bug; requeueing it once'),
      ),
    ).toBe(true);
  });

  it('pause gives back prefetched deliveries and holds nothing unacked; resume continues', async () => {
    const handled: number[] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    consumer = broker.consumeTasks(
      async (task) => {
        if (handled.length === 0) await gate; // the first one blocks until released
        handled.push(task.pk);
      },
      { prefetch: 10, concurrency: 1 },
    );
    const pks = Array.from({ length: 10 }, (_, i) => 100 + i);
    await broker.publishContinueMany(pks);
    await waitFor(() => consumer!.inFlight === 1 && consumer!.buffered > 0, {
      what: 'one handler blocked and deliveries buffered',
    });
    const paused = consumer.pause();
    expect(consumer.state).toBe('paused');
    release();
    await paused;
    expect(consumer.isConsuming).toBe(false);
    expect(handled).toHaveLength(1);
    expect(consumer.inFlight + consumer.buffered).toBe(0);
    await waitFor(async () => (await broker.queueCounts()).tasks === 9, {
      what: 'the 9 prefetched tasks back in the queue',
    });
    const row = await queueRow(broker.topology.processQueue, [
      'messages_ready',
      'messages_unacknowledged',
    ]);
    expect(row).toMatchObject({ messages_ready: 9, messages_unacknowledged: 0 });
    // Nothing is delivered while paused, even for new tasks.
    await broker.publishContinue(200);
    await waitFor(async () => (await broker.queueCounts()).tasks === 10, {
      what: '10 ready tasks',
    });
    expect(handled).toHaveLength(1);

    await consumer.resume();
    expect(consumer.state).toBe('running');
    await waitFor(() => handled.length === 11, {
      what: `all 11 tasks handled (got ${handled.length})`,
    });
    expect(new Set(handled)).toEqual(new Set([...pks, 200]));
  });

  it('pause awaited from inside a handler does not deadlock', async () => {
    const handled: number[] = [];
    consumer = broker.consumeTasks(
      async (task) => {
        handled.push(task.pk);
        await consumer!.pause();
        return 'ack';
      },
      { prefetch: 5, concurrency: 1 },
    );
    await broker.publishContinueMany([301, 302, 303]);
    await waitFor(() => consumer!.isConsuming === false && handled.length >= 1, {
      what: 'the consumer paused by its own handler',
    });
    await waitFor(async () => (await broker.queueCounts()).tasks === 3 - handled.length, {
      what: 'the rest back in the queue',
    });
    await consumer.resume();
    await waitFor(() => handled.length >= 2, { what: 'a second task after resume' });
  });

  it('close waits for running handlers within its deadline', async () => {
    let finished = false;
    consumer = broker.consumeTasks(
      async () => {
        await new Promise((resolve) => setTimeout(resolve, 300));
        finished = true;
      },
      { prefetch: 1, concurrency: 1 },
    );
    await broker.publishContinue(400);
    await waitFor(() => consumer!.inFlight === 1, { what: 'a handler running' });
    const result = await consumer.close(5);
    expect(result).toEqual({ drained: true, inFlight: 0 });
    expect(finished).toBe(true);
    expect(consumer.state).toBe('closed');
  });

  it('rejects a task for an invalid pk without publishing', async () => {
    await expect(broker.publishContinue(0)).rejects.toMatchObject({ code: 'message_invalid' });
    await expect(broker.publishContinue(1.5)).rejects.toMatchObject({ code: 'message_invalid' });
  });
});
