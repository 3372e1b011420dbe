// Integration: the control socket's connection limit, its reserved slots and its deadlines, seen
// by a user's DaemonClient while other programs hold or flood the socket (a real supervisor; its
// workers are the fake worker program, since no broker is involved here).
import { createConnection, type Socket } from 'node:net';
import { ErrorCodes, NdjsonDecoder } from '@aiida/ipc';
import { DaemonClient, getDaemonClient } from '../src/index.js';
import {
  createTestProfile,
  expectNothingLeft,
  FAKE_WORKER,
  type TestProfile,
  withLogs,
} from './helpers.js';

/** A raw connection that records the answers and when the daemon closed it. */
interface Held {
  socket: Socket;
  lines: { ok?: boolean; error?: { code?: string; message?: string } }[];
  connected: Promise<void>;
  closed: Promise<number>;
}

function hold(socketPath: string): Held {
  const socket = createConnection({ path: socketPath });
  const decoder = new NdjsonDecoder();
  const lines: Held['lines'] = [];
  const started = performance.now();
  socket.on('data', (chunk) => {
    for (const event of decoder.push(chunk)) {
      if (event.kind === 'message') lines.push(event.value as Held['lines'][number]);
    }
  });
  socket.on('error', () => {});
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const closed = new Promise<number>((resolve) =>
    socket.once('close', () => resolve((performance.now() - started) / 1000)),
  );
  return { socket, lines, connected, closed };
}

describe('the control socket under many or slow connections', () => {
  let tp: TestProfile;
  let client: DaemonClient;
  const held: Held[] = [];

  beforeAll(async () => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'limits' });
    client = new DaemonClient(tp.profile, { env: { AIIDA_DAEMON_WORKER_PROGRAM: FAKE_WORKER } });
    await client.startDaemon({ numberWorkers: 1 });
  }, 60_000);
  afterEach(() => {
    for (const h of held.splice(0)) h.socket.destroy();
  });
  afterAll(async () => {
    await expectNothingLeft(tp.profile);
    tp.remove();
  });

  it('status answers within daemon.timeout while 70 slow clients drip a byte a second; the slow ones are cut 5 s after their first byte', async () => {
    await withLogs(tp, async () => {
      const { socketPath, pid } = await client.getDaemonInfo();
      const drips: NodeJS.Timeout[] = [];
      for (let i = 0; i < 70; i++) {
        const h = hold(socketPath);
        held.push(h);
        h.socket.write('{');
        drips.push(setInterval(() => h.socket.writable && h.socket.write(' '), 1000));
      }
      try {
        await Promise.all(held.map((h) => h.connected));
        // Every general slot is held now; well-behaved requests still get through.
        for (let i = 0; i < 3; i++) {
          const started = performance.now();
          const status = await getDaemonClient().getStatus();
          expect(status.pid).toBe(pid);
          expect((performance.now() - started) / 1000).toBeLessThan(client.timeout);
        }
        // Each slow client is closed although it never stopped sending: counted from its first
        // byte, not its last one (generous bound: the machine is shared).
        const closedAfter = await Promise.all(held.map((h) => h.closed));
        expect(Math.max(...closedAfter)).toBeLessThan(20);
        const served = held.filter((h) =>
          h.lines.some((line) => line.error?.code === ErrorCodes.timeout),
        );
        const refused = held.filter((h) =>
          h.lines.some((line) => line.error?.code === ErrorCodes.busy),
        );
        // Each was either served until its deadline (a `timeout` error) or refused as busy:
        // never cut without a word.
        expect(served.length + refused.length).toBe(70);
        expect(served.length).toBeGreaterThanOrEqual(60);
        for (const h of served) {
          expect(h.lines.at(-1)?.error?.message).toMatch(
            /did not arrive whole within \d+ s of its first byte/,
          );
        }
      } finally {
        for (const drip of drips) clearInterval(drip);
      }
    });
  }, 90_000);

  it('connections beyond the limit get a typed busy error before they are closed', async () => {
    await withLogs(tp, async () => {
      const { socketPath, pid } = await client.getDaemonInfo();
      // 80 silent connections: 64 are served (and closed by their deadlines), the rest refused.
      for (let i = 0; i < 80; i++) held.push(hold(socketPath));
      await Promise.all(held.map((h) => h.connected));
      // Meanwhile, 200 concurrent well-behaved clients are all answered (busy is retried).
      const answers = await Promise.all(
        Array.from({ length: 200 }, () => getDaemonClient().getStatus()),
      );
      expect(answers.every((status) => status.pid === pid)).toBe(true);
      await Promise.all(held.map((h) => h.closed));
      const refused = held.filter((h) => h.lines[0]?.error?.code === ErrorCodes.busy);
      expect(refused.length).toBeGreaterThanOrEqual(16);
      for (const h of refused) {
        expect(h.lines).toHaveLength(1);
        expect(h.lines[0]?.error?.message).toContain('all 64 connections are in use');
      }
      // The others were served until their idle deadline: nobody was cut without a word.
      for (const h of held.filter((x) => !refused.includes(x))) {
        expect(h.lines).toEqual([
          expect.objectContaining({ error: expect.objectContaining({ code: ErrorCodes.timeout }) }),
        ]);
      }
    });
  }, 90_000);
});
