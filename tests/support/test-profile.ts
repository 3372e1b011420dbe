import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createProfile,
  getDaemonLogDir,
  type ProcessControlBackend,
  type Profile,
  type PsqlStorageConfig,
} from '@aiida/config';

/** Short, safe timings for tests on a 2-core machine (see TESTING.md). */
export const TEST_OPTIONS: Record<string, unknown> = {
  'daemon.graceful_timeout': 3,
  'daemon.worker_heartbeat_interval': 0.5,
  'daemon.lease_timeout': 5,
  'daemon.timeout': 10,
};

/** A throwaway AIIDA_PATH with one profile of its own (hence its own broker prefix). */
export interface TestProfile {
  aiidaPath: string;
  profile: Profile;
  /** Prints the tail of the daemon's logs (for a failing test). */
  logTails(lines?: number): string;
  /** Removes the folder. Stop daemons first. */
  remove(): void;
}

/**
 * Creates a temporary AIIDA_PATH and a profile in it, with test timings and any `options` given.
 * Sets `process.env.AIIDA_PATH` so code that reads the environment finds it too.
 */
export function createTestProfile(
  init: {
    name?: string;
    options?: Record<string, unknown>;
    broker?: Partial<Profile['broker']['config']>;
    /** A `core.psql` store (see `createTestDatabase`); default: the profile's own SQLite file. */
    storage?: { backend: 'core.psql'; config: PsqlStorageConfig };
    /** `process_control.backend`. @default 'core.rabbitmq' */
    processControl?: ProcessControlBackend;
    /** The AIIDA_PATH to create the profile in. @default a new temporary folder */
    aiidaPath?: string;
  } = {},
): TestProfile {
  const aiidaPath = init.aiidaPath ?? mkdtempSync(join(tmpdir(), 'aiida-test-'));
  process.env.AIIDA_PATH = aiidaPath;
  const profile = createProfile(
    {
      name: init.name ?? 'test',
      options: { ...TEST_OPTIONS, ...init.options },
      broker: init.broker,
      storage: init.storage,
      processControl: init.processControl,
      pluginBaseDir: aiidaPath,
      setDefault: true,
    },
    { aiidaPath },
  );
  return {
    aiidaPath,
    profile,
    logTails: (lines = 30) => logTails(profile, lines),
    remove: () => rmSync(aiidaPath, { recursive: true, force: true }),
  };
}

/** The last lines of every log file of the profile's daemon, with headers. */
export function logTails(profile: Profile, lines = 30, hostname?: string): string {
  const dir = getDaemonLogDir(profile, hostname);
  if (!existsSync(dir)) return `(no log folder at ${dir})`;
  const out: string[] = [];
  for (const file of readdirSync(dir).sort()) {
    const text = readFileSync(join(dir, file), 'utf8').trimEnd().split('\n');
    out.push(`--- ${file} (last ${lines} lines) ---`, ...text.slice(-lines));
  }
  return out.join('\n');
}

/**
 * Runs `body`; when it fails, appends `logTails()` (the tails of the daemon's logs) to the error's
 * message, so a failing test shows what the daemon said.
 */
export async function withLogTails<T>(logTails: () => string, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (error instanceof Error) error.message = `${error.message}\n\n${logTails()}`;
    throw error;
  }
}

/** The SQLite file of a `core.sqlite` profile (throws for another backend). */
export function sqliteFilepath(profile: Profile): string {
  if (profile.storage.backend !== 'core.sqlite') {
    throw new Error(`profile '${profile.name}' keeps its processes in ${profile.storage.backend}`);
  }
  return profile.storage.config.filepath;
}
