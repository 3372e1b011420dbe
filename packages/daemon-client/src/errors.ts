import { type ErrorCode, ErrorCodes, isErrorCode, type SerializedError } from '@aiida/ipc';

/**
 * Key of the brand every exception of this package carries: the names of its class and of every
 * class above it. `Symbol.for` gives the same symbol in every copy of this module, so the brand
 * checks below (and `instanceof`, which uses them) work even when an application ends up with two
 * copies of `@aiida/daemon-client` in its `node_modules`.
 */
const BRANDS: unique symbol = Symbol.for('@aiida/daemon-client.DaemonException.brands') as never;

type Branded = { readonly [BRANDS]?: readonly string[] };

function brandsOf(value: unknown): readonly string[] | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const brands = (value as Branded)[BRANDS];
  return Array.isArray(brands) ? brands : undefined;
}

/** Options of every exception of this package. */
export interface DaemonExceptionOptions {
  /** Stable string code from `ErrorCodes` of `@aiida/ipc`. @default 'daemon_error' */
  code?: ErrorCode;
  /** The error that led to this one. */
  cause?: unknown;
  /** Structured facts for programs (pid, paths, versions that met...). */
  details?: Record<string, unknown>;
}

/**
 * Base class of every error the daemon client raises (AiiDA's `DaemonException`): the daemon
 * failed to start, or a call to it failed. `code` is one of `@aiida/ipc`'s `ErrorCodes`, so an
 * error the supervisor sent over the control socket keeps its meaning here.
 *
 * `instanceof` works across duplicated copies of this package (it checks a `Symbol.for` brand);
 * {@link isDaemonException} does the same as a function.
 */
export class DaemonException extends Error {
  /** Name of this class in the brand; each subclass sets its own. */
  static readonly brand: string = 'DaemonException';

  /** Stable string code from `ErrorCodes` of `@aiida/ipc`. */
  readonly code: ErrorCode;
  /** Structured facts for programs (pid, paths, versions that met...). */
  readonly details: Record<string, unknown> | undefined;
  declare readonly [BRANDS]: readonly string[];

  constructor(message: string, options: DaemonExceptionOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? ErrorCodes.daemonError;
    this.details = options.details;
    const brands: string[] = [];
    for (
      let klass: unknown = new.target;
      typeof klass === 'function' && Object.hasOwn(klass, 'brand');
      klass = Object.getPrototypeOf(klass)
    ) {
      brands.push((klass as typeof DaemonException).brand);
    }
    Object.defineProperty(this, BRANDS, { value: Object.freeze(brands), enumerable: false });
  }

  /** `value instanceof X` is true when `value` carries X's brand (from any copy of this module). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the class right of `instanceof`, a subclass too
    return brandsOf(value)?.includes(this.brand) ?? false;
  }
}

/**
 * The daemon did not answer in time (code `timeout`). The message says what timed out and after
 * how many seconds, and suggests a larger `timeout` or the option `daemon.timeout`.
 */
export class DaemonTimeoutException extends DaemonException {
  static override readonly brand: string = 'DaemonTimeoutException';
  constructor(message: string, options: Omit<DaemonExceptionOptions, 'code'> = {}) {
    super(message, { ...options, code: ErrorCodes.timeout });
  }
}

/** The daemon of the profile is not running: it has no state file (code `not_running`). */
export class DaemonNotRunningException extends DaemonException {
  static override readonly brand: string = 'DaemonNotRunningException';
  constructor(message: string, options: Omit<DaemonExceptionOptions, 'code'> = {}) {
    super(message, { ...options, code: ErrorCodes.notRunning });
  }
}

/**
 * The profile has a state file, but its process is gone or is not ours any more (pid reused, or a
 * previous boot) (code `stale_pid`). `startDaemon` and `stopDaemon` remove such a file and go on;
 * every other call raises this at once.
 */
export class DaemonStalePidException extends DaemonException {
  static override readonly brand: string = 'DaemonStalePidException';
  constructor(message: string, options: Omit<DaemonExceptionOptions, 'code'> = {}) {
    super(message, { ...options, code: ErrorCodes.stalePid });
  }
}

/**
 * Every connection slot of the daemon's control socket stayed taken (by other clients, or a flood
 * of connections) for the whole wait (code `busy`). The daemon itself runs; the request was not
 * read, so nothing was done. The client already retries while it waits; try again later, or find
 * what floods the socket.
 */
export class DaemonBusyException extends DaemonException {
  static override readonly brand: string = 'DaemonBusyException';
  constructor(message: string, options: Omit<DaemonExceptionOptions, 'code'> = {}) {
    super(message, { ...options, code: ErrorCodes.busy });
  }
}

/** True when `value` is a {@link DaemonException} (of any copy of this package). */
export function isDaemonException(value: unknown): value is DaemonException {
  return brandsOf(value)?.includes(DaemonException.brand) ?? false;
}

/** True when `value` is a {@link DaemonTimeoutException} (of any copy of this package). */
export function isDaemonTimeoutException(value: unknown): value is DaemonTimeoutException {
  return brandsOf(value)?.includes(DaemonTimeoutException.brand) ?? false;
}

/** True when `value` is a {@link DaemonNotRunningException} (of any copy of this package). */
export function isDaemonNotRunningException(value: unknown): value is DaemonNotRunningException {
  return brandsOf(value)?.includes(DaemonNotRunningException.brand) ?? false;
}

/** True when `value` is a {@link DaemonStalePidException} (of any copy of this package). */
export function isDaemonStalePidException(value: unknown): value is DaemonStalePidException {
  return brandsOf(value)?.includes(DaemonStalePidException.brand) ?? false;
}

/** True when `value` is a {@link DaemonBusyException} (of any copy of this package). */
export function isDaemonBusyException(value: unknown): value is DaemonBusyException {
  return brandsOf(value)?.includes(DaemonBusyException.brand) ?? false;
}

/**
 * Turns an error that crossed a process boundary (an error answer of the control socket, a failure
 * report of the supervisor) back into the matching class: `timeout`, `not_running`, `stale_pid`
 * and `busy` get their own class, every other code a {@link DaemonException} with that code. A code this
 * version does not know becomes `daemon_error`, keeping the original in `details.remoteCode`.
 */
export function daemonExceptionFromSerialized(
  error: SerializedError,
  context: { prefix?: string; details?: Record<string, unknown> } = {},
): DaemonException {
  const message = context.prefix ? `${context.prefix}${error.message}` : error.message;
  const details: Record<string, unknown> = { ...context.details, ...error.details };
  if (!isErrorCode(error.code)) {
    details.remoteCode = error.code;
    return new DaemonException(message, { code: ErrorCodes.daemonError, details });
  }
  switch (error.code) {
    case ErrorCodes.timeout:
      return new DaemonTimeoutException(message, { details });
    case ErrorCodes.notRunning:
      return new DaemonNotRunningException(message, { details });
    case ErrorCodes.stalePid:
      return new DaemonStalePidException(message, { details });
    case ErrorCodes.busy:
      return new DaemonBusyException(message, { details });
    default:
      return new DaemonException(message, { code: error.code, details });
  }
}
