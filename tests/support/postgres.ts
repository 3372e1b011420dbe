import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The test server: PostgreSQL 15 on 127.0.0.1:5432 with trust authentication. */
export const PG_ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' };

/**
 * Prefix of every database and role a test run creates: `aiidat_<tag>_`, where the tag is the run
 * id's last 16 letters and digits. `scripts/run-tests.mjs` drops what is left with this prefix.
 */
export function runDatabasePrefix(runId?: string): string {
  return `aiidat_${runTag(16, runId)}_`;
}

/**
 * The last `length` letters and digits of the run id (lower case), for names of things a run
 * makes outside its processes (databases, roles, network namespaces).
 */
export function runTag(length: number, runId = process.env.AIIDA_TEST_RUN_ID ?? 'norun'): string {
  return runId
    .replace(/[^a-zA-Z0-9]/g, '')
    .toLowerCase()
    .slice(-length);
}

/** A throwaway database with a login role of its own, as a `core.psql` profile needs. */
export interface TestDatabase {
  hostname: string;
  port: number;
  username: string;
  password: string;
  database: string;
  /** The `storage` of a `core.psql` profile on this database. */
  storage: {
    backend: 'core.psql';
    config: {
      database_hostname: string;
      database_port: number;
      database_username: string;
      database_password: string;
      database_name: string;
    };
  };
  /** Runs SQL as the superuser inside this database. */
  admin(sql: string, params?: unknown[]): Promise<pg.QueryResult>;
  /**
   * A second login role, `<username>_<suffix>`, member of the owner role (it may do all the owner
   * may): a client that logs in with it is told apart by `session_user`. Dropped by `drop()`.
   */
  memberRole(suffix: string): Promise<{ username: string; password: string }>;
  /** Drops the database (closing its connections), its role and its member roles. */
  drop(): Promise<void>;
}

async function asAdmin<T>(database: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...PG_ADMIN, database });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** Creates a database and its owner role, both named with the run's prefix. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `${runDatabasePrefix()}${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const members: string[] = [];
  await asAdmin('postgres', async (c) => {
    await c.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}'`);
    await c.query(`CREATE DATABASE ${name} OWNER ${name}`);
  });
  return {
    hostname: PG_ADMIN.host,
    port: PG_ADMIN.port,
    username: name,
    password,
    database: name,
    storage: {
      backend: 'core.psql',
      config: {
        database_hostname: PG_ADMIN.host,
        database_port: PG_ADMIN.port,
        database_username: name,
        database_password: password,
        database_name: name,
      },
    },
    admin: (sql, params) => asAdmin(name, (c) => c.query(sql, params)),
    memberRole: async (suffix) => {
      const username = `${name}_${suffix.replace(/[^a-z0-9]/g, '')}`;
      const memberPassword = randomBytes(12).toString('hex');
      await asAdmin('postgres', async (c) => {
        await c.query(`CREATE ROLE ${username} LOGIN PASSWORD '${memberPassword}' IN ROLE ${name}`);
      });
      members.push(username);
      return { username, password: memberPassword };
    },
    drop: async () => {
      await dropDatabase(name);
      await asAdmin('postgres', async (c) => {
        for (const member of members) await c.query(`DROP ROLE IF EXISTS ${member}`);
      });
    },
  };
}

/** Drops a database (forcing its connections closed) and the role of the same name. */
export async function dropDatabase(name: string): Promise<void> {
  await asAdmin('postgres', async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await c.query(`DROP ROLE IF EXISTS ${name}`);
  });
}
