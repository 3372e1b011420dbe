import type { StorageSettings } from '@aiida/config';
import type { Clock } from './clock.js';
import { PostgresProcessStore } from './postgres-process-store.js';
import type { ProcessStore } from './process-store.js';
import { openStore } from './sqlite-process-store.js';

/** Options of {@link openProcessStore}. */
export interface OpenProcessStoreOptions {
  /** Time source of the SQLite store. PostgreSQL always uses the database's clock. */
  clock?: Clock;
  /** PostgreSQL: receives errors of idle pooled connections (a server restart); they are replaced. */
  onIdleError?: (error: Error) => void;
  /**
   * PostgreSQL: the lease (`daemon.lease_timeout`, seconds) of the processes this store's user
   * holds. The server ends a transaction of ours that waits on its client (a host cut off
   * mid-transaction) after a third of it (at most 5 s, at least 1 s), so the row locks such a
   * transaction holds never keep the other hosts' lease renewals waiting until their leases run out.
   */
  leaseTimeout?: number;
}

/** `idle_in_transaction_session_timeout` for holders of leases of `leaseTimeout` seconds. */
export function idleInTransactionTimeoutFor(leaseTimeout: number): number {
  return Math.min(5, Math.max(1, leaseTimeout / 3));
}

/**
 * Opens the store of a profile by its `storage.backend`: `core.sqlite` (the file at
 * `storage.config.filepath`, created if needed) or `core.psql` (the database of the profile's
 * `database_*` fields, which must exist; its schema is created or migrated). Throws
 * `EngineError('store_version_unsupported')` for a store written by a newer version, `store_error`
 * when it cannot be opened (the message names the store, never the password).
 */
export async function openProcessStore(
  profile: { storage: StorageSettings },
  options: OpenProcessStoreOptions = {},
): Promise<ProcessStore> {
  const storage = profile.storage;
  if (storage.backend === 'core.psql') {
    const c = storage.config;
    return PostgresProcessStore.open({
      connection: {
        hostname: c.database_hostname,
        port: c.database_port,
        username: c.database_username,
        password: c.database_password,
        database: c.database_name,
      },
      onIdleError: options.onIdleError,
      ...(options.leaseTimeout === undefined
        ? {}
        : { idleInTransactionTimeout: idleInTransactionTimeoutFor(options.leaseTimeout) }),
    });
  }
  return openStore({ storage }, { clock: options.clock });
}
