// Test helpers of this package. They mirror tests/support (root) but live here so that
// `pnpm typecheck` of this package, whose rootDir is the package, covers its tests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProfile, type Profile } from '@aiida/config';

/** A throwaway AIIDA_PATH with one profile of its own, hence its own broker prefix. */
export interface TempProfile {
  aiidaPath: string;
  profile: Profile;
  /** Removes the folder. */
  remove(): void;
}

/** Creates a temporary AIIDA_PATH and a uniquely named profile in it. */
export function createTempProfile(
  name: string,
  broker: Partial<Profile['broker']['config']> = {},
): TempProfile {
  const aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-broker-test-'));
  const profile = createProfile(
    { name: `${name}-${process.pid}`, broker, options: { 'broker.task_timeout': 10 } },
    { aiidaPath },
  );
  return { aiidaPath, profile, remove: () => rmSync(aiidaPath, { recursive: true, force: true }) };
}

/**
 * Polls `probe` until it returns something other than `undefined`/`false`; on timeout fails with
 * what was awaited and the last value or error seen. Never a fixed sleep.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  options: { timeout?: number; interval?: number; what?: string } = {},
): Promise<Exclude<T, false | undefined>> {
  const timeout = options.timeout ?? 20;
  const deadline = Date.now() + timeout * 1000;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as Exclude<T, false | undefined>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? `${last.name}: ${last.message}` : JSON.stringify(last);
      throw new Error(
        `timed out after ${timeout} s waiting for ${options.what ?? 'a condition'}; last seen: ${seen}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, (options.interval ?? 0.05) * 1000));
  }
}

/** A logger that keeps its lines, for assertions. */
export function memoryLogger(): {
  lines: string[];
  info(m: string): void;
  warn(m: string): void;
  error(m: string): void;
} {
  const lines: string[] = [];
  return {
    lines,
    info: (m) => lines.push(`info: ${m}`),
    warn: (m) => lines.push(`warn: ${m}`),
    error: (m) => lines.push(`error: ${m}`),
  };
}
