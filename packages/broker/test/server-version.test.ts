import { createServer, type Server, type Socket } from 'node:net';
import { probeServer, readServerVersion } from '../src/server-version.js';

/** An AMQP field table holding the given long strings and one nested table of booleans. */
function table(strings: Record<string, string>, nested?: Record<string, boolean>): Buffer {
  const fields: Buffer[] = [];
  const name = (n: string) => Buffer.concat([Buffer.from([n.length]), Buffer.from(n)]);
  for (const [key, text] of Object.entries(strings)) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(Buffer.byteLength(text));
    fields.push(name(key), Buffer.from('S'), length, Buffer.from(text));
  }
  if (nested) {
    const inner = Buffer.concat(
      Object.entries(nested).map(([key, flag]) =>
        Buffer.concat([name(key), Buffer.from('t'), Buffer.from([flag ? 1 : 0])]),
      ),
    );
    const length = Buffer.alloc(4);
    length.writeUInt32BE(inner.length);
    fields.push(name('capabilities'), Buffer.from('F'), length, inner);
  }
  const body = Buffer.concat(fields);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(body.length);
  return Buffer.concat([length, body]);
}

/** A `connection.start` method frame announcing the given server properties. */
function connectionStart(properties: Record<string, string>): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt16BE(10, 0); // class connection
  head.writeUInt16BE(10, 2); // method start
  head.writeUInt8(0, 4);
  head.writeUInt8(9, 5);
  const longString = (text: string) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(text.length);
    return Buffer.concat([length, Buffer.from(text)]);
  };
  const payload = Buffer.concat([
    head,
    table(properties, { publisher_confirms: true }),
    longString('PLAIN AMQPLAIN'),
    longString('en_US'),
  ]);
  const frame = Buffer.alloc(7);
  frame.writeUInt8(1, 0); // method frame
  frame.writeUInt16BE(0, 1); // channel 0
  frame.writeUInt32BE(payload.length, 3);
  return Buffer.concat([frame, payload, Buffer.from([0xce])]);
}

/** A method frame on channel 0. */
function method(classId: number, methodId: number, args: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(11);
  head.writeUInt8(1, 0);
  head.writeUInt16BE(0, 1);
  head.writeUInt32BE(4 + args.length, 3);
  head.writeUInt16BE(classId, 7);
  head.writeUInt16BE(methodId, 9);
  return Buffer.concat([head, args, Buffer.from([0xce])]);
}

/** The method frames in `data` as `class.method` with their arguments. */
function methods(data: Buffer): { id: string; args: Buffer }[] {
  const found: { id: string; args: Buffer }[] = [];
  let at = 0;
  while (at + 7 <= data.length) {
    const size = data.readUInt32BE(at + 3);
    if (data.readUInt8(at) === 1) {
      const payload = data.subarray(at + 7, at + 7 + size);
      found.push({
        id: `${payload.readUInt16BE(0)}.${payload.readUInt16BE(2)}`,
        args: payload.subarray(4),
      });
    }
    at += 7 + size + 1;
  }
  return found;
}

/**
 * A TCP server on a free loopback port. After the protocol header it calls `reply`; then each
 * chunk the client sends goes to `onFrames` (to play the rest of the handshake).
 */
async function fakeServer(
  reply: (socket: Socket) => void,
  onFrames: (socket: Socket, frames: { id: string; args: Buffer }[]) => void = () => {},
): Promise<{ server: Server; port: number; received: { id: string; args: Buffer }[] }> {
  const received: { id: string; args: Buffer }[] = [];
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      reply(socket);
      socket.on('data', (chunk: Buffer) => {
        const frames = methods(chunk);
        received.push(...frames);
        onFrames(socket, frames);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, received };
}

const START = connectionStart({ product: 'RabbitMQ', version: '3.12.1', platform: 'Erlang' });

/** Plays a broker's side of a clean handshake and close. */
function brokerSide(socket: Socket, frames: { id: string }[]): void {
  for (const frame of frames) {
    if (frame.id === '10.11') {
      const tune = Buffer.alloc(8);
      tune.writeUInt16BE(2047, 0);
      tune.writeUInt32BE(131072, 2);
      tune.writeUInt16BE(60, 6);
      socket.write(method(10, 30, tune));
    }
    if (frame.id === '10.40') socket.write(method(10, 41, Buffer.from([0])));
    if (frame.id === '10.50') socket.end(method(10, 51));
  }
}

function settings(port: number) {
  return {
    protocol: 'amqp' as const,
    host: '127.0.0.1',
    port,
    username: 'guest',
    password: 'pw',
    virtualHost: '',
  };
}

describe('readServerVersion', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  it('reads the version, then logs in, opens the vhost and closes the connection cleanly', async () => {
    const fake = await fakeServer((socket) => socket.write(START), brokerSide);
    server = fake.server;
    await expect(
      readServerVersion(settings(fake.port), 2, { connectionName: 'probe 1' }),
    ).resolves.toBe('RabbitMQ 3.12.1');
    expect(fake.received.map((f) => f.id)).toEqual(['10.11', '10.31', '10.40', '10.50']);
    const startOk = fake.received[0]?.args.toString('latin1') ?? '';
    expect(startOk).toContain('connection_name');
    expect(startOk).toContain('probe 1');
    expect(startOk).toContain('PLAIN');
    expect(startOk).toContain('\0guest\0pw');
    const tuneOk = fake.received[1]?.args as Buffer;
    expect([tuneOk.readUInt16BE(0), tuneOk.readUInt32BE(2), tuneOk.readUInt16BE(6)]).toEqual([
      2047, 131072, 0,
    ]);
    expect(fake.received[2]?.args.subarray(0, 2).toString('latin1')).toBe('\u0001/');
    expect(fake.received[3]?.args.readUInt16BE(0)).toBe(200);
  });

  it('confirms a close the server starts (a refused login) and still returns the version', async () => {
    const fake = await fakeServer(
      (socket) => socket.write(START),
      (socket, frames) => {
        if (frames.some((f) => f.id === '10.11')) {
          const code = Buffer.alloc(2);
          code.writeUInt16BE(403);
          const text = Buffer.from('ACCESS_REFUSED');
          socket.write(
            method(
              10,
              50,
              Buffer.concat([code, Buffer.from([text.length]), text, Buffer.alloc(4)]),
            ),
          );
        }
      },
    );
    server = fake.server;
    await expect(readServerVersion(settings(fake.port), 2)).resolves.toBe('RabbitMQ 3.12.1');
    expect(fake.received.map((f) => f.id)).toEqual(['10.11', '10.51']);
  });

  it('tells a server that is not an AMQP broker, with the start of what it said', async () => {
    const fake = await fakeServer((socket) =>
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'),
    );
    server = fake.server;
    await expect(probeServer(settings(fake.port), 2)).resolves.toEqual({
      version: undefined,
      notAmqp: 'HTTP/1.1 400 Bad Request Content-Length: 0',
    });
    const broker = await fakeServer((socket) => socket.write(START), brokerSide);
    server.close();
    server = broker.server;
    await expect(probeServer(settings(broker.port), 2)).resolves.toEqual({
      version: 'RabbitMQ 3.12.1',
      notAmqp: undefined,
    });
  });

  it('resolves undefined when the server hangs up without a connection.start', async () => {
    const fake = await fakeServer((socket) => socket.end());
    server = fake.server;
    await expect(readServerVersion(settings(fake.port), 2)).resolves.toBeUndefined();
  });

  it('resolves undefined after the timeout when the server says nothing', async () => {
    const fake = await fakeServer(() => {});
    server = fake.server;
    await expect(readServerVersion(settings(fake.port), 0.2)).resolves.toBeUndefined();
  });
});
