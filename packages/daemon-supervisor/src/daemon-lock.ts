import { randomBytes } from 'node:crypto';
import { linkSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
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
}

const MAX_ATTEMPTS = 20;

/** Parses a lock file's text; `undefined` when it is not a valid lock. */
export function parseLockFile(text: string): ProcessIdentity | undefined {
  try {
    const value = JSON.parse(text) as Partial<ProcessIdentity>;
    if (
      Number.isSafeInteger(value.pid) &&
      (value.pid as number) > 0 &&
      Number.isSafeInteger(value.startTime) &&
      typeof value.bootId === 'string' &&
      value.bootId.length > 0
    ) {
      return {
        pid: value.pid as number,
        startTime: value.startTime as number,
        bootId: value.bootId,
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

/**
 * Takes the exclusive hold on a profile's daemon: `path` is created atomically (a complete temp
 * file hard-linked to it, which fails if it exists) holding `identity`. A lock whose holder is not
 * live (pid gone, pid reused, or another boot) is taken over: it is renamed aside, checked to be
 * the stale one just read (else put back), and the link is tried again. So of two concurrent
 * starts exactly one wins; the other gets a {@link SupervisorError} `already_running`.
 */
export function acquireDaemonLock(
  path: string,
  identity: ProcessIdentity,
  options: AcquireDaemonLockOptions = {},
): DaemonLock {
  const read = options.read ?? readProcFile;
  const content = `${JSON.stringify(identity)}\n`;
  const unique = `${identity.pid}.${randomBytes(4).toString('hex')}`;
  const temp = `${path}.${unique}.new`;
  const aside = `${path}.${unique}.stale`;
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    writeFileSync(temp, content, { mode: 0o600 });
    try {
      linkSync(temp, path);
      return makeLock(path, identity);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkQuietly(temp);
    }
    const heldText = readText(path);
    if (heldText === undefined) continue; // released meanwhile: try again
    const holder = parseLockFile(heldText);
    if (holder !== undefined && checkLiveness(holder, read).live) {
      throw new SupervisorError(
        ErrorCodes.alreadyRunning,
        `the daemon${options.profileName ? ` of profile '${options.profileName}'` : ''} is already running (pid ${holder.pid}); stop it first`,
        { details: { pid: holder.pid } },
      );
    }
    // Stale: move it aside atomically, then make sure what we moved is the stale lock we judged.
    try {
      renameSync(path, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw error;
    }
    const movedText = readText(aside);
    if (movedText !== heldText) {
      // Another starter replaced the stale lock between our read and our rename: put theirs back.
      try {
        linkSync(aside, path);
      } catch {}
    }
    unlinkQuietly(aside);
  }
  throw new SupervisorError(
    ErrorCodes.daemonError,
    `could not take the daemon lock ${path} after ${MAX_ATTEMPTS} attempts`,
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
