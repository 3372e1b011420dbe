import { randomUUID } from 'node:crypto';
import { createConnection } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  type ControlRequest,
  type ControlRequestType,
  type ControlResult,
  controlRequestSchema,
  controlResponseSchema,
  controlResultSchemas,
  ErrorCodes,
  encodeNdjson,
  NdjsonDecoder,
  PROTOCOL_VERSION,
  type SerializedError,
} from '@aiida/ipc';

/** A request without the fields the control client fills in (`v` and `id`). */
export type ControlRequestBody<T extends ControlRequestType = ControlRequestType> = Omit<
  Extract<ControlRequest, { type: T }>,
  'v' | 'id'
> & { type: T };

/** The daemon's answer: its validated result, or the error it sent. */
export type ControlReply<T extends ControlRequestType> =
  | { ok: true; result: ControlResult<T> }
  | { ok: false; error: SerializedError; v: number };

/** Opens a byte stream to a control socket; injected in tests. */
export type ControlConnector = (socketPath: string) => Duplex;

/** Why a control request failed before an answer could be read. */
export type ControlFailureKind =
  /** No answer within the timeout. */
  | 'timeout'
  /** The socket could not be reached (`errno` says why: ENOENT, ECONNREFUSED...). */
  | 'connect'
  /** The daemon closed the connection without answering. */
  | 'closed'
  /** A read or write failed after connecting. */
  | 'io'
  /** The answer was not a valid response to this request. */
  | 'invalid_response'
  /** The answer is of another protocol version. */
  | 'version_mismatch'
  /**
   * The daemon refused the connection with `busy` (every slot of its control socket taken) before
   * reading the request: sending it again later is safe.
   */
  | 'busy'
  /**
   * The daemon closed the connection with a `timeout` error before the request had arrived whole
   * (this side was too slow to send it, e.g. on an overloaded machine): it was not carried out,
   * so sending it again is safe too.
   */
  | 'unread';

/**
 * A control request that got no usable answer. Internal: `DaemonClient` turns it into one of the
 * public `Daemon*Exception` classes, with the profile and pid in the message.
 */
export class ControlRequestError extends Error {
  readonly kind: ControlFailureKind;
  /** System error code of a `connect` or `io` failure. */
  readonly errno: string | undefined;
  /** The version the daemon answered with, for `version_mismatch`. */
  readonly remoteVersion: unknown;
  constructor(
    kind: ControlFailureKind,
    message: string,
    options: { errno?: string; cause?: unknown; remoteVersion?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ControlRequestError';
    this.kind = kind;
    this.errno = options.errno;
    this.remoteVersion = options.remoteVersion;
  }
}

/** Options of {@link sendControlRequest}. */
export interface ControlRequestOptions {
  /** Seconds to wait for the answer, from the first connection attempt. */
  timeout: number;
  /**
   * Resolve (with `undefined`) once the request is written, without waiting for the answer. The
   * connection stays open (not keeping the process alive) until the answer or the timeout, so
   * the daemon never sees the request's sender vanish mid-request. A `busy` refusal, which the
   * daemon sends as soon as it accepts the connection, is still waited for (up to 0.2 s after the
   * write) and rejects with kind `busy`, so a refused request is never taken for a sent one.
   */
  noWait?: boolean;
  /** Opens the connection. @default a unix socket connection with `net.createConnection` */
  connect?: ControlConnector;
  /** Longest answer accepted, in bytes. @default 16 MiB */
  maxResponseBytes?: number;
}

/** How long a `noWait` request waits after its write for a `busy` refusal, in milliseconds. */
const NO_WAIT_BUSY_GRACE_MS = 200;

const defaultConnector: ControlConnector = (socketPath) => createConnection({ path: socketPath });

/**
 * Sends one request on a new connection to the control socket at `socketPath` and reads one
 * answer: one NDJSON line each way, the request carrying a random `id` and `v` =
 * `PROTOCOL_VERSION`. The answer must echo the id (or be an error with id `null`), and a result is
 * validated with the request type's schema from `@aiida/ipc`. A timer bounds the whole exchange
 * by `timeout` seconds. Rejects with {@link ControlRequestError}.
 */
export function sendControlRequest<T extends ControlRequestType>(
  socketPath: string,
  body: ControlRequestBody<T>,
  options: ControlRequestOptions & { noWait: true },
): Promise<undefined>;
export function sendControlRequest<T extends ControlRequestType>(
  socketPath: string,
  body: ControlRequestBody<T>,
  options: ControlRequestOptions,
): Promise<ControlReply<T>>;
export function sendControlRequest<T extends ControlRequestType>(
  socketPath: string,
  body: ControlRequestBody<T>,
  options: ControlRequestOptions,
): Promise<ControlReply<T> | undefined> {
  const id = randomUUID();
  const request = { ...body, v: PROTOCOL_VERSION, id };
  // Our own bug, not the daemon's: refuse to send what the daemon would refuse.
  const checked = controlRequestSchema.safeParse(request);
  if (!checked.success) {
    return Promise.reject(
      new TypeError(`invalid control request ${JSON.stringify(request)}: ${checked.error.message}`),
    );
  }
  const type = body.type as T;
  const connect = options.connect ?? defaultConnector;
  const timeoutMs = Math.max(0, options.timeout) * 1000;

  return new Promise((resolve, reject) => {
    let settled = false;
    let socket: Duplex;
    const decoder = new NdjsonDecoder({
      maxLineBytes: options.maxResponseBytes ?? 16 * 1024 * 1024,
    });

    const timer = setTimeout(() => {
      fail(
        new ControlRequestError(
          'timeout',
          `no answer to the '${type}' request within ${options.timeout} s`,
        ),
      );
    }, timeoutMs);

    const cleanUp = () => {
      clearTimeout(timer);
      socket?.destroy();
    };
    const fail = (error: ControlRequestError) => {
      if (settled) {
        socket?.destroy();
        return;
      }
      settled = true;
      cleanUp();
      reject(error);
    };
    const succeed = (reply: ControlReply<T>) => {
      if (settled) {
        socket?.destroy();
        return;
      }
      settled = true;
      cleanUp();
      resolve(reply);
    };

    try {
      socket = connect(socketPath);
    } catch (error) {
      fail(connectFailure(error));
      return;
    }

    socket.on('data', (chunk: Buffer) => {
      for (const event of decoder.push(chunk)) {
        if (event.kind === 'error') {
          fail(
            new ControlRequestError(
              'invalid_response',
              `unreadable answer to the '${type}' request: ${event.error.message}`,
            ),
          );
          return;
        }
        const outcome = interpretResponse(type, id, event.value);
        if (outcome instanceof ControlRequestError) fail(outcome);
        else if (options.noWait) finishNoWait();
        else succeed(outcome);
        return;
      }
    });
    socket.on('end', () => {
      decoder.end();
      fail(
        new ControlRequestError(
          'closed',
          `the daemon closed the connection without answering the '${type}' request`,
        ),
      );
    });
    socket.on('close', () => {
      fail(
        new ControlRequestError(
          'closed',
          `the daemon closed the connection without answering the '${type}' request`,
        ),
      );
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (isConnectErrno(error.code)) fail(connectFailure(error));
      else
        fail(
          new ControlRequestError(
            'io',
            `the connection to the daemon failed during the '${type}' request: ${error.message}`,
            { errno: error.code, cause: error },
          ),
        );
    });

    // The request is out: hand control back, and let the socket linger without holding the
    // process until the answer (discarded) or the timeout closes it.
    const finishNoWait = () => {
      if (settled) return;
      settled = true;
      const lingering = socket as Duplex & { unref?: () => void };
      lingering.unref?.();
      timer.unref();
      resolve(undefined);
    };
    socket.write(encodeNdjson(request), (error) => {
      if (error || !options.noWait || settled) return;
      setTimeout(finishNoWait, Math.min(NO_WAIT_BUSY_GRACE_MS, timeoutMs));
    });
  });
}

const CONNECT_ERRNOS = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'ENOTSOCK',
  'EACCES',
  'EPERM',
  'ENOTDIR',
]);

function isConnectErrno(code: string | undefined): boolean {
  return code !== undefined && CONNECT_ERRNOS.has(code);
}

function connectFailure(error: unknown): ControlRequestError {
  const errno = (error as NodeJS.ErrnoException)?.code;
  return new ControlRequestError(
    'connect',
    `cannot connect to the control socket: ${(error as Error)?.message ?? String(error)}`,
    { errno, cause: error },
  );
}

/** Checks one decoded answer line against the request it should answer. */
function interpretResponse<T extends ControlRequestType>(
  type: T,
  id: string,
  value: unknown,
): ControlReply<T> | ControlRequestError {
  const version = (value as { v?: unknown } | null)?.v;
  const parsed = controlResponseSchema.safeParse(value);
  if (!parsed.success) {
    if (typeof version === 'number' && version !== PROTOCOL_VERSION) {
      return new ControlRequestError(
        'version_mismatch',
        `the daemon answered with protocol version ${version}`,
        { remoteVersion: version },
      );
    }
    return new ControlRequestError(
      'invalid_response',
      `malformed answer to the '${type}' request: ${summarizeIssues(parsed.error.issues)}`,
    );
  }
  const response = parsed.data;
  if (!response.ok && response.error.code === ErrorCodes.busy && response.id === null) {
    return new ControlRequestError('busy', response.error.message);
  }
  if (!response.ok && response.error.code === ErrorCodes.timeout && response.id === null) {
    return new ControlRequestError('unread', response.error.message);
  }
  if (!response.ok) {
    if (response.id !== null && response.id !== id) {
      return new ControlRequestError(
        'invalid_response',
        `the answer to the '${type}' request carries id '${response.id}', not '${id}'`,
      );
    }
    return { ok: false, error: response.error, v: response.v };
  }
  if (response.id !== id) {
    return new ControlRequestError(
      'invalid_response',
      `the answer to the '${type}' request carries id '${response.id}', not '${id}'`,
    );
  }
  const result = controlResultSchemas[type].safeParse(response.result);
  if (!result.success) {
    return new ControlRequestError(
      'invalid_response',
      `malformed result of the '${type}' request: ${summarizeIssues(result.error.issues)}`,
    );
  }
  return { ok: true, result: result.data as ControlResult<T> };
}

function summarizeIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string }[],
): string {
  return issues
    .slice(0, 5)
    .map((issue) => `${issue.path.map(String).join('.') || '(root)'}: ${issue.message}`)
    .join('; ');
}
