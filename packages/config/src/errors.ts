/**
 * Stable string codes of every {@link ConfigError}. `@aiida/ipc`'s `ErrorCodes` mirrors these
 * strings, so a config error sent over a socket keeps its meaning on the other side.
 */
export const ConfigErrorCodes = {
  /** The config file is not valid JSON, or a value in it has the wrong type or an unknown key. */
  configInvalid: 'config_invalid',
  /** The config file exists but can't be read (permissions, a folder in its place, ...). */
  configUnreadable: 'config_unreadable',
  /** The config file can't be written (permissions, disk full, ...). */
  configUnwritable: 'config_unwritable',
  /** Another process held the config file's write lock for too long. */
  configLocked: 'config_locked',
  /** The config file was written by a newer, incompatible version of this package. */
  configVersionUnsupported: 'config_version_unsupported',
  /** No profile of that name, or no profile given and no default set. */
  profileNotFound: 'profile_not_found',
  /** Python AiiDA's profile has no RabbitMQ broker whose settings could be imported. */
  profileWithoutBroker: 'profile_without_broker',
  /** A profile of that name already exists. */
  profileExists: 'profile_exists',
  /** The profile name is not a safe file name. */
  profileNameInvalid: 'profile_name_invalid',
  /** No option of that name. */
  optionUnknown: 'option_unknown',
  /** The value doesn't fit the option's type, or breaks a rule between options. */
  optionInvalid: 'option_invalid',
} as const;

/** One of the codes of {@link ConfigErrorCodes}. */
export type ConfigErrorCode = (typeof ConfigErrorCodes)[keyof typeof ConfigErrorCodes];

const CONFIG_ERROR_BRAND = Symbol.for('@aiida/config.ConfigError');

/** Details a {@link ConfigError} may carry besides its message. */
export interface ConfigErrorDetails {
  /** The underlying error, kept for debugging. */
  cause?: unknown;
  /** The config file involved, if any. */
  filePath?: string;
  /** JSON paths of the offending values inside the config file, if any. */
  jsonPaths?: string[];
}

/**
 * The one error class of `@aiida/config`. Branch on {@link ConfigError.code}; check with
 * {@link isConfigError}, which also works across duplicated copies of this package.
 */
export class ConfigError extends Error {
  /** Stable code; see {@link ConfigErrorCodes}. */
  readonly code: ConfigErrorCode;
  /** The config file involved, if any. */
  readonly filePath: string | undefined;
  /** JSON paths of the offending values inside the config file (e.g. `profiles.foo.options`). */
  readonly jsonPaths: string[];

  constructor(code: ConfigErrorCode, message: string, details: ConfigErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'ConfigError';
    this.code = code;
    this.filePath = details.filePath;
    this.jsonPaths = details.jsonPaths ?? [];
    Object.defineProperty(this, CONFIG_ERROR_BRAND, { value: true });
  }

  /** `instanceof` that also recognises errors from another copy of this package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isConfigError(value);
  }
}

/** True when `value` is a {@link ConfigError}, from this or any other copy of the package. */
export function isConfigError(value: unknown): value is ConfigError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[CONFIG_ERROR_BRAND] === true
  );
}
