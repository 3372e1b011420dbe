import { readFileSync } from 'node:fs';
import { getAiidaConfigFilePath } from './paths.js';

/**
 * The profile names in `<config folder>/config.json` when that file was written by an earlier
 * version of this package (before our file became `aiida-ts.json`): `CONFIG_VERSION` 1 and every
 * profile with our `plugin_base_dir`. Undefined for anything else, AiiDA's own file included.
 * Only reads the file.
 */
export function findLegacyProfiles(aiidaPath: string): string[] | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(getAiidaConfigFilePath(aiidaPath), 'utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(raw) || !isRecord(raw.CONFIG_VERSION) || raw.CONFIG_VERSION.CURRENT !== 1) {
    return undefined;
  }
  const profiles = isRecord(raw.profiles) ? raw.profiles : {};
  const names = Object.keys(profiles).sort();
  if (names.length === 0) return undefined;
  const ours = names.every((name) => {
    const profile = profiles[name];
    return isRecord(profile) && typeof profile.plugin_base_dir === 'string';
  });
  return ours ? names : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
