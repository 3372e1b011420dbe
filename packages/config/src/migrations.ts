import { CONFIG_VERSION } from './config-schema.js';

/**
 * One step of the config file's migrations: turns the parsed JSON of version `from` into that
 * of version `from + 1`. It gets a private copy and may change it in place.
 */
export interface ConfigMigration {
  /** Version the step reads. */
  from: number;
  /** What the step changes, for humans. */
  description: string;
  /** Returns the data at version `from + 1` (its `CONFIG_VERSION` is set by the caller). */
  migrate(data: Record<string, unknown>): Record<string, unknown>;
}

/**
 * Every migration, in order. Version 1 is the first version of this port, so the list is empty;
 * a future version N + 1 adds `{ from: N, description, migrate }` here and raises
 * {@link CONFIG_VERSION}.
 */
export const CONFIG_MIGRATIONS: readonly ConfigMigration[] = Object.freeze([]);

/** What {@link migrateConfigData} found. */
export type MigrationOutcome =
  | { kind: 'ok'; data: Record<string, unknown>; fromVersion: number }
  | { kind: 'too_new'; fileVersion: number; oldestCompatible: number }
  | { kind: 'no_path'; fileVersion: number };

/**
 * Brings parsed config JSON up to `targetVersion` in memory. Data whose version can't be read
 * (not an object, no `CONFIG_VERSION`) is returned unchanged for the schema to report.
 */
export function migrateConfigData(
  raw: unknown,
  migrations: readonly ConfigMigration[] = CONFIG_MIGRATIONS,
  targetVersion: number = CONFIG_VERSION,
): MigrationOutcome {
  const version = readVersion(raw);
  if (version === undefined) {
    return { kind: 'ok', data: raw as Record<string, unknown>, fromVersion: targetVersion };
  }
  if (version.current > targetVersion) {
    return { kind: 'too_new', fileVersion: version.current, oldestCompatible: version.oldest };
  }
  let data = structuredClone(raw as Record<string, unknown>);
  for (let at = version.current; at < targetVersion; at++) {
    const step = migrations.find((m) => m.from === at);
    if (step === undefined) return { kind: 'no_path', fileVersion: version.current };
    data = step.migrate(data);
    data.CONFIG_VERSION = {
      CURRENT: at + 1,
      OLDEST_COMPATIBLE: Math.min(version.oldest, at + 1),
    };
  }
  return { kind: 'ok', data, fromVersion: version.current };
}

function readVersion(raw: unknown): { current: number; oldest: number } | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  const block = (raw as Record<string, unknown>).CONFIG_VERSION;
  if (typeof block !== 'object' || block === null) return undefined;
  const current = (block as Record<string, unknown>).CURRENT;
  const oldest = (block as Record<string, unknown>).OLDEST_COMPATIBLE;
  if (!Number.isInteger(current) || (current as number) < 1) return undefined;
  return {
    current: current as number,
    oldest: Number.isInteger(oldest) ? (oldest as number) : (current as number),
  };
}
