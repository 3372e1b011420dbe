/**
 * @aiida/daemon-supervisor: the daemon of a profile. A detached supervisor (bin
 * `aiida-daemon-supervisor`, or {@link runSupervisor} in-process) that holds the profile's lock,
 * writes its state file, serves the control socket and spawns, revives, scales and stops the
 * workers. Also the read-only helpers a client needs to find and judge a daemon. This list is
 * the package's whole public API.
 */

export { type CrashBackoffOptions, crashBackoffDelay, QUICK_FAILURE_WINDOW } from './backoff.js';
export {
  chooseSocketPath,
  type DaemonStateReading,
  daemonLockPath,
  daemonStatePath,
  LOCK_FILE_NAME,
  MAX_SOCKET_PATH_BYTES,
  parseDaemonState,
  readDaemonState,
  SOCKET_FILE_NAME,
  type SocketLocation,
  STATE_FILE_NAME,
  STATE_FILE_VERSION,
} from './daemon-files.js';
export { assertLinux, isSupervisorError, SupervisorError } from './errors.js';
export {
  bootId,
  checkLiveness,
  type Liveness,
  type ProcessIdentity,
  type ProcReader,
  processStartTime,
} from './process-identity.js';
export { SUPERVISOR_EXEC_ARGV, WORKER_PROGRAM_ENV } from './program-env.js';
export { runSupervisor } from './run-supervisor.js';
export type { RunSupervisorOptions, Supervisor, SupervisorStartedInfo } from './supervisor.js';
