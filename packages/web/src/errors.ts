import { type ErrorCode, ErrorCodes, type SerializedError } from '@aiida/ipc';

/** The codes a {@link WebError} carries (a subset of `@aiida/ipc`'s {@link ErrorCodes}). */
export const WebErrorCodes = {
  badRequest: ErrorCodes.webBadRequest,
  unauthorized: ErrorCodes.webUnauthorized,
  forbidden: ErrorCodes.webForbidden,
  notFound: ErrorCodes.webNotFound,
  methodNotAllowed: ErrorCodes.webMethodNotAllowed,
  insecureBind: ErrorCodes.webInsecureBind,
  listenFailed: ErrorCodes.webListenFailed,
} as const satisfies Record<string, ErrorCode>;

/** One of the codes of {@link WebErrorCodes}. */
export type WebErrorCode = (typeof WebErrorCodes)[keyof typeof WebErrorCodes];

const HTTP_STATUS: Record<WebErrorCode, number> = {
  web_bad_request: 400,
  web_unauthorized: 401,
  web_forbidden: 403,
  web_not_found: 404,
  web_method_not_allowed: 405,
  web_insecure_bind: 500,
  web_listen_failed: 500,
};

const WEB_ERROR_BRAND = Symbol.for('@aiida/web.WebError');

/**
 * The one error class of `@aiida/web`: a refused request (its {@link WebError.status} is the HTTP
 * status sent) or a server that cannot start. Check with {@link isWebError}.
 */
export class WebError extends Error {
  readonly code: WebErrorCode;
  /** HTTP status of the answer. */
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: WebErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'WebError';
    this.code = code;
    this.status = HTTP_STATUS[code];
    this.details = options.details;
    Object.defineProperty(this, WEB_ERROR_BRAND, { value: true });
  }

  /** The error as data, as the API sends it. */
  toJSON(): SerializedError {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

/** True for a {@link WebError}, even one thrown by another copy of this package. */
export function isWebError(value: unknown): value is WebError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[WEB_ERROR_BRAND] === true
  );
}
