import { RabbitBroker } from '@aiida/broker';
import { PROTOCOL_VERSION } from '@aiida/ipc';
import { closeConnectionNamed } from './rabbitmqctl.js';
import { createTempProfile, memoryLogger, type TempProfile, waitFor } from './support.js';

describe('after the first connect, a lost connection comes back with its consumers', () => {
  let test: TempProfile;
  let worker: RabbitBroker;
  let client: RabbitBroker;
  const errors: Error[] = [];
  const connectionName = `broker-reconnect-worker-${process.pid}`;

  beforeAll(async () => {
    test = createTempProfile('broker-reconnect');
    worker = new RabbitBroker({
      profile: test.profile,
      connectionName,
      logger: memoryLogger(),
      onError: (e) => errors.push(e),
      reconnectDelay: { min: 0.1, max: 1 },
    });
    client = new RabbitBroker({ profile: test.profile, logger: memoryLogger() });
    await Promise.all([worker.connect(), client.connect()]);
  });

  afterAll(async () => {
    await client?.close({ timeout: 5 });
    await worker?.deleteTopology().catch(() => {});
    await worker?.close({ timeout: 5 });
    test?.remove();
  });

  it('reports the loss and the reconnect; tasks, RPC bindings and publishing resume', async () => {
    const handled: number[] = [];
    const consumer = worker.consumeTasks(
      async (task) => {
        handled.push(task.pk);
      },
      { prefetch: 10, concurrency: 2 },
    );
    const server = await worker.serveRpc(async (request) => `answer for ${request.pk}`);
    await server.addPk(5);
    await client.publishContinue(1);
    await waitFor(() => handled.includes(1), { what: 'the first task' });

    const disconnects: Error[] = [];
    let reconnects = 0;
    worker.onDisconnect((e) => disconnects.push(e));
    worker.onReconnect(() => reconnects++);

    expect(await closeConnectionNamed(connectionName, 'broker test kick')).toBe(1);
    await waitFor(() => disconnects.length === 1, { what: 'the disconnect to be reported' });
    expect(disconnects[0]!.message).toContain('broker test kick');
    await waitFor(() => reconnects === 1 && worker.state === 'connected' && worker.isConnected, {
      what: 'the reconnect',
    });
    expect(errors.some((e) => e.message.includes('broker test kick'))).toBe(true);

    await waitFor(() => consumer.isConsuming, { what: 'the task consumer back' });
    await client.publishContinue(2);
    await waitFor(() => handled.includes(2), { what: 'a task after the reconnect' });

    // The exclusive RPC queue died with the connection; it is redeclared with pk 5's binding.
    await waitFor(
      async () => {
        const reply = await client.callRpc(
          5,
          { v: PROTOCOL_VERSION, intent: 'status', pk: 5 },
          { timeout: 2 },
        );
        return reply.ok && reply.result === 'answer for 5';
      },
      { what: 'RPC for pk 5 answered again' },
    );

    await worker.publishContinue(3);
    await waitFor(() => handled.includes(3), {
      what: 'a task published by the reconnected broker',
    });
    await consumer.close(5);
    await server.close(5);
  });
});
