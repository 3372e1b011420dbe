import { isBrokerError, RabbitBroker, type RpcServer } from '@aiida/broker';
import { PROTOCOL_VERSION, type RpcRequest, type StateChangedBroadcast } from '@aiida/ipc';
import { queueRow } from './rabbitmqctl.js';
import { createTempProfile, memoryLogger, type TempProfile, waitFor } from './support.js';

const status = (pk: number): RpcRequest => ({ v: PROTOCOL_VERSION, intent: 'status', pk });

describe('RPC and broadcasts', () => {
  let test: TempProfile;
  let worker: RabbitBroker;
  let client: RabbitBroker;
  let server: RpcServer;
  const logger = memoryLogger();
  const received: RpcRequest[] = [];
  let stall = false;

  beforeAll(async () => {
    test = createTempProfile('broker-rpc');
    worker = new RabbitBroker({
      profile: test.profile,
      logger,
      connectionName: 'broker-rpc-worker',
    });
    client = new RabbitBroker({
      profile: test.profile,
      logger,
      connectionName: 'broker-rpc-client',
    });
    await Promise.all([worker.connect(), client.connect()]);
    server = await worker.serveRpc(async (request) => {
      received.push(request);
      if (stall) await new Promise((resolve) => setTimeout(resolve, 3000));
      if (request.intent === 'kill') {
        throw Object.assign(new Error(`process ${request.pk} is not killable`), {
          code: 'process_terminal',
        });
      }
      return { pk: request.pk, state: 'running', paused: false, owner: 'worker-1' };
    });
  });

  afterAll(async () => {
    await client?.close({ timeout: 5 });
    await worker?.deleteTopology().catch(() => {});
    await worker?.close({ timeout: 5 });
    test?.remove();
  });

  it('round-trips a request to the holder of a pk', async () => {
    await server.addPk(11);
    expect([...server.pks]).toEqual([11]);
    const reply = await client.callRpc(11, status(11), { timeout: 5 });
    expect(reply).toEqual({
      v: PROTOCOL_VERSION,
      ok: true,
      result: { pk: 11, state: 'running', paused: false, owner: 'worker-1' },
    });
    expect(received.at(-1)).toEqual(status(11));
  });

  it('answers a throwing handler with its error code', async () => {
    const reply = await client.callRpc(11, {
      v: PROTOCOL_VERSION,
      intent: 'kill',
      pk: 11,
      force: false,
    });
    expect(reply).toEqual({
      v: PROTOCOL_VERSION,
      ok: false,
      error: { code: 'process_terminal', message: 'process 11 is not killable' },
    });
  });

  it('rejects no_holder at once for a pk nobody holds, also after removePk', async () => {
    const started = Date.now();
    const error = await client.callRpc(12, status(12), { timeout: 5 }).catch((e: unknown) => e);
    expect(isBrokerError(error) && error.code).toBe('no_holder');
    expect((error as Error).message).toContain('process 12');
    expect(Date.now() - started).toBeLessThan(2000);

    await server.addPk(13);
    await expect(client.callRpc(13, status(13))).resolves.toMatchObject({ ok: true });
    await server.removePk(13);
    await expect(client.callRpc(13, status(13))).rejects.toMatchObject({ code: 'no_holder' });
  });

  it('rejects timeout naming the pk and the seconds when the holder does not answer', async () => {
    await server.addPk(14);
    stall = true;
    try {
      const started = Date.now();
      const error = await client.callRpc(14, status(14), { timeout: 0.5 }).catch((e: unknown) => e);
      const waited = Date.now() - started;
      expect(isBrokerError(error) && error.code).toBe('timeout');
      expect((error as Error).message).toMatch(/process 14 within 0\.5 s/);
      expect(waited).toBeGreaterThanOrEqual(450);
      expect(waited).toBeLessThan(3000);
    } finally {
      stall = false;
    }
  });

  it('answers an invalid request with message_invalid and stays up', async () => {
    const reply = await client.callRpc(11, {
      v: PROTOCOL_VERSION,
      intent: 'bogus',
      pk: 11,
    } as never);
    expect(reply).toMatchObject({ ok: false, error: { code: 'message_invalid' } });
    expect(
      logger.lines.some((l) => l.startsWith('error: dropping an invalid RPC request on rpc.11')),
    ).toBe(true);
    await expect(client.callRpc(11, status(11))).resolves.toMatchObject({ ok: true });
  });

  it('serves many calls concurrently, each matched to its own reply', async () => {
    for (const pk of [21, 22, 23, 24, 25]) await server.addPk(pk);
    const replies = await Promise.all(
      [21, 22, 23, 24, 25, 21, 22].map((pk) => client.callRpc(pk, status(pk))),
    );
    expect(replies.map((r) => (r.ok ? (r.result as { pk: number }).pk : -1))).toEqual([
      21, 22, 23, 24, 25, 21, 22,
    ]);
  });

  it('uses an exclusive auto-delete queue that goes away with the server', async () => {
    const extra = await worker.serveRpc(async () => 'extra');
    const row = await queueRow(extra.queue, ['exclusive', 'auto_delete', 'durable']);
    expect(row).toMatchObject({ exclusive: true, auto_delete: true, durable: false });
    await extra.addPk(31);
    await expect(client.callRpc(31, status(31))).resolves.toMatchObject({ result: 'extra' });
    await extra.close(5);
    await waitFor(async () => (await queueRow(extra.queue, [])) === undefined, {
      what: 'queue deleted',
    });
    await expect(client.callRpc(31, status(31))).rejects.toMatchObject({ code: 'no_holder' });
  });

  it('broadcasts only while someone listens; a ready subscriber gets every later broadcast', async () => {
    const change = (pk: number): StateChangedBroadcast => ({
      v: PROTOCOL_VERSION,
      type: 'state_changed',
      pk,
      from: 'running',
      to: 'finished',
    });
    // Nobody listens: once the worker's first check answered, broadcasts are left out.
    const skippedBefore = worker.broadcastsSkipped;
    await waitFor(
      async () => {
        await worker.broadcastStateChanged(change(60));
        return worker.broadcastsSkipped > skippedBefore;
      },
      { what: 'a broadcast left out while nobody listens' },
    );
    // Invalid messages are refused whether or not anyone listens.
    await expect(
      worker.broadcastStateChanged({ ...change(60), to: 'exploded' } as never),
    ).rejects.toMatchObject({ code: 'message_invalid' });
    const heard: number[] = [];
    const started = Date.now();
    const sub = await client.subscribeStateChanged((m) => {
      heard.push(m.pk);
    });
    // Ready means counted: it waited for the worker's "nobody" answer to expire.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    try {
      const skipped = worker.broadcastsSkipped;
      await worker.broadcastStateChanged(change(61));
      await worker.broadcastStateChanged(change(62));
      expect(worker.broadcastsSkipped).toBe(skipped);
      await waitFor(() => heard.length >= 2, { what: 'both broadcasts made after ready' });
      expect(heard).toEqual([61, 62]);
    } finally {
      await sub.close();
    }
    // Gone again: broadcasts are left out again after the next check.
    const skippedAfter = worker.broadcastsSkipped;
    await waitFor(
      async () => {
        await worker.broadcastStateChanged(change(63));
        return worker.broadcastsSkipped > skippedAfter;
      },
      { what: 'broadcasts left out again after the subscriber left' },
    );
    expect(heard).toEqual([61, 62]);
  });

  it('delivers state-changed broadcasts to a subscriber of one pk and of all', async () => {
    const forOne: StateChangedBroadcast[] = [];
    const forAll: StateChangedBroadcast[] = [];
    const one = await client.subscribeStateChanged(async (m) => {
      forOne.push(m);
    }, 41);
    const all = await client.subscribeStateChanged(async (m) => {
      forAll.push(m);
    });
    try {
      const change = (pk: number): StateChangedBroadcast => ({
        v: PROTOCOL_VERSION,
        type: 'state_changed',
        pk,
        from: 'created',
        to: 'running',
      });
      await worker.broadcastStateChanged(change(41));
      await worker.broadcastStateChanged(change(42));
      await waitFor(() => forAll.length === 2, {
        what: 'two broadcasts for the catch-all subscriber',
      });
      await waitFor(() => forOne.length === 1, { what: 'one broadcast for pk 41' });
      expect(forOne).toEqual([change(41)]);
      expect(forAll.map((m) => m.pk)).toEqual([41, 42]);
      await expect(
        worker.broadcastStateChanged({ ...change(43), to: 'exploded' } as never),
      ).rejects.toMatchObject({
        code: 'message_invalid',
      });
    } finally {
      await one.close();
      await all.close();
    }
  });
});
