import { createServer, type Server, type Socket } from 'node:net';
import { readServerVersion } from '../src/server-version.js';

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

/** A TCP server on a free loopback port that answers the protocol header with `reply`. */
async function fakeServer(
  reply: (socket: Socket) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => reply(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port };
}

describe('readServerVersion', () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
  });

  it('reads the product and version from connection.start', async () => {
    const fake = await fakeServer((socket) =>
      socket.write(connectionStart({ product: 'RabbitMQ', version: '3.12.1', platform: 'Erlang' })),
    );
    server = fake.server;
    await expect(
      readServerVersion({ protocol: 'amqp', host: '127.0.0.1', port: fake.port }, 2),
    ).resolves.toBe('RabbitMQ 3.12.1');
  });

  it('resolves undefined when the server hangs up without a connection.start', async () => {
    const fake = await fakeServer((socket) => socket.end());
    server = fake.server;
    await expect(
      readServerVersion({ protocol: 'amqp', host: '127.0.0.1', port: fake.port }, 2),
    ).resolves.toBeUndefined();
  });

  it('resolves undefined after the timeout when the server says nothing', async () => {
    const fake = await fakeServer(() => {});
    server = fake.server;
    await expect(
      readServerVersion({ protocol: 'amqp', host: '127.0.0.1', port: fake.port }, 0.2),
    ).resolves.toBeUndefined();
  });
});
