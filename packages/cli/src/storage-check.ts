import type { Profile } from '@aiida/config';
import { openStore } from '@aiida/engine';

/** Creates the profile's store (its folder and schema), so that a fresh profile works at once. */
export async function initialiseStorage(profile: Profile): Promise<void> {
  const store = openStore(profile);
  await store.close();
}

/** Opens the profile's store and describes it in one line (for `aiida status`). */
export async function checkStorage(profile: Profile): Promise<string> {
  const store = openStore(profile);
  try {
    return `SQLite store at ${store.location} (schema version ${store.schemaVersion})`;
  } finally {
    await store.close();
  }
}
