/**
 * Exit codes of the `aiida` command. `notRunning` follows the LSB convention for `status` ("program
 * is not running"), as `verdi daemon status` does.
 */
export const ExitCodes = {
  ok: 0,
  /** Something failed. */
  failure: 1,
  /** The command line was wrong: unknown command or option, bad value, missing argument. */
  usage: 2,
  /** The daemon is not running (or its state file is stale). */
  notRunning: 3,
} as const;

/** One of {@link ExitCodes}. */
export type ExitCode = (typeof ExitCodes)[keyof typeof ExitCodes];

const CLI_ERROR_BRAND = Symbol.for('@aiida/cli.CliError');

/**
 * An error the command line reports itself: one line for `message`, an optional `hint` saying
 * what to do next, and the process's exit code.
 */
export class CliError extends Error {
  /** Stable code (the codes of `@aiida/ipc` where one fits, e.g. `not_running`). */
  readonly code: string;
  /** What the user can do next, shown as `Hint: ...`. */
  readonly hint: string | undefined;
  /** The exit code of the command. */
  readonly exitCode: ExitCode;

  constructor(
    code: string,
    message: string,
    options: { hint?: string; exitCode?: ExitCode; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.code = code;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCodes.failure;
    Object.defineProperty(this, CLI_ERROR_BRAND, { value: true });
  }
}

/** True when `value` is a {@link CliError}, also from another copy of this package. */
export function isCliError(value: unknown): value is CliError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[CLI_ERROR_BRAND] === true
  );
}

/** What the command line prints for an error, and how it exits. */
export interface ErrorReport {
  message: string;
  hint: string | undefined;
  exitCode: ExitCode;
}

/** Hints and exit codes for the stable error codes the packages throw with. */
const HINTS: Record<string, { hint: string; exitCode?: ExitCode }> = {
  profile_not_found: {
    hint: 'List the profiles with `aiida profile list`, or create one with `aiida presto`.',
  },
  profile_without_broker: {
    hint: "Give AiiDA's profile a RabbitMQ first, or create one of ours with `aiida presto`.",
  },
  profile_exists: { hint: 'Choose another name with `-p NAME`, or see `aiida profile list`.' },
  profile_name_invalid: {
    hint: 'Use letters, digits, `.`, `_` and `-` only.',
    exitCode: ExitCodes.usage,
  },
  option_unknown: {
    hint: 'See `aiida config list` for every option.',
    exitCode: ExitCodes.usage,
  },
  option_invalid: {
    hint: 'See `aiida config list` for each option with its type, unit and default.',
    exitCode: ExitCodes.usage,
  },
  config_invalid: { hint: 'Fix the file named above, or move it away to start afresh.' },
  config_unreadable: { hint: 'Check the permissions of the file named above.' },
  config_version_unsupported: { hint: 'Use the version of aiida that wrote this config file.' },
  not_running: {
    hint: 'Start it with `aiida daemon start`.',
    exitCode: ExitCodes.notRunning,
  },
  stale_pid: {
    hint: 'The daemon died without cleaning up; `aiida daemon start` starts a new one.',
    exitCode: ExitCodes.notRunning,
  },
  timeout: {
    hint: 'Raise the wait with `-t/--timeout SECONDS`, or look at `aiida daemon logshow`.',
  },
  already_running: {
    hint: 'See it with `aiida daemon status`; `aiida daemon restart` replaces its workers.',
  },
  worker_failed: { hint: 'See `aiida daemon logshow` for the workers’ logs.' },
  too_many_workers: {
    hint: 'See `aiida config get daemon.max_workers`; raise it with `aiida config set daemon.max_workers N` if this machine can take more.',
    exitCode: ExitCodes.usage,
  },
  busy: {
    hint: 'The daemon runs but other programs hold every connection of its control socket; try again shortly, and see `aiida daemon logshow` for the refused connections.',
  },
  protocol_mismatch: {
    hint: 'Stop the daemon with the aiida version that started it, then start it again.',
  },
  unsupported_platform: { hint: 'The daemon needs Linux (it reads /proc and the boot id).' },
  broker_unreachable: {
    hint: 'Is RabbitMQ running? Check the host and port of the profile (`aiida profile show`).',
  },
  broker_error: { hint: 'See `aiida status` for the broker.' },
  publish_failed: { hint: 'See `aiida status` for the broker.' },
  process_not_found: { hint: 'See `aiida process list -a` for the processes that exist.' },
  process_active: { hint: 'Kill it first with `aiida process kill PK`, or wait until it ends.' },
  process_terminal: { hint: 'It has already ended; see `aiida process show PK`.' },
  process_failed: { hint: 'See `aiida process report PK` and `aiida process show PK` for why.' },
  inputs_invalid: { hint: 'Give inputs as `-i key=value` (values parse as JSON).' },
  inputs_too_large: {
    hint: 'Pass large data as a file path instead, or raise the limit: `aiida config set engine.max_input_bytes BYTES`.',
  },
  unknown_process_type: {
    hint: 'Plugins add process types: `aiida config set engine.plugins \'["my-plugin"]\'`.',
  },

  plugin_import_failed: {
    hint: 'Check the option `engine.plugins` (`aiida config get engine.plugins`).',
  },
  store_version_unsupported: { hint: 'Use the version of aiida that wrote this store.' },
  store_error: { hint: 'See `aiida status` for the storage.' },
  web_insecure_bind: {
    hint: 'Bind to 127.0.0.1 (the default), or give an access token with `--token`.',
    exitCode: ExitCodes.usage,
  },
  web_listen_failed: { hint: 'Choose another port with `--port`, or stop what uses it.' },
};

/**
 * Turns anything thrown into what the command line prints: the error's own message (the packages
 * write messages that say what happened and to what), a hint chosen by its stable `code`, and an
 * exit code. Works on codes, not classes, so it needs no package's error class.
 */
export function describeError(error: unknown): ErrorReport {
  if (isCliError(error)) {
    return { message: error.message, hint: error.hint, exitCode: error.exitCode };
  }
  if (!(error instanceof Error)) {
    return { message: String(error), hint: undefined, exitCode: ExitCodes.failure };
  }
  const code = codeOf(error);
  const known = code === undefined ? undefined : HINTS[code];
  return {
    message: error.message || error.name,
    hint: known?.hint,
    exitCode: known?.exitCode ?? ExitCodes.failure,
  };
}

/** The stable code of an error from one of the packages, from `code` or, failing that, its name. */
export function codeOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code in HINTS) return code;
  const name = (error as { name?: unknown }).name;
  if (name === 'DaemonNotRunningException') return 'not_running';
  if (name === 'DaemonStalePidException') return 'stale_pid';
  if (name === 'DaemonTimeoutException') return 'timeout';
  return typeof code === 'string' ? code : undefined;
}
