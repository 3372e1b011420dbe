import { createServer } from 'node:net';
import { DEFAULT_BROKER_HEARTBEAT, isBrokerError, RabbitBroker } from '@aiida/broker';
import { createProfile, getBrokerUrl } from '@aiida/config';
import { Connection } from 'rabbitmq-client';
import { connectionHeartbeats, listQueues } from './rabbitmqctl.js';
import { createTempProfile, type TempProfile, waitFor } from './support.js';

const silent = { info: () => {}, warn: () => {}, error: () => {} };

/** A TCP port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

/** Handles that could leak from a connection attempt: sockets and timers. */
function openHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const kind of process.getActiveResourcesInfo()) {
    if (kind === 'TCPSocketWrap' || kind === 'Timeout' || kind === 'TCPWRAP') {
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
  }
  return counts;
}

describe('RabbitBroker.connect', () => {
  let test: TempProfile;
  let broker: RabbitBroker;

  beforeAll(async () => {
    test = createTempProfile('broker-connect');
    broker = new RabbitBroker({
      profile: test.profile,
      logger: silent,
      connectionName: 'broker-connect-test',
    });
    await broker.connect({ timeout: 10 });
  });

  afterAll(async () => {
    await broker?.deleteTopology().catch(() => {});
    await broker?.close({ timeout: 5 });
    test?.remove();
  });

  it('declares the fixed topology with its arguments', async () => {
    expect(broker.state).toBe('connected');
    expect(broker.isConnected).toBe(true);
    const { prefix, processQueue, dlq, dlx } = broker.topology;
    expect(prefix).toBe(`aiida-${test.profile.uuid}`);
    const rows = await listQueues(prefix, ['durable', 'auto_delete', 'arguments']);
    const byName = Object.fromEntries(rows.map((row) => [row.name, row]));
    expect(byName[processQueue]).toMatchObject({
      durable: true,
      auto_delete: false,
      arguments: { 'x-queue-type': 'classic', 'x-dead-letter-exchange': dlx },
    });
    expect(byName[processQueue]?.arguments).not.toHaveProperty('x-message-ttl');
    expect(byName[dlq]).toMatchObject({
      durable: true,
      auto_delete: false,
      arguments: { 'x-queue-type': 'classic' },
    });
    await expect(broker.queueCounts()).resolves.toEqual({ tasks: 0, deadLetters: 0 });
  });

  it("negotiates a heartbeat of a few seconds, not the profile URL's 600", async () => {
    expect(getBrokerUrl(test.profile)).toContain('heartbeat=600');
    expect(DEFAULT_BROKER_HEARTBEAT).toBe(5);
    expect(await connectionHeartbeats('broker-connect-test')).toEqual([DEFAULT_BROKER_HEARTBEAT]);
    // Logs name the heartbeat in use.
    expect(broker.redactedUrl).toBe('amqp://guest:***@127.0.0.1:5672/?heartbeat=5');
    const other = new RabbitBroker({
      profile: test.profile,
      logger: silent,
      connectionName: 'broker-connect-heartbeat-test',
      heartbeat: 3,
    });
    try {
      await other.connect({ timeout: 10 });
      expect(await connectionHeartbeats('broker-connect-heartbeat-test')).toEqual([3]);
    } finally {
      await other.close({ timeout: 5 });
    }
  });

  it('connects a second time to an existing topology (identical declarations)', async () => {
    const other = new RabbitBroker({ profile: test.profile, logger: silent });
    try {
      await other.connect({ timeout: 10 });
      expect(other.state).toBe('connected');
    } finally {
      await other.close({ timeout: 5 });
    }
  });

  it('rejects quickly on a wrong port, with the error text and the redacted url, leaving no handles', async () => {
    const port = await freePort();
    const profile = createProfile(
      { name: `broker-wrong-port-${process.pid}`, broker: { port, password: 's3cret-pw' } },
      { aiidaPath: test.aiidaPath },
    );
    const before = openHandles();
    const bad = new RabbitBroker({ profile, logger: silent });
    const started = Date.now();
    const error = await bad.connect({ timeout: 10 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(Date.now() - started).toBeLessThan(3000);
    expect(isBrokerError(error)).toBe(true);
    if (!isBrokerError(error)) return;
    expect(error.code).toBe('broker_unreachable');
    expect(error.message).toContain('ECONNREFUSED');
    expect(error.message).toContain(`amqp://guest:***@127.0.0.1:${port}/`);
    expect(error.message).not.toContain('s3cret-pw');
    expect(error.cause).toBeDefined();
    expect(bad.state).toBe('idle');
    await waitFor(() => JSON.stringify(openHandles()) === JSON.stringify(before), {
      timeout: 5,
      what: `open handles back to ${JSON.stringify(before)} (now ${JSON.stringify(openHandles())})`,
    });
    await bad.close();
  });

  it("rejects bad credentials with the broker's refusal and no password", async () => {
    const profile = createProfile(
      { name: `broker-bad-login-${process.pid}`, broker: { password: 'not-the-password' } },
      { aiidaPath: test.aiidaPath },
    );
    const bad = new RabbitBroker({ profile, logger: silent });
    const error = await bad.connect({ timeout: 10 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isBrokerError(error) && error.code).toBe('broker_unreachable');
    expect((error as Error).message).toMatch(/ACCESS_REFUSED/);
    expect((error as Error).message).not.toContain('not-the-password');
    await bad.close();
  });

  it('refuses to publish before connect and after close', async () => {
    const fresh = new RabbitBroker({ profile: test.profile, logger: silent });
    await expect(fresh.publishContinue(1)).rejects.toMatchObject({
      code: 'broker_error',
      message: expect.stringContaining('call connect() first'),
    });
    await fresh.close();
    await expect(fresh.connect()).rejects.toMatchObject({ code: 'broker_error' });
  });

  it('with failFast false, retries until its timeout and then names the last error', async () => {
    const port = await freePort();
    const profile = createProfile(
      { name: `broker-retry-${process.pid}`, broker: { port } },
      { aiidaPath: test.aiidaPath },
    );
    const bad = new RabbitBroker({
      profile,
      logger: silent,
      reconnectDelay: { min: 0.1, max: 0.2 },
    });
    const started = Date.now();
    const error = await bad.connect({ timeout: 1, failFast: false }).catch((e: unknown) => e);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(950);
    expect(waited).toBeLessThan(4000);
    expect(error).toMatchObject({
      code: 'broker_unreachable',
      message: expect.stringMatching(/no connection within 1 s; last error: .*ECONNREFUSED/),
    });
    await bad.close();
  });

  it('declares quorum queues for a quorum profile, and a mismatching declarer is refused with a hint', async () => {
    const profile = createProfile(
      { name: `broker-quorum-${process.pid}`, broker: { queueType: 'quorum' } },
      { aiidaPath: test.aiidaPath },
    );
    const quorum = new RabbitBroker({ profile, logger: silent });
    await quorum.connect();
    try {
      const rows = await listQueues(quorum.topology.prefix, ['type', 'arguments']);
      expect(rows.map((r) => [r.name, r.type]).sort()).toEqual(
        [
          [quorum.topology.dlq, 'quorum'],
          [quorum.topology.processQueue, 'quorum'],
        ].sort(),
      );
      const classicTwin = new RabbitBroker({
        profile: {
          ...profile,
          broker: { ...profile.broker, config: { ...profile.broker.config, queueType: 'classic' } },
        },
        logger: silent,
      });
      const error = await classicTwin.connect().catch((e: unknown) => e);
      expect(error).toMatchObject({
        code: 'broker_error',
        message: expect.stringMatching(/PRECONDITION_FAILED.*exists with other arguments/s),
      });
      expect(classicTwin.state).toBe('idle');
      await classicTwin.close();
    } finally {
      await quorum.deleteTopology();
      await quorum.close();
    }
    expect(await listQueues(quorum.topology.prefix, [])).toEqual([]);
  });

  it('rejects publish_failed when a task is unroutable (mandatory), with per-pk details for a batch', async () => {
    const profile = createProfile(
      { name: `broker-unroutable-${process.pid}` },
      { aiidaPath: test.aiidaPath },
    );
    const lonely = new RabbitBroker({ profile, logger: silent });
    await lonely.connect();
    const raw = new Connection(getBrokerUrl(profile));
    raw.on('error', () => {});
    try {
      await lonely.publishContinue(1); // the publisher's channel is now set up
      await raw.queueDelete({ queue: lonely.topology.processQueue });
      const error = await lonely.publishContinue(2).catch((e: unknown) => e);
      expect(isBrokerError(error) && error.code).toBe('publish_failed');
      expect((error as Error).message).toMatch(/task of process 2 was unroutable \(NO_ROUTE\)/);
      const many = await lonely.publishContinueMany([3, 4]).catch((e: unknown) => e);
      expect(many).toMatchObject({
        code: 'publish_failed',
        details: { confirmed: [], failed: [3, 4] },
      });
    } finally {
      await raw.close();
      await lonely.deleteTopology().catch(() => {});
      await lonely.close();
    }
  });

  it('a publisher whose exchange was deleted redeclares the topology on its retry', async () => {
    const profile = createProfile(
      { name: `broker-redeclare-${process.pid}` },
      { aiidaPath: test.aiidaPath },
    );
    const broker2 = new RabbitBroker({ profile, logger: silent });
    await broker2.connect();
    try {
      await broker2.publishContinue(1);
      await broker2.deleteTopology();
      await broker2.publishContinue(2); // channel error 404, then a new channel that declares all
      await expect(broker2.queueCounts()).resolves.toEqual({ tasks: 1, deadLetters: 0 });
    } finally {
      await broker2.deleteTopology().catch(() => {});
      await broker2.close();
    }
  });
});
