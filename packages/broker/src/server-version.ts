import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { BrokerSettings } from '@aiida/config';

/**
 * Reads the product and version an AMQP 0-9-1 server announces (`RabbitMQ 3.12.1`) from the
 * `connection.start` method it sends right after the protocol header, then hangs up. The broker
 * client library (rabbitmq-client) does not keep these server properties, so they are asked for
 * on a connection of their own; no credentials are sent. Resolves undefined when they can't be
 * read within `timeout` seconds.
 */
export function readServerVersion(
  settings: Pick<BrokerSettings, 'protocol' | 'host' | 'port'>,
  timeout: number,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    let buffer = Buffer.alloc(0);
    let settled = false;
    const socket =
      settings.protocol === 'amqps'
        ? tlsConnect({ host: settings.host, port: settings.port, servername: settings.host })
        : tcpConnect({ host: settings.host, port: settings.port });
    const finish = (value: string | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => finish(undefined), timeout * 1000);
    socket.once(settings.protocol === 'amqps' ? 'secureConnect' : 'connect', () => {
      socket.write(Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1])); // "AMQP" 0-9-1
    });
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (buffer.length < 7) return;
      const size = buffer.readUInt32BE(3);
      if (buffer.length < 7 + size + 1) return;
      try {
        finish(parseConnectionStart(buffer.subarray(7, 7 + size)));
      } catch {
        finish(undefined);
      }
    });
    socket.on('error', () => finish(undefined));
    socket.on('close', () => finish(undefined));
  });
}

/** `product version` from the payload of a `connection.start` method frame. */
function parseConnectionStart(payload: Buffer): string | undefined {
  // class 10 (connection), method 10 (start), version-major, version-minor, server-properties.
  if (payload.readUInt16BE(0) !== 10 || payload.readUInt16BE(2) !== 10) return undefined;
  const properties = readTable(payload, 6).value;
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
