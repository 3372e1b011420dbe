import {
  CONTROL_REQUEST_TYPES,
  type ControlErrorResponse,
  type ControlOkResponse,
  type ControlRequest,
  controlRequestSchema,
  describeVersionMismatch,
  ErrorCodes,
  type NdjsonFrameError,
  PROTOCOL_VERSION,
  type SerializedError,
} from '@aiida/ipc';

/** A request line checked against the control schemas: the request, or the error to answer. */
export type ParsedControlRequest =
  | { ok: true; request: ControlRequest }
  | { ok: false; id: string | null; error: SerializedError };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function formatPath(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(request)' : path.map(String).join('.');
}

/**
 * Checks one decoded request. In this order: an object (else `invalid_request`); `v` equal to
 * {@link PROTOCOL_VERSION} (a number that differs gives `protocol_mismatch` naming both
 * versions); a known `type` (else `unknown_request`); then the request's shape (else
 * `invalid_request` naming the field). The request's `id` is echoed whenever it is a string.
 */
export function parseControlRequest(value: unknown): ParsedControlRequest {
  if (!isPlainObject(value)) {
    return fail(null, ErrorCodes.invalidRequest, 'a request must be a JSON object');
  }
  const id = typeof value.id === 'string' && value.id.length > 0 ? value.id.slice(0, 128) : null;
  if (value.v === undefined) {
    return fail(
      id,
      ErrorCodes.invalidRequest,
      `field 'v' is missing (expected ${PROTOCOL_VERSION})`,
    );
  }
  if (typeof value.v !== 'number') {
    return fail(id, ErrorCodes.invalidRequest, `field 'v' must be a number`);
  }
  if (value.v !== PROTOCOL_VERSION) {
    return fail(
      id,
      ErrorCodes.protocolMismatch,
      describeVersionMismatch(
        { role: 'supervisor', version: PROTOCOL_VERSION },
        { role: 'client', version: value.v },
      ),
      { supervisorVersion: PROTOCOL_VERSION, clientVersion: value.v },
    );
  }
  if (typeof value.type !== 'string') {
    return fail(id, ErrorCodes.invalidRequest, `field 'type' is missing or not a string`);
  }
  if (!(CONTROL_REQUEST_TYPES as readonly string[]).includes(value.type)) {
    return fail(
      id,
      ErrorCodes.unknownRequest,
      `unknown request type '${value.type.slice(0, 64)}'; expected one of ${CONTROL_REQUEST_TYPES.join(', ')}`,
    );
  }
  const parsed = controlRequestSchema.safeParse(value);
  if (parsed.success) return { ok: true, request: parsed.data };
  const problems = parsed.error.issues.slice(0, 5).map((issue) => {
    const keys = (issue as { keys?: string[] }).keys;
    if (issue.code === 'unrecognized_keys' && keys) {
      return `unexpected field${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${k}'`).join(', ')}`;
    }
    return `field '${formatPath(issue.path)}': ${issue.message}`;
  });
  return fail(
    id,
    ErrorCodes.invalidRequest,
    `invalid '${value.type}' request: ${problems.join('; ')}`,
  );
}

/** The error answered for a line the NDJSON decoder refused. */
export function frameErrorResponse(error: NdjsonFrameError): ControlErrorResponse {
  switch (error.kind) {
    case 'line_too_long':
      return errorResponse(null, { code: ErrorCodes.requestTooLarge, message: error.message });
    case 'incomplete_line':
      return errorResponse(null, {
        code: ErrorCodes.incompleteRequest,
        message: `the connection was half-closed in the middle of a request: ${error.message}`,
      });
    default:
      return errorResponse(null, { code: ErrorCodes.invalidRequest, message: error.message });
  }
}

/** A refusal in the control protocol's shape. */
export function errorResponse(id: string | null, error: SerializedError): ControlErrorResponse {
  return { v: PROTOCOL_VERSION, id, ok: false, error };
}

/** A success in the control protocol's shape. */
export function okResponse(id: string, result: unknown): ControlOkResponse {
  return { v: PROTOCOL_VERSION, id, ok: true, result };
}

function fail(
  id: string | null,
  code: string,
  message: string,
  details?: Record<string, unknown>,
): ParsedControlRequest {
  return { ok: false, id, error: details ? { code, message, details } : { code, message } };
}
