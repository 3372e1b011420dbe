import { randomBytes } from 'node:crypto';
import type { PsqlStorageConfig } from '@aiida/config';
import type pg from 'pg';
import { CliError, ExitCodes } from './errors.js';

/** How to log in to PostgreSQL as a user that may create roles and databases. */
export interface PostgresAdmin {
  hostname: string;
  port: number;
  username: string;
  password?: string;
}

/** AiiDA's defaults for `--postgres-*`. */
export const POSTGRES_ADMIN_DEFAULTS = { hostname: 'localhost', port: 5432, username: 'postgres' };

function where(a: { hostname: string; port: number }): string {
  return `${a.hostname}:${a.port}`;
}

async function connect(
  login: { hostname: string; port: number; username: string; password?: string },
  database: string,
  timeout: number,
): Promise<pg.Client> {
  // Imported here: only the commands that set up or drop a PostgreSQL database need the driver.
  const { default: driver } = await import('pg');
  const client = new driver.Client({
    host: login.hostname,
    port: login.port,
    user: login.username,
    password: login.password,
    database,
    connectionTimeoutMillis: Math.round(timeout * 1000),
  });
  // A connection dropped while idle must not crash the command.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => undefined);
    throw new CliError(
      'storage_unreachable',
      `Cannot connect to PostgreSQL at ${where(login)} as '${login.username}' (database ` +
        `'${database}'): ${(error as Error).message}`,
      {
        hint:
          'Is PostgreSQL running there, and may this user log in? Give the server and a user ' +
          'that may create roles and databases with --postgres-hostname, --postgres-port, ' +
          '--postgres-username and --postgres-password.',
        cause: error,
      },
    );
  }
  return client;
}

/** A lower-case name fit for a role and a database: `aiida_<profile>_<6 hex>`. */
export function postgresNameFor(profileName: string): string {
  const base = profileName
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .slice(0, 40);
  return `aiida_${base}_${randomBytes(3).toString('hex')}`;
}

/**
 * Creates a role of its own (random password) and a database it owns, as AiiDA's `verdi presto
 * --use-postgres` does, logged in as `admin`. Returns the profile's storage fields. Fails with a
 * {@link CliError} that says what is missing: the server, the login, or the right to create roles
 * and databases. On failure nothing is left behind.
 */
export async function createPostgresDatabase(
  admin: PostgresAdmin,
  profileName: string,
  timeout: number,
): Promise<PsqlStorageConfig> {
  const name = postgresNameFor(profileName);
  const password = randomBytes(18).toString('base64url');
  const client = await connect(admin, 'postgres', timeout);
  let roleCreated = false;
  try {
    const role = client.escapeIdentifier(name);
    // DDL takes no parameters: names and the password go through the driver's escaping.
    await client.query(`CREATE ROLE ${role} LOGIN PASSWORD ${client.escapeLiteral(password)}`);
    roleCreated = true;
    await client.query(`CREATE DATABASE ${role} OWNER ${role} ENCODING 'UTF8'`);
  } catch (error) {
    if (roleCreated) {
      await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(name)}`).catch(() => {});
    }
    const code = (error as { code?: string }).code;
    const denied = code === '42501';
    throw new CliError(
      'storage_setup_failed',
      `Could not create the PostgreSQL ${roleCreated ? 'database' : 'role'} '${name}' at ` +
        `${where(admin)} as '${admin.username}': ${(error as Error).message}`,
      {
        hint: denied
          ? `The user '${admin.username}' may not create roles and databases: give one that may ` +
            '(CREATEROLE and CREATEDB, e.g. postgres) with --postgres-username/--postgres-password.'
          : 'Check the PostgreSQL server and the --postgres-* options.',
        cause: error,
      },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  return {
    database_hostname: admin.hostname,
    database_port: admin.port,
    database_username: name,
    database_password: password,
    database_name: name,
  };
}

/**
 * Drops the database of a `core.psql` profile, logged in as its own role (the owner). With
 * `admin`, also drops the role. Returns what was dropped, for the report.
 */
export async function dropPostgresDatabase(
  config: PsqlStorageConfig,
  timeout: number,
  admin?: PostgresAdmin,
): Promise<string[]> {
  const login = {
    hostname: config.database_hostname,
    port: config.database_port,
    username: config.database_username,
    password: config.database_password,
  };
  const dropped: string[] = [];
  const client = await connect(admin ?? login, 'postgres', timeout);
  try {
    await client.query(
      `DROP DATABASE IF EXISTS ${client.escapeIdentifier(config.database_name)} WITH (FORCE)`,
    );
    dropped.push(`database ${config.database_name}`);
    if (admin && config.database_username !== admin.username) {
      await client.query(
        `DROP ROLE IF EXISTS ${client.escapeIdentifier(config.database_username)}`,
      );
      dropped.push(`role ${config.database_username}`);
    }
  } catch (error) {
    throw new CliError(
      'storage_delete_failed',
      `Could not drop the PostgreSQL database '${config.database_name}' at ${where(login)}: ` +
        `${(error as Error).message}`,
      {
        hint: 'Drop it by hand as its owner or a superuser (DROP DATABASE), then run this again.',
        exitCode: ExitCodes.failure,
        cause: error,
      },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  return dropped;
}
