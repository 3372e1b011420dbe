import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { getDaemonDir, getHostname, type ProfileLocation } from '@aiida/config';
import { type DaemonStateFile, daemonStateFileSchema, ErrorCodes } from '@aiida/ipc';
import { SupervisorError } from './errors.js';
import { checkLiveness, type ProcReader, readProcFile } from './process-identity.js';

/** Name of the state file in the profile's daemon folder. */
export const STATE_FILE_NAME = 'daemon.json';
/** Name of the lock file in the profile's daemon folder. */
export const LOCK_FILE_NAME = 'daemon.lock';
/** Name of the control socket in the profile's daemon folder (unless the path is too long). */
export const SOCKET_FILE_NAME = 'daemon.sock';
/** Format version of the state file written by this package. */
export const STATE_FILE_VERSION = 1;
/**
 * Longest unix socket path in bytes: `sun_path` is 108 bytes on Linux, one of them the
 * terminating NUL.
 */
export const MAX_SOCKET_PATH_BYTES = 107;

/** Path of the state file (`daemon.json`) of a profile's daemon. */
export function daemonStatePath(profile: ProfileLocation): string {
  return join(getDaemonDir(profile), STATE_FILE_NAME);
}

/** Path of the lock file (`daemon.lock`) of a profile's daemon. */
export function daemonLockPath(profile: ProfileLocation): string {
  return join(getDaemonDir(profile), LOCK_FILE_NAME);
}

/** A state file read from disk, and whether its process still runs. */
export type DaemonStateReading =
  | { live: true; state: DaemonStateFile; reason?: undefined; foreign?: undefined }
  /** `state` is undefined when the file exists but is not a valid state file. */
  | { live: false; state: DaemonStateFile | undefined; reason: string; foreign?: undefined }
  /**
   * Written by another host (its `hostname` is not this host's): this host can't check that
   * host's pids, so the file is neither live nor stale here and must never be removed from here.
   */
  | { live: false; state: DaemonStateFile; reason: string; foreign: true };

/**
 * Reads the state file of this host's daemon of a profile and checks it: live only while its pid
 * runs with the recorded start time and boot id. A file recorded by another host (`hostname`, e.g.
 * a folder copied between machines) is `foreign`: never judged stale here. Returns `undefined`
 * when there is no state file (no daemon). Never changes anything on disk.
 */
export function readDaemonState(
  profile: ProfileLocation,
  read: ProcReader = readProcFile,
  host: string = getHostname(),
): DaemonStateReading | undefined {
  const path = daemonStatePath(profile);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return {
      live: false,
      state: undefined,
      reason: `cannot read ${path}: ${(error as Error).message}`,
    };
  }
  const state = parseDaemonState(text);
  if (state === undefined) {
    return { live: false, state: undefined, reason: `${path} is not a valid daemon state file` };
  }
  if (state.hostname !== host) {
    return {
      live: false,
      state,
      foreign: true,
      reason:
        `${path} was written by host '${state.hostname}' (pid ${state.pid}), not by this host ` +
        `('${host}'), which cannot check that host's processes`,
    };
  }
  const liveness = checkLiveness(state, read);
  return liveness.live ? { live: true, state } : { live: false, state, reason: liveness.reason };
}

/** Parses the text of a state file; `undefined` when it is not one. */
export function parseDaemonState(text: string): DaemonStateFile | undefined {
  try {
    const parsed = daemonStateFileSchema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Writes `content` to `path` atomically: a temporary file in the same folder (mode 0600), flushed,
 * then renamed over `path`. Readers see the old file or the new one, never a part.
 */
export function writeFileAtomic(path: string, content: string, mode = 0o600): void {
  const temp = `${path}.${process.pid}.tmp`;
  const fd = openSync(temp, 'w', mode);
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/** Creates `dir` (and parents) if needed and makes it private (mode 0700). */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
}

/** Removes a file if it exists; other errors are ignored as well (best effort clean-up). */
export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {}
}

/** Where the control socket goes, and the private folder created for it when it is a fallback. */
export interface SocketLocation {
  path: string;
  /** The short private folder made for the socket, when the default path is too long. */
  fallbackDir?: string;
}

/**
 * Chooses the control socket path: `<daemonDir>/daemon.sock`, or, when that is longer than a unix
 * socket path may be (107 bytes), `<tmpRoot>/aiida-<uid>-<hash of daemonDir>/d.sock`.
 */
export function chooseSocketPath(
  daemonDir: string,
  env: { uid?: number; tmpRoot?: string } = {},
): SocketLocation {
  const preferred = join(daemonDir, SOCKET_FILE_NAME);
  if (Buffer.byteLength(preferred) <= MAX_SOCKET_PATH_BYTES) return { path: preferred };
  const uid = env.uid ?? process.getuid?.() ?? 0;
  const hash = createHash('sha256').update(daemonDir).digest('hex').slice(0, 16);
  const fallbackDir = join(env.tmpRoot ?? '/tmp', `aiida-${uid}-${hash}`);
  const path = join(fallbackDir, 'd.sock');
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SupervisorError(
      ErrorCodes.daemonError,
      `no usable control socket path: ${preferred} and ${path} are longer than ${MAX_SOCKET_PATH_BYTES} bytes`,
    );
  }
  return { path, fallbackDir };
}

/**
 * Creates the private fallback folder of the control socket (mode 0700) and checks that nobody
 * else owns it or can enter it: `/tmp` is shared.
 */
export function preparePrivateSocketDir(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  }
  const stat = lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid)) {
    throw new SupervisorError(
      ErrorCodes.daemonError,
      `${dir} (the control socket's folder) exists but is not a folder owned by uid ${uid}; remove it and start again`,
    );
  }
  if ((stat.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}
