import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { BrokerSettings } from '@aiida/config';

/** What {@link readServerVersion} needs of a profile's broker settings. */
export type ServerVersionSettings = Pick<
  BrokerSettings,
  'protocol' | 'host' | 'port' | 'username' | 'password' | 'virtualHost'
>;

/** Options of {@link readServerVersion}. */
export interface ReadServerVersionOptions {
  /** Client-provided connection name, shown in the broker's log and management UI. */
  connectionName?: string;
}

/**
 * Reads the product and version an AMQP 0-9-1 server announces (`RabbitMQ 3.12.1`) from the
 * `connection.start` method it sends right after the protocol header. The broker client library
 * (rabbitmq-client) does not keep these server properties, so they are asked for on a connection
 * of their own, which then goes through the whole handshake (PLAIN login with the settings'
 * credentials, tune, open of the virtual host) and is closed with `connection.close` /
 * `close-ok`: hanging up mid-handshake would leave a warning in the broker's log on every call.
 * Resolves undefined when the version can't be read within `timeout` seconds; once read, it is
 * returned even when the rest of the handshake fails (the failure is the broker's to log).
 */
export async function readServerVersion(
  settings: ServerVersionSettings,
  timeout: number,
  options: ReadServerVersionOptions = {},
): Promise<string | undefined> {
  return (await probeServer(settings, timeout, options)).version;
}

/** What {@link probeServer} found at the broker's address. */
export interface ServerProbe {
  /** The server's product and version, when it answered as an AMQP 0-9-1 broker. */
  version: string | undefined;
  /**
   * When something answered that is not an AMQP broker (an HTTP server, say): the start of its
   * answer, printable, at most 60 characters. A client library fed such an answer may fail
   * badly (rabbitmq-client reads its first bytes as a frame size), so check this first.
   */
  notAmqp: string | undefined;
}

/**
 * {@link readServerVersion}, telling also whether what answered is an AMQP broker at all. Resolves
 * at once on an answer that is not AMQP; otherwise as {@link readServerVersion} does.
 */
export function probeServer(
  settings: ServerVersionSettings,
  timeout: number,
  options: ReadServerVersionOptions = {},
): Promise<ServerProbe> {
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    let settled = false;
    let version: string | undefined;
    let notAmqp: string | undefined;
    const socket =
      settings.protocol === 'amqps'
        ? tlsConnect({ host: settings.host, port: settings.port, servername: settings.host })
        : tcpConnect({ host: settings.host, port: settings.port });
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ version, notAmqp });
    };
    const timer = setTimeout(finish, timeout * 1000);
    socket.once(settings.protocol === 'amqps' ? 'secureConnect' : 'connect', () => {
      socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])); // "AMQP" 0-9-1
    });
    const onMethod = (classId: number, methodId: number, args: Buffer) => {
      if (classId !== 10) return;
      switch (methodId) {
        case 10: // start: read the version, log in
          version = parseConnectionStart(args);
          socket.write(startOk(settings, options.connectionName));
          return;
        case 30: // tune: accept the server's limits, no heartbeats
          socket.write(tuneOk(args));
          socket.write(open(settings.virtualHost));
          return;
        case 41: // open-ok: the connection is up; close it as a client should
          socket.write(close());
          return;
        case 50: // close from the server (refused login or vhost): confirm it
          socket.end(methodFrame(10, 51, Buffer.alloc(0)));
          return;
        case 51: // close-ok: done
          socket.end();
          finish();
          return;
        default:
      }
    };
    let first = true;
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (first) {
        first = false;
        // A broker answers with a method frame (type 1), or with its own protocol header
        // ("AMQP...") when it speaks another version.
        if (buffer[0] !== 1 && buffer[0] !== 0x41) {
          notAmqp = printable(buffer.subarray(0, 60));
          finish();
          return;
        }
      }
      try {
        for (;;) {
          if (buffer.length < 7) return;
          const size = buffer.readUInt32BE(3);
          if (buffer.length < 7 + size + 1) return;
          const type = buffer.readUInt8(0);
          const payload = buffer.subarray(7, 7 + size);
          buffer = buffer.subarray(7 + size + 1);
          if (type === 1 && payload.length >= 4) {
            onMethod(payload.readUInt16BE(0), payload.readUInt16BE(2), payload.subarray(4));
          }
        }
      } catch {
        finish();
      }
    });
    socket.on('error', finish);
    socket.on('close', finish);
  });
}

function printable(bytes: Buffer): string {
  return bytes
    .toString('latin1')
    .replace(/[^\x20-\x7e]+/g, ' ')
    .trim();
}

function shortString(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

function longString(bytes: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function methodFrame(classId: number, methodId: number, args: Buffer): Buffer {
  const head = Buffer.alloc(11);
  head.writeUInt8(1, 0); // method frame
  head.writeUInt16BE(0, 1); // channel 0
  head.writeUInt32BE(4 + args.length, 3);
  head.writeUInt16BE(classId, 7);
  head.writeUInt16BE(methodId, 9);
  return Buffer.concat([head, args, Buffer.from([0xce])]);
}

/** `connection.start-ok`: client properties (the connection name), PLAIN login, locale. */
function startOk(settings: ServerVersionSettings, connectionName: string | undefined): Buffer {
  const fields =
    connectionName === undefined
      ? Buffer.alloc(0)
      : Buffer.concat([
          shortString('connection_name'),
          Buffer.from('S'),
          longString(Buffer.from(connectionName, 'utf8')),
        ]);
  const response = Buffer.from(`\0${settings.username}\0${settings.password}`, 'utf8');
  return methodFrame(
    10,
    11,
    Buffer.concat([
      longString(fields),
      shortString('PLAIN'),
      longString(response),
      shortString('en_US'),
    ]),
  );
}

/** `connection.tune-ok` with the server's channel and frame limits and heartbeats off. */
function tuneOk(tune: Buffer): Buffer {
  const args = Buffer.alloc(8);
  args.writeUInt16BE(tune.readUInt16BE(0), 0); // channel-max
  args.writeUInt32BE(tune.readUInt32BE(2), 2); // frame-max
  args.writeUInt16BE(0, 6); // heartbeat
  return methodFrame(10, 31, args);
}

/** `connection.open` of the virtual host (`''` is the broker's default one, `/`). */
function open(virtualHost: string): Buffer {
  return methodFrame(
    10,
    40,
    Buffer.concat([
      shortString(virtualHost === '' ? '/' : virtualHost),
      shortString(''),
      Buffer.from([0]),
    ]),
  );
}

/** `connection.close` 200 (a normal shutdown). */
function close(): Buffer {
  const code = Buffer.alloc(2);
  code.writeUInt16BE(200);
  const ids = Buffer.alloc(4);
  return methodFrame(10, 50, Buffer.concat([code, shortString('version probe done'), ids]));
}

/** `product version` from the payload of a `connection.start` method frame. */
function parseConnectionStart(args: Buffer): string | undefined {
  // version-major, version-minor, server-properties, mechanisms, locales.
  const properties = readTable(args, 2).value;
  const product = typeof properties.product === 'string' ? properties.product : undefined;
  const version = typeof properties.version === 'string' ? properties.version : undefined;
  if (version === undefined) return product;
  return product === undefined ? version : `${product} ${version}`;
}

function readTable(buf: Buffer, offset: number): { value: Record<string, unknown>; end: number } {
  const length = buf.readUInt32BE(offset);
  let at = offset + 4;
  const end = at + length;
  const value: Record<string, unknown> = {};
  while (at < end) {
    const nameLength = buf.readUInt8(at);
    const name = buf.toString('utf8', at + 1, at + 1 + nameLength);
    const field = readField(buf, at + 1 + nameLength);
    value[name] = field.value;
    at = field.end;
  }
  return { value, end };
}

function readField(buf: Buffer, offset: number): { value: unknown; end: number } {
  const type = String.fromCharCode(buf.readUInt8(offset));
  const at = offset + 1;
  switch (type) {
    case 'S': {
      const length = buf.readUInt32BE(at);
      return { value: buf.toString('utf8', at + 4, at + 4 + length), end: at + 4 + length };
    }
    case 'F':
      return readTable(buf, at);
    case 'A':
    case 'x':
      return { value: undefined, end: at + 4 + buf.readUInt32BE(at) };
    case 't':
    case 'b':
    case 'B':
      return { value: buf.readUInt8(at), end: at + 1 };
    case 's':
    case 'u':
      return { value: undefined, end: at + 2 };
    case 'I':
    case 'i':
    case 'f':
      return { value: undefined, end: at + 4 };
    case 'D':
      return { value: undefined, end: at + 5 };
    case 'l':
    case 'd':
    case 'T':
      return { value: undefined, end: at + 8 };
    case 'V':
      return { value: undefined, end: at };
    default:
      throw new Error(`unknown AMQP field type ${type}`);
  }
}
