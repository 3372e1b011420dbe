import { chmodSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import {
  type ControlRequest,
  type ControlResponse,
  DEFAULT_MAX_LINE_BYTES,
  ErrorCodes,
  encodeNdjson,
  NdjsonDecoder,
  type NdjsonEvent,
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

/** Options of {@link ControlServer}. */
export interface ControlServerOptions {
  /** Unix socket path to listen on (removed first if a stale one is there). */
  path: string;
  handler: ControlHandler;
  /**
   * Seconds a connection may stay silent, with no request in progress, before it is closed.
   * @default 5
   */
  idleTimeout?: number;
  /** Longest request line in bytes. @default 1048576 */
  maxLineBytes?: number;
  /** Connections served at once; more are refused. @default 64 */
  maxConnections?: number;
  /** Receives a line for the log about misbehaving connections. */
  log?: (message: string) => void;
}

/**
 * The control socket: NDJSON requests in, one answer per request out (matched by `id`, in any
 * order). Broken input never stops the server: a malformed, unknown, invalid or oversized request
 * gets a typed error, a half-close in the middle of a line gets `incomplete_request`, and a silent
 * connection is closed after {@link ControlServerOptions.idleTimeout}.
 */
export class ControlServer {
  readonly path: string;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly options: Required<Omit<ControlServerOptions, 'log'>> & {
    log: (message: string) => void;
  };

  constructor(options: ControlServerOptions) {
    this.path = options.path;
    this.options = {
      idleTimeout: 5,
      maxLineBytes: DEFAULT_MAX_LINE_BYTES,
      maxConnections: 64,
      log: () => {},
      ...options,
    };
    this.server = createServer({ allowHalfOpen: true }, (socket) => this.serve(socket));
    this.server.maxConnections = this.options.maxConnections;
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
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    const decoder = new NdjsonDecoder({ maxLineBytes: this.options.maxLineBytes });
    let pending = 0;
    let halfClosed = false;

    const send = (response: ControlResponse) => {
      if (socket.writable) socket.write(encodeNdjson(response));
    };
    const endIfDone = () => {
      if (halfClosed && pending === 0 && !socket.destroyed) socket.end();
    };
    const onEvent = (event: NdjsonEvent) => {
      if (event.kind === 'error') {
        send(frameErrorResponse(event.error));
        return;
      }
      const parsed = parseControlRequest(event.value);
      if (!parsed.ok) {
        send(errorResponse(parsed.id, parsed.error));
        return;
      }
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
          endIfDone();
        });
    };

    socket.setTimeout(this.options.idleTimeout * 1000);
    socket.on('timeout', () => {
      if (pending > 0) return; // waiting for a long request (restart, stop) is not idleness
      send(
        errorResponse(null, {
          code: ErrorCodes.timeout,
          message: `connection closed after ${this.options.idleTimeout} s without a complete request`,
        }),
      );
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    });
    socket.on('data', (chunk: Buffer) => {
      for (const event of decoder.push(chunk)) onEvent(event);
    });
    socket.on('end', () => {
      halfClosed = true;
      for (const event of decoder.end()) onEvent(event);
      endIfDone();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.sockets.delete(socket));
  }
}
