import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import {
  type ControlRequest,
  type ControlResponse,
  ErrorCodes,
  encodeNdjson,
  NdjsonDecoder,
  type NdjsonEvent,
  type SerializedError,
} from '@aiida/ipc';
import {
  errorResponse,
  frameErrorResponse,
  okResponse,
  parseControlRequest,
} from './control-protocol.js';
import { errorMessage, isSupervisorError } from './errors.js';

/** Answers one valid request; a thrown {@link SupervisorError} becomes a typed error answer. */
export type ControlHandler = (request: ControlRequest) => Promise<unknown>;

/**
 * Longest control request line the server reads, in bytes (64 KiB). The largest valid request is
 * well under 1 KiB; the cap bounds what one connection can make the server buffer.
 */
export const MAX_CONTROL_REQUEST_BYTES = 64 * 1024;

/** Options of {@link ControlServer}. */
export interface ControlServerOptions {
  /** Unix socket path to listen on (removed first if a stale one is there). */
  path: string;
  handler: ControlHandler;
  /**
   * Seconds a connection may stay without a request (since it opened or since its last answer)
   * before it is closed with a `timeout` error. Blank lines do not count as requests.
   * @default 5
   */
  idleTimeout?: number;
  /**
   * Seconds a request may take to arrive whole, counted from its first byte (not from the last
   * one, so a client dripping a byte at a time cannot hold a connection).
   * @default 5
   */
  requestTimeout?: number;
  /** Longest request line in bytes. @default 65536 */
  maxLineBytes?: number;
  /**
   * Connections served at once, the reserved ones included. A connection beyond it gets a `busy`
   * error and is closed.
   * @default 64
   */
  maxConnections?: number;
  /**
   * Of {@link maxConnections}, how many are kept for a quick request while the others are all
   * taken: such a connection must send one request whole within
   * {@link reservedRequestTimeout}, gets its answer and is closed. So a well-behaved client
   * (`status`) is answered even while a flood or slow clients hold every other slot.
   * @default 4
   */
  reservedConnections?: number;
  /** Seconds a connection on a reserved slot has to send its request. @default 2 */
  reservedRequestTimeout?: number;
  /**
   * Bytes of answers a connection may leave unread before the server stops reading its requests
   * (reading resumes once the client caught up).
   * @default 65536
   */
  maxUnreadBytes?: number;
  /** Requests of one connection handled at once; further ones wait, unread. @default 8 */
  maxInFlight?: number;
  /** Receives a line for the log about misbehaving connections (at most one line per 10 s). */
  log?: (message: string) => void;
}

type ResolvedOptions = Required<Omit<ControlServerOptions, 'log'>> & {
  log: (message: string) => void;
};

/** How often at most the server logs a summary of the connections it refused or closed. */
const LOG_INTERVAL_MS = 10_000;
/** How long a connection being closed may linger before it is destroyed. */
const CLOSE_LINGER_MS = 1000;
/**
 * How long a connection refused as busy is kept open for its client to read why. A client on a
 * loaded machine may connect and only write its request a few seconds later: had the refusal
 * been closed by then, the client's write would fail with EPIPE before it read the answer.
 */
const BUSY_LINGER_MS = 10_000;

/**
 * The control socket: NDJSON requests in, one answer per request out (matched by `id`, in any
 * order). Broken input never stops the server and cannot make it grow:
 * - a malformed, unknown, invalid or oversized request gets a typed error; a second one in a row
 *   on the same connection closes it with a final `invalid_request` error (requests read before
 *   it are still answered first);
 * - a request must arrive whole within {@link ControlServerOptions.requestTimeout} of its first
 *   byte, and a connection without a request for {@link ControlServerOptions.idleTimeout} is
 *   closed (a `timeout` error each); a half-close in the middle of a line gets
 *   `incomplete_request`;
 * - the server stops reading a connection whose unread answers exceed
 *   {@link ControlServerOptions.maxUnreadBytes}, and drops it if it does not catch up within the
 *   idle timeout;
 * - connections beyond {@link ControlServerOptions.maxConnections} get a `busy` error and are
 *   closed, and a few slots are kept for one quick request each, so that `status` answers while a
 *   flood holds the rest.
 */
export class ControlServer {
  readonly path: string;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly options: ResolvedOptions;
  private generalInUse = 0;
  private reservedInUse = 0;
  private readonly incidents = new Map<string, number>();
  private logTimer: NodeJS.Timeout | undefined;

  constructor(options: ControlServerOptions) {
    this.path = options.path;
    this.options = {
      idleTimeout: 5,
      requestTimeout: 5,
      maxLineBytes: MAX_CONTROL_REQUEST_BYTES,
      maxConnections: 64,
      reservedConnections: 4,
      reservedRequestTimeout: 2,
      maxUnreadBytes: 64 * 1024,
      maxInFlight: 8,
      log: () => {},
      ...options,
    };
    const { maxConnections, reservedConnections } = this.options;
    if (!(Number.isInteger(reservedConnections) && reservedConnections >= 1)) {
      throw new RangeError(`reservedConnections must be at least 1, got ${reservedConnections}`);
    }
    if (!(Number.isInteger(maxConnections) && maxConnections > reservedConnections)) {
      throw new RangeError(
        `maxConnections (${maxConnections}) must be a whole number above reservedConnections (${reservedConnections})`,
      );
    }
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.accept(socket));
  }

  /** Starts listening; the socket file is made mode 0600. */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.server.once('error', onError);
      this.server.listen(this.path, () => {
        this.server.off('error', onError);
        this.server.on('error', (error) =>
          this.options.log(`control socket error: ${error.message}`),
        );
        try {
          chmodSync(this.path, 0o600);
          resolve();
        } catch (error) {
          reject(error);
        }
      });
    });
  }

  /**
   * Stops accepting connections and ends the open ones once their pending answers are written
   * (destroying any left after `graceSeconds`). Does not remove the socket file's path if
   * another process took it over meanwhile; the caller removes it.
   */
  async close(graceSeconds = 0.5): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.end();
    const timer = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceSeconds * 1000);
    await closed;
    clearTimeout(timer);
    clearTimeout(this.logTimer);
    this.logTimer = undefined;
    this.flushIncidents();
    clearTimeout(this.logTimer);
  }

  /** Counts a refused or closed connection for the next summary line of the log. */
  private note(incident: string): void {
    this.incidents.set(incident, (this.incidents.get(incident) ?? 0) + 1);
    if (this.logTimer === undefined) this.flushIncidents();
  }

  /** Logs the incidents counted so far in one line, then waits before logging again. */
  private flushIncidents(): void {
    if (this.incidents.size === 0) return;
    const parts = [...this.incidents].map(([what, n]) => `${n} ${what}`);
    this.incidents.clear();
    this.options.log(`control socket: ${parts.join(', ')}`);
    clearTimeout(this.logTimer);
    this.logTimer = setTimeout(() => {
      this.logTimer = undefined;
      this.flushIncidents();
    }, LOG_INTERVAL_MS);
    this.logTimer.unref();
  }

  private accept(socket: Socket): void {
    const { maxConnections, reservedConnections } = this.options;
    const generalLimit = maxConnections - reservedConnections;
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    if (this.generalInUse < generalLimit) {
      this.generalInUse++;
      socket.once('close', () => this.generalInUse--);
      this.serve(socket, false);
    } else if (this.reservedInUse < reservedConnections) {
      this.reservedInUse++;
      socket.once('close', () => this.reservedInUse--);
      this.serve(socket, true);
    } else {
      this.refuseBusy(socket);
    }
  }

  /** Answers `busy` without reading the connection's request, and closes it. */
  private refuseBusy(socket: Socket): void {
    this.note('connections refused as busy');
    // A refused connection costs a descriptor until its client read the answer (or for 10 s); a
    // flood of connection attempts must not pile up descriptors without end: past a hard cap of
    // 16 x maxConnections open sockets, cut without a word.
    if (this.sockets.size > this.options.maxConnections * 16) {
      socket.destroy();
      return;
    }
    // Read and drop what the client sends, and leave the closing to it (it closes on the answer):
    // a refusal that closed first would make the client's request write fail with EPIPE before
    // it read why.
    socket.on('data', () => {});
    socket.on('end', () => socket.destroy());
    socket.write(
      encodeNdjson(
        errorResponse(null, {
          code: ErrorCodes.busy,
          message: `the daemon's control socket is busy: all ${this.options.maxConnections} connections are in use; try again shortly`,
          details: { maxConnections: this.options.maxConnections },
        }),
      ),
    );
    setTimeout(() => socket.destroy(), BUSY_LINGER_MS).unref();
  }

  /**
   * Serves one connection. Its bytes are decoded one line at a time, and only while its unread
   * answers and its requests in flight are below their bounds; otherwise the socket is paused, so
   * the kernel's buffers, not ours, hold what the client sends.
   */
  private serve(socket: Socket, reserved: boolean): void {
    const o = this.options;
    const decoder = new NdjsonDecoder({ maxLineBytes: o.maxLineBytes });
    const idleMs = (reserved ? o.reservedRequestTimeout : o.idleTimeout) * 1000;
    const requestMs = (reserved ? o.reservedRequestTimeout : o.requestTimeout) * 1000;
    let input: Buffer | undefined;
    let offset = 0;
    let inputEnded = false;
    let endDecoded = false;
    let pending = 0;
    let malformedInRow = 0;
    /** No more input is read: the connection ends once its pending answers are written. */
    let closing = false;
    /** Our side of the connection is ended; nothing more is written. */
    let ended = false;
    /** A reserved connection serves one request; later lines are ignored. */
    let served = false;
    let idleDeadline = performance.now() + idleMs;
    let lineStartedAt = 0;
    let timer: NodeJS.Timeout | undefined;
    let stallTimer: NodeJS.Timeout | undefined;

    const send = (response: ControlResponse) => {
      if (!ended && socket.writable) socket.write(encodeNdjson(response));
    };
    /** Ends the connection once no answer is pending (requests already read are answered). */
    const finish = () => {
      if (ended || pending > 0) return;
      ended = true;
      clearTimeout(timer);
      clearTimeout(stallTimer);
      socket.end();
      setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
    };
    const closeWith = (error: SerializedError | undefined, incident: string) => {
      if (closing) return;
      closing = true;
      this.note(incident);
      clearTimeout(timer);
      input = undefined;
      if (error) send(errorResponse(null, error));
      // Drop whatever else the client sends while the last answers go out.
      socket.removeAllListeners('data');
      socket.on('data', () => {});
      socket.resume();
      finish();
    };
    const blockedOnWrites = () => socket.writableLength > o.maxUnreadBytes;

    /** Arms the one deadline that applies now: the line in progress, or idleness. */
    const rearm = () => {
      clearTimeout(timer);
      timer = undefined;
      if (closing) return;
      const now = performance.now();
      if (decoder.hasPartialLine) {
        timer = setTimeout(
          () =>
            closeWith(
              {
                code: ErrorCodes.timeout,
                message: `connection closed: a request did not arrive whole within ${requestMs / 1000} s of its first byte`,
              },
              'connections closed for a request that arrived too slowly',
            ),
          Math.max(0, lineStartedAt + requestMs - now),
        );
      } else if (pending === 0 && input === undefined && !(inputEnded && endDecoded)) {
        timer = setTimeout(
          () =>
            closeWith(
              {
                code: ErrorCodes.timeout,
                message: `connection closed after ${idleMs / 1000} s without a complete request`,
              },
              'idle connections closed',
            ),
          Math.max(0, idleDeadline - now),
        );
      }
    };

    const endIfDone = () => {
      if (closing || pending > 0 || input !== undefined) return;
      if ((inputEnded && endDecoded) || (reserved && served)) {
        closing = true;
        finish();
      }
    };

    const refuse = (id: string | null, error: SerializedError) => {
      malformedInRow++;
      if (malformedInRow === 1 && !reserved) {
        send(errorResponse(id, error));
        return;
      }
      closeWith(
        reserved
          ? error
          : {
              code: ErrorCodes.invalidRequest,
              message: `connection closed after ${malformedInRow} malformed requests in a row (the last: ${error.message.slice(0, 200)})`,
              details: { lastCode: error.code },
            },
        'connections closed for malformed requests',
      );
    };

    const onEvent = (event: NdjsonEvent) => {
      if (closing) return;
      if (reserved && served) return;
      if (event.kind === 'error') {
        if (event.error.kind === 'incomplete_line') {
          // The client half-closed: this is its last line, answered whatever came before.
          send(frameErrorResponse(event.error));
          return;
        }
        refuse(null, frameErrorResponse(event.error).error);
        return;
      }
      const parsed = parseControlRequest(event.value);
      if (!parsed.ok) {
        refuse(parsed.id, parsed.error);
        return;
      }
      malformedInRow = 0;
      served = true;
      const { request } = parsed;
      pending++;
      this.options
        .handler(request)
        .then(
          (result) => send(okResponse(request.id, result)),
          (error: unknown) =>
            send(
              errorResponse(request.id, {
                code: isSupervisorError(error) ? error.code : ErrorCodes.internal,
                message: errorMessage(error),
              }),
            ),
        )
        .finally(() => {
          pending--;
          if (pending === 0) idleDeadline = performance.now() + idleMs;
          if (closing) finish();
          else pump();
        });
    };

    /** Decodes buffered input one line at a time while the bounds allow, then reads on. */
    const pump = () => {
      while (!closing) {
        if (reserved && served) {
          input = undefined;
          break;
        }
        if (blockedOnWrites() || pending >= o.maxInFlight) {
          socket.pause();
          if (blockedOnWrites() && !stallTimer) {
            // A client that never reads its answers must not hold a slot for ever.
            stallTimer = setTimeout(
              () => {
                this.note('connections dropped for not reading their answers');
                closing = true;
                ended = true;
                clearTimeout(timer);
                socket.destroy();
              },
              Math.max(idleMs, o.idleTimeout * 1000),
            );
          }
          rearm();
          return;
        }
        if (input === undefined) {
          if (inputEnded && !endDecoded) {
            endDecoded = true;
            for (const event of decoder.end()) onEvent(event);
            continue;
          }
          break;
        }
        const newline = input.indexOf(0x0a, offset);
        const end = newline === -1 ? input.length : newline + 1;
        const wasPartial = decoder.hasPartialLine;
        const events = decoder.push(input.subarray(offset, end));
        offset = end;
        if (offset >= input.length) input = undefined;
        if (!wasPartial && decoder.hasPartialLine) lineStartedAt = performance.now();
        for (const event of events) onEvent(event);
      }
      if (!closing && !inputEnded && !(reserved && served)) socket.resume();
      rearm();
      endIfDone();
    };

    socket.on('drain', () => {
      clearTimeout(stallTimer);
      stallTimer = undefined;
      pump();
    });
    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      input = input === undefined ? chunk : Buffer.concat([input.subarray(offset), chunk]);
      offset = 0;
      pump();
    });
    socket.on('end', () => {
      inputEnded = true;
      pump();
    });
    socket.on('close', () => {
      closing = true;
      ended = true;
      clearTimeout(timer);
      clearTimeout(stallTimer);
    });
    rearm();
  }
}
