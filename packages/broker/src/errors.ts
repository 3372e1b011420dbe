import { ErrorCodes } from '@aiida/ipc';

/**
 * Codes a {@link BrokerError} carries. Most come from `@aiida/ipc` {@link ErrorCodes}; `no_holder`
 * is the broker's own: an RPC for a process that no worker holds (nothing is bound to `rpc.<pk>`).
 */
export const BrokerErrorCodes = {
  /** The broker could not be reached before the first successful connection. */
  brokerUnreachable: ErrorCodes.brokerUnreachable,
  /** Any other broker failure (a channel error, a topology mismatch, a closed broker). */
  brokerError: ErrorCodes.brokerError,
  /** A task was not confirmed by the broker (nack, unroutable, connection lost, deadline). */
  publishFailed: ErrorCodes.publishFailed,
  /** A deadline passed (an RPC that got no answer in time). */
  timeout: ErrorCodes.timeout,
  /** A message failed its schema. */
  messageInvalid: ErrorCodes.messageInvalid,
  /** An RPC was returned unroutable: no worker holds the process. */
  noHolder: 'no_holder',
} as const;

/** One of the codes of {@link BrokerErrorCodes}. */
export type BrokerErrorCode = (typeof BrokerErrorCodes)[keyof typeof BrokerErrorCodes];

const brand = Symbol.for('@aiida/broker.BrokerError');

/**
 * The error every `@aiida/broker` API rejects with. `code` is stable data a caller branches on;
 * `cause` keeps the underlying `rabbitmq-client` or socket error; `details` carries structured
 * facts (e.g. the pks a batch publish confirmed and failed).
 */
export class BrokerError extends Error {
  /** Stable code, see {@link BrokerErrorCodes}. */
  readonly code: BrokerErrorCode;
  /** Structured facts about the failure, when there are any. */
  readonly details: Record<string, unknown> | undefined;
  readonly [brand] = true;

  constructor(
    code: BrokerErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BrokerError';
    this.code = code;
    this.details = options.details;
  }
}

/**
 * True when `value` is a {@link BrokerError}, also when it comes from another copy of this package
 * (the check uses a global symbol brand, not `instanceof` alone).
 */
export function isBrokerError(value: unknown): value is BrokerError {
  return (
    value instanceof BrokerError ||
    (typeof value === 'object' &&
      value !== null &&
      (value as Record<symbol, unknown>)[brand] === true)
  );
}

/**
 * The text of an error for a message: its message, its code, and for an `AggregateError` (Node's
 * "happy eyeballs" connect to a name with several addresses) the messages of each error inside.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const parts: string[] = [];
  if (error.message) parts.push(error.message);
  const inner = (error as { errors?: unknown }).errors;
  if (Array.isArray(inner) && inner.length > 0) {
    const texts = inner.map((e) => (e instanceof Error ? e.message : String(e))).filter(Boolean);
    if (texts.length > 0) parts.push(texts.join('; '));
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && !parts.some((p) => p.includes(code))) parts.push(`(${code})`);
  if (parts.length === 0) parts.push(error.name);
  return parts.join(' ');
}
