/**
 * @aiida/cli: the `aiida` command line (the `verdi` of this project). Most users run the `aiida`
 * bin; these exports let a program embed the command line or reuse its exit codes.
 */

export {
  CliError,
  describeError,
  type ErrorReport,
  type ExitCode,
  ExitCodes,
  isCliError,
} from './errors.js';
export { createProgram, main } from './program.js';
export { CLI_VERSION } from './version.js';
