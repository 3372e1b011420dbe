import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { ErrorCodes } from '@aiida/ipc';
import { SupervisorError } from './errors.js';
import {
  checkLiveness,
  type ProcessIdentity,
  type ProcReader,
  readProcFile,
} from './process-identity.js';

/** The exclusive hold on a profile's daemon, taken by {@link acquireDaemonLock}. */
export interface DaemonLock {
  readonly path: string;
  readonly identity: ProcessIdentity;
  /** Removes the lock file if it is still ours. Idempotent. */
  release(): void;
}

/** Options of {@link acquireDaemonLock}. */
export interface AcquireDaemonLockOptions {
  /** Reader of `/proc` (injected in tests). */
  read?: ProcReader;
  /** Profile name, for the error message. */
  profileName?: string;
  /**
   * This host's name, recorded in the lock. A lock recorded by another host is never judged stale
   * here (this host can't check that host's pids): the start is refused.
   */
  hostname?: string;
}

/** A lock file's content: the holder's identity and, when recorded, its host. */
export type LockHolder = ProcessIdentity & { hostname?: string };

/** Parses a lock file's text; `undefined` when it is not a valid lock. */
export function parseLockFile(text: string): LockHolder | undefined {
  try {
    const value = JSON.parse(text) as Partial<ProcessIdentity>;
    if (
      Number.isSafeInteger(value.pid) &&
      (value.pid as number) > 0 &&
      Number.isSafeInteger(value.startTime) &&
      typeof value.bootId === 'string' &&
      value.bootId.length > 0
    ) {
      const hostname = (value as { hostname?: unknown }).hostname;
      return {
        pid: value.pid as number,
        startTime: value.startTime as number,
        bootId: value.bootId,
        ...(typeof hostname === 'string' ? { hostname } : {}),
      };
    }
  } catch {}
  return undefined;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {}
}

/** How long a start keeps trying while other starts are replacing a stale lock, in ms. */
const TAKEOVER_DEADLINE_MS = 5000;

/** Creates `path` holding `content` only if it does not exist (a complete temp file, linked). */
function linkExclusive(path: string, content: string, unique: string): boolean {
  const temp = `${path}.${unique}.new`;
  writeFileSync(temp, content, { mode: 0o600 });
  try {
    linkSync(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return false;
  } finally {
    unlinkQuietly(temp);
  }
}

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Takes the exclusive hold on a profile's daemon: `path` is created atomically (a complete temp
 * file hard-linked to it, which fails if it exists) holding `identity`. A lock whose holder is not
 * live (pid gone, pid reused, or another boot) is replaced, by one starter at a time: only the
 * holder of `<path>.takeover` (taken the same way) may remove a lock, and only after judging it
 * stale again. Starters never overwrite a lock, so a live one is never displaced, and of any
 * number of concurrent starts exactly one wins; the others get a {@link SupervisorError}
 * `already_running`. (A starter that dies while it holds `.takeover` leaves it to be removed by
 * the next one, since its holder is not live either.)
 */
export function acquireDaemonLock(
  path: string,
  identity: ProcessIdentity,
  options: AcquireDaemonLockOptions = {},
): DaemonLock {
  const read = options.read ?? readProcFile;
  const content = `${JSON.stringify(
    options.hostname === undefined ? identity : { ...identity, hostname: options.hostname },
  )}\n`;
  const unique = `${identity.pid}.${randomBytes(4).toString('hex')}`;
  const mutexPath = `${path}.takeover`;
  const deadline = Date.now() + TAKEOVER_DEADLINE_MS;
  const refuseIfLive = (text: string | undefined): void => {
    const holder = text === undefined ? undefined : parseLockFile(text);
    if (
      holder?.hostname !== undefined &&
      options.hostname !== undefined &&
      holder.hostname !== options.hostname
    ) {
      throw new SupervisorError(
        ErrorCodes.alreadyRunning,
        `the daemon lock ${path} is held by host '${holder.hostname}' (pid ${holder.pid}), not ` +
          `this host ('${options.hostname}'), which cannot check that host's processes; if that ` +
          'daemon is gone, remove the lock file',
        { details: { pid: holder.pid, hostname: holder.hostname } },
      );
    }
    if (holder !== undefined && checkLiveness(holder, read).live) {
      throw new SupervisorError(
        ErrorCodes.alreadyRunning,
        `the daemon${options.profileName ? ` of profile '${options.profileName}'` : ''} is already running (pid ${holder.pid}); stop it first`,
        { details: { pid: holder.pid } },
      );
    }
  };
  for (;;) {
    if (linkExclusive(path, content, unique)) return makeLock(path, identity);
    const heldText = readText(path);
    if (heldText === undefined) continue; // released meanwhile: try again
    refuseIfLive(heldText);
    // Stale: replace it while holding the takeover mutex.
    if (linkExclusive(mutexPath, content, unique)) {
      try {
        const current = readText(path);
        refuseIfLive(current);
        if (current !== undefined) unlinkQuietly(path);
        if (linkExclusive(path, content, unique)) return makeLock(path, identity);
      } finally {
        if (readText(mutexPath) === content) unlinkQuietly(mutexPath);
      }
    } else {
      const mutexHolder = parseLockFile(readText(mutexPath) ?? '');
      if (mutexHolder !== undefined && !checkLiveness(mutexHolder, read).live) {
        unlinkQuietly(mutexPath); // its taker died mid-takeover
      }
    }
    if (Date.now() > deadline) break;
    pause(5);
  }
  throw new SupervisorError(
    ErrorCodes.daemonError,
    `could not take the daemon lock ${path} within ${TAKEOVER_DEADLINE_MS / 1000} s: other starts kept replacing it; try again`,
  );
}

function makeLock(path: string, identity: ProcessIdentity): DaemonLock {
  let released = false;
  return {
    path,
    identity,
    release() {
      if (released) return;
      released = true;
      const holder = parseLockFile(readText(path) ?? '');
      if (holder?.pid === identity.pid && holder.startTime === identity.startTime) {
        unlinkQuietly(path);
      }
    },
  };
}

/**
 * Refuses to start beside a daemon of an earlier release, which kept its lock one folder up
 * (`daemon/<profile>/daemon.lock`, before each host got its own folder): it would not see our lock
 * nor we its, and two daemons of one profile would run on one host. A lock there whose holder is
 * gone (or that another host wrote) is left alone and does not stop the start.
 */
export function refuseEarlierLayoutDaemon(
  legacyLockPath: string,
  options: { profileName?: string; hostname?: string; read?: ProcReader } = {},
): void {
  const text = readText(legacyLockPath);
  const holder = text === undefined ? undefined : parseLockFile(text);
  if (holder === undefined) return;
  if (holder.hostname !== undefined && holder.hostname !== options.hostname) return;
  if (!checkLiveness(holder, options.read ?? readProcFile).live) return;
  throw new SupervisorError(
    ErrorCodes.alreadyRunning,
    `a daemon of an earlier release is running${options.profileName ? ` for profile '${options.profileName}'` : ''} ` +
      `(pid ${holder.pid}, lock ${legacyLockPath}); stop it with that release's \`aiida daemon stop\` ` +
      `(or \`kill -TERM ${holder.pid}\`), then start again`,
    { details: { pid: holder.pid } },
  );
}
