// Test helpers of this package; the generic ones (waitFor) come from tests/support at the root.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProfile, type Profile } from '@aiida/config';

export { waitFor } from '../../../tests/support/wait-for.js';

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
