import { createConnection, type Socket } from 'node:net';
import { bootId, processStartTime } from '@aiida/daemon-supervisor';
import { ErrorCodes, NdjsonDecoder } from '@aiida/ipc';
import { DaemonException, getDaemonClient } from '../src/index.js';
import {
  cleanBrokerTopology,
  createTestProfile,
  expectNothingLeft,
  type TestProfile,
  withLogs,
  writeDaemonState,
} from './helpers.js';

interface RawOutcome {
  lines: unknown[];
  /** Seconds until the daemon closed the connection, or undefined if it did not within `wait`. */
  closedAfter: number | undefined;
}

/**
 * Writes raw bytes to the control socket and collects what comes back: the first answer line, or
 * everything until the daemon closes the connection or `wait` seconds pass.
 */
function raw(
  socketPath: string,
  send: (socket: Socket) => void,
  { wait = 10, firstLine = true }: { wait?: number; firstLine?: boolean } = {},
): Promise<RawOutcome> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath });
    const decoder = new NdjsonDecoder({ maxLineBytes: 1 << 20 });
    const lines: unknown[] = [];
    const started = performance.now();
    let done = false;
    const finish = (closedAfter: number | undefined) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ lines, closedAfter });
    };
    const timer = setTimeout(() => finish(undefined), wait * 1000);
    socket.on('data', (chunk) => {
      for (const event of decoder.push(chunk))
        if (event.kind === 'message') lines.push(event.value);
      if (firstLine && lines.length > 0) finish(undefined);
    });
    socket.on('close', () => finish((performance.now() - started) / 1000));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The daemon may reset a connection it refuses while we still write.
      if (error.code === 'EPIPE' || error.code === 'ECONNRESET') return;
      if (!done) reject(error);
    });
    socket.on('connect', () => send(socket));
  });
}

const errorCodeOf = (line: unknown) => (line as { error?: { code?: string } }).error?.code;

describe('the control socket under bad input', () => {
  let tp: TestProfile;

  beforeAll(() => {
    delete process.env.AIIDA_PROFILE;
    tp = createTestProfile({ name: 'socket' });
  });
  afterEach(async () => {
    await expectNothingLeft(tp.profile);
  });
  afterAll(async () => {
    await cleanBrokerTopology(tp.profile);
    tp.remove();
  });

  it('answers garbage, oversized, half-written and silent connections, and keeps serving', async () => {
    await withLogs(tp, async () => {
      const client = getDaemonClient();
      await client.startDaemon();
      const { socketPath, pid } = await client.getDaemonInfo();

      // A silent connection stays open meanwhile; everything else must still be served.
      const silent = raw(socketPath, () => {}, { wait: 30, firstLine: false });

      const garbage = await raw(socketPath, (s) => s.write('this is not json\n'));
      expect(errorCodeOf(garbage.lines[0])).toBe(ErrorCodes.invalidRequest);
      expect((await client.getStatus()).pid).toBe(pid);

      const unknown = await raw(socketPath, (s) =>
        s.write(`${JSON.stringify({ v: 1, id: 'u1', type: 'explode' })}\n`),
      );
      expect(unknown.lines[0]).toMatchObject({ id: 'u1', ok: false });
      expect(errorCodeOf(unknown.lines[0])).toBe(ErrorCodes.unknownRequest);

      const otherVersion = await raw(socketPath, (s) =>
        s.write(`${JSON.stringify({ v: 2, id: 'v2', type: 'status' })}\n`),
      );
      expect(errorCodeOf(otherVersion.lines[0])).toBe(ErrorCodes.protocolMismatch);
      const text = (otherVersion.lines[0] as { error: { message: string } }).error.message;
      expect(text).toContain('version 1');
      expect(text).toContain('version 2');

      const oversized = await raw(socketPath, (s) => s.write(`${'x'.repeat(2 * 1024 * 1024)}\n`));
      expect(errorCodeOf(oversized.lines[0])).toBe(ErrorCodes.requestTooLarge);
      expect((await client.getStatus()).pid).toBe(pid);

      const halfWritten = await raw(socketPath, (s) => s.end('{"v":1,"id":"h1","type":"sta'));
      expect(errorCodeOf(halfWritten.lines[0])).toBe(ErrorCodes.incompleteRequest);

      const afterSilence = await silent;
      // Closed after a few seconds, at most with an error saying why.
      expect(afterSilence.lines.every((line) => (line as { ok?: boolean }).ok === false)).toBe(
        true,
      );
      expect(afterSilence.closedAfter).toBeDefined();
      expect(afterSilence.closedAfter as number).toBeLessThan(30);

      const status = await client.getStatus();
      expect(status.pid).toBe(pid);
      expect(status.workers.every((w) => w.state === 'ready')).toBe(true);
      await client.stopDaemon();
    });
  }, 90_000);

  it('refuses a daemon of another protocol version, naming both versions, without connecting', async () => {
    const client = getDaemonClient();
    // A live state file (this very process: its pid, start time and boot id) of version 99.
    writeDaemonState(client, {
      pid: process.pid,
      bootId: bootId(),
      startTime: processStartTime(process.pid),
      socketPath: `${client.daemonDir}/no-such.sock`,
      protocolVersion: 99,
    });
    try {
      expect(client.isDaemonRunning).toBe(true);
      const error = await client.getStatus().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DaemonException);
      expect((error as DaemonException).code).toBe(ErrorCodes.protocolMismatch);
      expect((error as Error).message).toContain('this client speaks version 1');
      expect((error as Error).message).toContain('the daemon speaks version 99');
    } finally {
      // Not a real daemon: remove the file by hand (stopDaemon would ask this process to stop).
      const { unlinkSync } = await import('node:fs');
      unlinkSync(client.stateFilePath);
    }
  });
});
