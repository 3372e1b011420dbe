import type { Profile } from '@aiida/config';

/** Creates the profile's store (its folder or schema), so that a fresh profile works at once. */
export async function initialiseStorage(profile: Profile): Promise<void> {
  const store = await openStore(profile);
  await store.close();
}

/** Opens the profile's store and describes it in one line (for `aiida status`): backend, server and schema version. */
export async function checkStorage(profile: Profile): Promise<string> {
  const store = await openStore(profile);
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

/** The engine (and with it the store's driver) is imported only by the commands that open a store. */
async function openStore(profile: Profile) {
  const { openProcessStore } = await import('@aiida/engine');
  return openProcessStore(profile);
}
