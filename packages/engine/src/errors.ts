import { type ErrorCode, ErrorCodes, type SerializedError } from '@aiida/ipc';

/** The codes an {@link EngineError} carries (a subset of `@aiida/ipc`'s {@link ErrorCodes}). */
export const EngineErrorCodes = {
  processNotFound: ErrorCodes.processNotFound,
  processActive: ErrorCodes.processActive,
  processTerminal: ErrorCodes.processTerminal,
  processFailed: ErrorCodes.processFailed,
  inputsInvalid: ErrorCodes.inputsInvalid,
  inputsTooLarge: ErrorCodes.inputsTooLarge,
  outputsInvalid: ErrorCodes.outputsInvalid,
  unknownProcessType: ErrorCodes.unknownProcessType,
  pluginImportFailed: ErrorCodes.pluginImportFailed,
  storeVersionUnsupported: ErrorCodes.storeVersionUnsupported,
  storeError: ErrorCodes.storeError,
  leaseLost: ErrorCodes.leaseLost,
  timeout: ErrorCodes.timeout,
  internal: ErrorCodes.internal,
} as const satisfies Record<string, ErrorCode>;

/** One of the codes of {@link EngineErrorCodes}. */
export type EngineErrorCode = (typeof EngineErrorCodes)[keyof typeof EngineErrorCodes];

const ENGINE_ERROR_BRAND = Symbol.for('@aiida/engine.EngineError');

/** What an {@link EngineError} may carry besides its code and message. */
export interface EngineErrorOptions {
  /** The underlying error. */
  cause?: unknown;
  /** Structured details (the offending input path, the pks involved, versions that met...). */
  details?: Record<string, unknown>;
}

/**
 * The one error class of `@aiida/engine`. Branch on {@link EngineError.code}; check with
 * {@link isEngineError}, which also works across duplicated copies of this package.
 */
export class EngineError extends Error {
  /** Stable code from `@aiida/ipc`'s `ErrorCodes`. */
  readonly code: EngineErrorCode;
  /** Structured details, safe to serialise. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: EngineErrorCode, message: string, options: EngineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineError';
    this.code = code;
    this.details = options.details;
    Object.defineProperty(this, ENGINE_ERROR_BRAND, { value: true });
  }

  /** The error as data, for a socket or an RPC reply. */
  toJSON(): SerializedError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** True for an {@link EngineError}, even one thrown by another copy of this package. */
export function isEngineError(value: unknown): value is EngineError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[ENGINE_ERROR_BRAND] === true
  );
}

/** Text of any thrown value, with its stack when there is one. */
export function describeError(error: unknown): { message: string; stack: string } {
  if (error instanceof Error) {
    return { message: error.message, stack: error.stack ?? `${error.name}: ${error.message}` };
  }
  const text = typeof error === 'string' ? error : safeJson(error);
  return { message: text, stack: text };
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}
