import type { StoreMigration } from './store-migrations.js';

const TERMINAL = "('finished', 'excepted', 'killed')";

/**
 * Every schema version of the PostgreSQL store, oldest first. Never edit a released step: add one.
 * Times are `bigint` milliseconds since the Unix epoch, read from the database's clock, as in the
 * SQLite store; JSON columns are `jsonb`.
 */
export const POSTGRES_MIGRATIONS: readonly StoreMigration[] = [
  {
    version: 1,
    description: 'processes, control intents, reports, reconciler leader lease',
    sql: `
      CREATE TABLE processes (
        pk BIGSERIAL PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        state TEXT NOT NULL,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        inputs JSONB NOT NULL,
        outputs JSONB,
        exit_status INTEGER,
        exit_message TEXT,
        exception TEXT,
        process_status TEXT,
        checkpoint JSONB,
        parent_pk BIGINT,
        spawn_key TEXT,
        owner TEXT,
        epoch INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        owner_losses INTEGER NOT NULL DEFAULT 0,
        lease_expires_at BIGINT,
        dispatched_at BIGINT,
        runnable BOOLEAN NOT NULL DEFAULT TRUE,
        time_limit DOUBLE PRECISION,
        created_at BIGINT NOT NULL,
        modified_at BIGINT NOT NULL,
        started_at BIGINT,
        finished_at BIGINT,
        process_group JSONB
      );
      CREATE UNIQUE INDEX processes_spawn ON processes (parent_pk, spawn_key)
        WHERE spawn_key IS NOT NULL;
      CREATE INDEX processes_parent ON processes (parent_pk) WHERE parent_pk IS NOT NULL;
      CREATE INDEX processes_state ON processes (state, pk);
      CREATE INDEX processes_active ON processes (pk) WHERE state NOT IN ${TERMINAL};
      CREATE INDEX processes_finished ON processes (finished_at) WHERE finished_at IS NOT NULL;
      CREATE INDEX processes_owner ON processes (owner) WHERE owner IS NOT NULL;
      -- The dashboard's counts by state and type, and its cheap change check (changeToken).
      CREATE INDEX processes_state_type ON processes (state, type, paused);
      CREATE INDEX processes_modified ON processes (modified_at);

      CREATE TABLE control_intents (
        id BIGSERIAL PRIMARY KEY,
        pk BIGINT NOT NULL,
        intent TEXT NOT NULL,
        message TEXT,
        force BOOLEAN NOT NULL DEFAULT FALSE,
        created_at BIGINT NOT NULL
      );
      CREATE INDEX control_intents_pk ON control_intents (pk);

      CREATE TABLE reports (
        id BIGSERIAL PRIMARY KEY,
        pk BIGINT NOT NULL,
        time BIGINT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
      );
      CREATE INDEX reports_pk ON reports (pk);

      -- One row from the start, so that electing a leader always locks an existing row.
      CREATE TABLE leader_lease (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        owner TEXT NOT NULL,
        lease_expires_at BIGINT NOT NULL
      );
      INSERT INTO leader_lease (id, owner, lease_expires_at) VALUES (1, '', 0);
    `,
  },
  {
    version: 2,
    description: 'worker registry: host, pid, start, last heartbeat, slots of every worker',
    sql: `
      CREATE TABLE workers (
        worker_id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL,
        pid INTEGER NOT NULL,
        slots_used INTEGER NOT NULL,
        slots_total INTEGER NOT NULL,
        started_at BIGINT NOT NULL,
        last_heartbeat_at BIGINT NOT NULL
      );
      CREATE INDEX workers_host ON workers (hostname, started_at);
    `,
  },
];

/** Schema version of the PostgreSQL store this code writes and reads. */
export const POSTGRES_SCHEMA_VERSION = POSTGRES_MIGRATIONS[POSTGRES_MIGRATIONS.length - 1]!.version;
