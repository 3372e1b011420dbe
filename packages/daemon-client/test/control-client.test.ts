import { Duplex } from 'node:stream';
import { type DaemonStatus, PROTOCOL_VERSION } from '@aiida/ipc';
import { ControlRequestError, sendControlRequest } from '../src/control-client.js';

/** An in-memory connection: every request line written is handed to `answer`. */
class FakeConnection extends Duplex {
  readonly lines: string[] = [];
  private pending = '';
  constructor(
    private readonly answer: (request: Record<string, unknown>, conn: FakeConnection) => void,
  ) {
    super();
  }
  override _read(): void {}
  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    this.pending += chunk.toString('utf8');
    let newline = this.pending.indexOf('\n');
    while (newline !== -1) {
      const line = this.pending.slice(0, newline);
      this.pending = this.pending.slice(newline + 1);
      this.lines.push(line);
      this.answer(JSON.parse(line), this);
      newline = this.pending.indexOf('\n');
    }
    callback();
  }
}

const status: DaemonStatus = {
  pid: 4242,
  hostname: 'host',
  profile: 'p',
  startedAt: '2025-01-01T00:00:00.000Z',
  protocolVersion: PROTOCOL_VERSION,
  numberWorkers: 1,
  workers: [
    {
      index: 0,
      pid: 4243,
      state: 'ready',
      startedAt: '2025-01-01T00:00:01.000Z',
      restarts: 0,
      lastRestartReason: null,
      lastHeartbeatAt: null,
      cpu: null,
      memory: null,
      slotsUsed: 0,
      slotsTotal: 200,
      activePks: [],
      lastStderr: [],
      nextAttemptAt: null,
    },
  ],
  logDir: '/tmp/log',
  spare: null,
};

function connectTo(answer: ConstructorParameters<typeof FakeConnection>[0]) {
  const connections: FakeConnection[] = [];
  return {
    connections,
    connect: () => {
      const conn = new FakeConnection(answer);
      connections.push(conn);
      return conn;
    },
  };
}

async function failure(promise: Promise<unknown>): Promise<ControlRequestError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ControlRequestError) return error;
    throw error;
  }
  throw new Error('expected the request to fail');
}

describe('sendControlRequest', () => {
  it('sends one NDJSON line with v and a random id, and returns the validated result', async () => {
    const fake = connectTo((request, conn) => {
      conn.push(
        `${JSON.stringify({ v: PROTOCOL_VERSION, id: request.id, ok: true, result: status })}\n`,
      );
    });
    const reply = await sendControlRequest(
      '/sock',
      { type: 'status' },
      { timeout: 2, connect: fake.connect },
    );
    expect(reply).toEqual({ ok: true, result: status });
    await sendControlRequest('/sock', { type: 'status' }, { timeout: 2, connect: fake.connect });
    const [first, second] = fake.connections.map((c) => JSON.parse(c.lines[0] as string));
    expect(first).toMatchObject({ v: PROTOCOL_VERSION, type: 'status' });
    expect(typeof first.id).toBe('string');
    expect(first.id).not.toBe(second.id);
  });

  it('reads an answer split across chunks', async () => {
    const fake = connectTo((request, conn) => {
      const text = `${JSON.stringify({ v: PROTOCOL_VERSION, id: request.id, ok: true, result: { killedWorkers: 2 } })}\n`;
      conn.push(text.slice(0, 7));
      setTimeout(() => conn.push(text.slice(7)), 10);
    });
    const reply = await sendControlRequest(
      '/s',
      { type: 'stop' },
      { timeout: 2, connect: fake.connect },
    );
    expect(reply).toEqual({ ok: true, result: { killedWorkers: 2 } });
  });

  it('returns an error answer, with its id or with id null', async () => {
    for (const useId of [true, false]) {
      const fake = connectTo((request, conn) => {
        const error = { code: 'shutting_down', message: 'the daemon is stopping' };
        conn.push(`${JSON.stringify({ v: 1, id: useId ? request.id : null, ok: false, error })}\n`);
      });
      const reply = await sendControlRequest(
        '/s',
        { type: 'incr', n: 1 },
        { timeout: 2, connect: fake.connect },
      );
      expect(reply).toEqual({
        ok: false,
        v: 1,
        error: { code: 'shutting_down', message: 'the daemon is stopping' },
      });
    }
  });

  it('refuses an answer to another id', async () => {
    const fake = connectTo((_request, conn) => {
      conn.push(`${JSON.stringify({ v: 1, id: 'someone-else', ok: true, result: status })}\n`);
    });
    const error = await failure(
      sendControlRequest('/s', { type: 'status' }, { timeout: 2, connect: fake.connect }),
    );
    expect(error.kind).toBe('invalid_response');
    expect(error.message).toContain('someone-else');
  });

  it('refuses a result that does not match the request type', async () => {
    const fake = connectTo((request, conn) => {
      conn.push(`${JSON.stringify({ v: 1, id: request.id, ok: true, result: { pid: 'x' } })}\n`);
    });
    const error = await failure(
      sendControlRequest('/s', { type: 'status' }, { timeout: 2, connect: fake.connect }),
    );
    expect(error.kind).toBe('invalid_response');
    expect(error.message).toContain("'status'");
  });

  it('refuses a line that is not JSON', async () => {
    const fake = connectTo((_request, conn) => {
      conn.push('this is not json\n');
    });
    const error = await failure(
      sendControlRequest('/s', { type: 'ping' }, { timeout: 2, connect: fake.connect }),
    );
    expect(error.kind).toBe('invalid_response');
  });

  it('reports an answer of another protocol version as a version mismatch', async () => {
    const fake = connectTo((request, conn) => {
      conn.push(
        `${JSON.stringify({ v: 99, id: request.id, ok: true, result: { pid: 1, protocolVersion: 99 } })}\n`,
      );
    });
    const error = await failure(
      sendControlRequest('/s', { type: 'ping' }, { timeout: 2, connect: fake.connect }),
    );
    expect(error.kind).toBe('version_mismatch');
    expect(error.remoteVersion).toBe(99);
  });

  it('times out after the timeout, not much later, when nobody answers', async () => {
    const fake = connectTo(() => {});
    const started = performance.now();
    const error = await failure(
      sendControlRequest('/s', { type: 'status' }, { timeout: 0.3, connect: fake.connect }),
    );
    const elapsed = (performance.now() - started) / 1000;
    expect(error.kind).toBe('timeout');
    expect(elapsed).toBeGreaterThanOrEqual(0.29);
    expect(elapsed).toBeLessThan(1.5);
    expect(fake.connections[0]?.destroyed).toBe(true);
  });

  it('reports a refused connection with its errno', async () => {
    const connect = () => {
      const conn = new FakeConnection(() => {});
      setImmediate(() =>
        conn.destroy(Object.assign(new Error('connect ECONNREFUSED /s'), { code: 'ECONNREFUSED' })),
      );
      return conn;
    };
    const error = await failure(
      sendControlRequest('/s', { type: 'status' }, { timeout: 2, connect }),
    );
    expect(error.kind).toBe('connect');
    expect(error.errno).toBe('ECONNREFUSED');
  });

  it('reports a connection closed without an answer', async () => {
    const fake = connectTo((_request, conn) => {
      conn.push(null);
    });
    const error = await failure(
      sendControlRequest('/s', { type: 'status' }, { timeout: 2, connect: fake.connect }),
    );
    expect(error.kind).toBe('closed');
  });

  it('with noWait resolves once the request is written', async () => {
    const fake = connectTo(() => {});
    const started = performance.now();
    await expect(
      sendControlRequest(
        '/s',
        { type: 'stop' },
        { timeout: 5, noWait: true, connect: fake.connect },
      ),
    ).resolves.toBeUndefined();
    expect(performance.now() - started).toBeLessThan(1000);
    expect(JSON.parse(fake.connections[0]?.lines[0] as string)).toMatchObject({ type: 'stop' });
    fake.connections[0]?.destroy();
  });

  it('reports a busy refusal as kind busy, also with noWait', async () => {
    const busy = {
      v: PROTOCOL_VERSION,
      id: null,
      ok: false,
      error: { code: 'busy', message: 'all 64 connections are in use' },
    };
    const refuse = () =>
      connectTo((_request, conn) => {
        conn.push(`${JSON.stringify(busy)}\n`);
      });
    const waited = await failure(
      sendControlRequest('/s', { type: 'status' }, { timeout: 2, connect: refuse().connect }),
    );
    expect(waited.kind).toBe('busy');
    expect(waited.message).toContain('all 64 connections are in use');
    const noWait = await failure(
      sendControlRequest(
        '/s',
        { type: 'stop' },
        { timeout: 2, noWait: true, connect: refuse().connect },
      ),
    );
    expect(noWait.kind).toBe('busy');
  });

  it('never sends a request the daemon would refuse', async () => {
    await expect(
      sendControlRequest(
        '/s',
        { type: 'incr', n: 0 },
        { timeout: 1, connect: () => new FakeConnection(() => {}) },
      ),
    ).rejects.toThrow(TypeError);
  });
});
