import { type ErrorCode, ErrorCodes } from '@aiida/ipc';

const SUPERVISOR_ERROR_BRAND = Symbol.for('@aiida/daemon-supervisor.SupervisorError');

/**
 * The one error class of `@aiida/daemon-supervisor`. Branch on {@link SupervisorError.code} (a code
 * of `ErrorCodes` from `@aiida/ipc`, e.g. `already_running`, `worker_failed`,
 * `unsupported_platform`); check with {@link isSupervisorError}, which also recognises errors from
 * another copy of this package.
 */
export class SupervisorError extends Error {
  /** Stable code from `@aiida/ipc`'s `ErrorCodes`. */
  readonly code: ErrorCode;
  /** Structured details (e.g. the pid holding the lock). */
  readonly details: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SupervisorError';
    this.code = code;
    this.details = options.details;
    Object.defineProperty(this, SUPERVISOR_ERROR_BRAND, { value: true });
  }

  /** `instanceof` that also recognises errors from another copy of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isSupervisorError(value);
  }
}

/** True when `value` is a {@link SupervisorError}, from this or any other copy of the package. */
export function isSupervisorError(value: unknown): value is SupervisorError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[SUPERVISOR_ERROR_BRAND] === true
  );
}

/** The message of any thrown value. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Throws `unsupported_platform` anywhere but Linux (boot id and `/proc` are needed). */
export function assertLinux(platform: NodeJS.Platform = process.platform): void {
  if (platform !== 'linux') {
    throw new SupervisorError(
      ErrorCodes.unsupportedPlatform,
      `the AiiDA daemon supervisor runs on Linux only (it needs /proc and the boot id); this is ${platform}. ` +
        'Run the daemon on a Linux machine or in a Linux container.',
    );
  }
}
