/**
 * Every error code that crosses a process boundary, as data. Each package's error classes carry one
 * of these in `code`, so an error sent over a socket or the broker becomes the same class again on
 * the other side.
 */
export const ErrorCodes = {
  // control socket
  invalidRequest: 'invalid_request',
  unknownRequest: 'unknown_request',
  requestTooLarge: 'request_too_large',
  incompleteRequest: 'incomplete_request',
  protocolMismatch: 'protocol_mismatch',
  /** Every connection slot of the control socket is taken; try again shortly. */
  busy: 'busy',
  internal: 'internal',
  // daemon
  daemonError: 'daemon_error',
  timeout: 'timeout',
  notRunning: 'not_running',
  stalePid: 'stale_pid',
  alreadyRunning: 'already_running',
  workerFailed: 'worker_failed',
  /** More workers than the option `daemon.max_workers` allows were asked for. */
  tooManyWorkers: 'too_many_workers',
  shuttingDown: 'shutting_down',
  unsupportedPlatform: 'unsupported_platform',
  // config
  configInvalid: 'config_invalid',
  configUnreadable: 'config_unreadable',
  configUnwritable: 'config_unwritable',
  configLocked: 'config_locked',
  configVersionUnsupported: 'config_version_unsupported',
  profileNotFound: 'profile_not_found',
  profileWithoutBroker: 'profile_without_broker',
  profileExists: 'profile_exists',
  profileNameInvalid: 'profile_name_invalid',
  optionUnknown: 'option_unknown',
  optionInvalid: 'option_invalid',
  // broker
  brokerUnreachable: 'broker_unreachable',
  brokerError: 'broker_error',
  publishFailed: 'publish_failed',
  messageInvalid: 'message_invalid',
  // engine
  processNotFound: 'process_not_found',
  processActive: 'process_active',
  processTerminal: 'process_terminal',
  processFailed: 'process_failed',
  inputsInvalid: 'inputs_invalid',
  /** A process's inputs (or a shell job's stdin) exceed the option `engine.max_input_bytes`. */
  inputsTooLarge: 'inputs_too_large',
  outputsInvalid: 'outputs_invalid',
  unknownProcessType: 'unknown_process_type',
  pluginImportFailed: 'plugin_import_failed',
  storeVersionUnsupported: 'store_version_unsupported',
  storeError: 'store_error',
  leaseLost: 'lease_lost',
  // web dashboard
  webBadRequest: 'web_bad_request',
  webUnauthorized: 'web_unauthorized',
  webForbidden: 'web_forbidden',
  webNotFound: 'web_not_found',
  webMethodNotAllowed: 'web_method_not_allowed',
  webInsecureBind: 'web_insecure_bind',
  webListenFailed: 'web_listen_failed',
} as const;

/** One of the stable string codes of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

const knownCodes: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

/** True when `code` is one of {@link ErrorCodes}. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && knownCodes.has(code);
}
