import type { Profile } from '@aiida/config';
import { openProcessStore } from '@aiida/engine';

/** Creates the profile's store (its folder or schema), so that a fresh profile works at once. */
export async function initialiseStorage(profile: Profile): Promise<void> {
  const store = await openProcessStore(profile);
  await store.close();
}

/** Opens the profile's store and describes it in one line (for `aiida status`): backend, server and schema version. */
export async function checkStorage(profile: Profile): Promise<string> {
  const store = await openProcessStore(profile);
  try {
    const what = store.backend === 'core.psql' ? 'PostgreSQL' : 'SQLite';
    return (
      `${store.backend} store at ${store.location} (${what} ${store.serverVersion}, ` +
      `schema version ${store.schemaVersion})`
    );
  } finally {
    await store.close();
  }
}
