/** One step of the store's schema history. Steps are applied in order, each in a transaction. */
export interface StoreMigration {
  /** Schema version after this step (1, 2, ...). */
  version: number;
  description: string;
  sql: string;
}

const TERMINAL = "('finished', 'excepted', 'killed')";

/**
 * Every schema version of the SQLite store, oldest first. Never edit a released step: add one.
 * Times are integers (milliseconds since the Unix epoch); JSON columns are TEXT.
 */
export const STORE_MIGRATIONS: readonly StoreMigration[] = [
  {
    version: 1,
    description: 'processes, control intents, reports, reconciler leader lease',
    sql: `
      CREATE TABLE processes (
        pk INTEGER PRIMARY KEY AUTOINCREMENT,
        uuid TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        state TEXT NOT NULL,
        paused INTEGER NOT NULL DEFAULT 0,
        inputs TEXT NOT NULL,
        outputs TEXT,
        exit_status INTEGER,
        exit_message TEXT,
        exception TEXT,
        process_status TEXT,
        checkpoint TEXT,
        parent_pk INTEGER,
        spawn_key TEXT,
        owner TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        owner_losses INTEGER NOT NULL DEFAULT 0,
        lease_expires_at INTEGER,
        dispatched_at INTEGER,
        runnable INTEGER NOT NULL DEFAULT 1,
        time_limit REAL,
        created_at INTEGER NOT NULL,
        modified_at INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        process_group TEXT
      );
      CREATE UNIQUE INDEX processes_spawn ON processes (parent_pk, spawn_key)
        WHERE spawn_key IS NOT NULL;
      CREATE INDEX processes_parent ON processes (parent_pk) WHERE parent_pk IS NOT NULL;
      CREATE INDEX processes_state ON processes (state, pk);
      CREATE INDEX processes_active ON processes (pk) WHERE state NOT IN ${TERMINAL};
      CREATE INDEX processes_finished ON processes (finished_at) WHERE finished_at IS NOT NULL;

      CREATE TABLE control_intents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pk INTEGER NOT NULL,
        intent TEXT NOT NULL,
        message TEXT,
        force INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
      );
      CREATE INDEX control_intents_pk ON control_intents (pk);

      CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        pk INTEGER NOT NULL,
        time INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
      );
      CREATE INDEX reports_pk ON reports (pk);

      CREATE TABLE leader_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        owner TEXT NOT NULL,
        lease_expires_at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 2,
    description: 'index for counts by state and type (dashboards, metrics)',
    sql: `
      CREATE INDEX processes_state_type ON processes (state, type, paused);
    `,
  },
  {
    version: 3,
    description: 'worker registry: host, pid, start, last heartbeat, slots of every worker',
    sql: `
      CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        slots_used INTEGER NOT NULL,
        slots_total INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        last_heartbeat_at INTEGER NOT NULL
      );
      CREATE INDEX workers_host ON workers (hostname, started_at);
    `,
  },
];

/** Schema version this code writes and reads. */
export const STORE_SCHEMA_VERSION = STORE_MIGRATIONS[STORE_MIGRATIONS.length - 1]!.version;
