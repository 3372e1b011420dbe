// Issue 9: a profile on PostgreSQL through the command line. presto --use-postgres creates a role
// and a database of the profile's own (or says what is missing), status reports the store, the
// password never shows, and profile delete --delete-data drops the database.
import { getProfile } from '@aiida/config';
import { POSTGRES_SCHEMA_VERSION } from '@aiida/engine';
import pg from 'pg';
import {
  createTestDatabase,
  dropDatabase,
  PG_ADMIN,
  runDatabasePrefix,
} from '../../../tests/support/postgres.js';
import { CliSandbox, shown } from './cli.js';

let sandbox: CliSandbox;
beforeEach(() => {
  sandbox = new CliSandbox();
});
afterEach(async () => {
  await sandbox.cleanUp();
});

async function databasesLike(fragment: string): Promise<string[]> {
  const client = new pg.Client(PG_ADMIN);
  await client.connect();
  try {
    const r = await client.query('SELECT datname FROM pg_database WHERE datname LIKE $1', [
      `%${fragment}%`,
    ]);
    return r.rows.map((row: { datname: string }) => row.datname);
  } finally {
    await client.end();
  }
}

async function rolesLike(fragment: string): Promise<string[]> {
  const client = new pg.Client(PG_ADMIN);
  await client.connect();
  try {
    const r = await client.query('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [
      `%${fragment}%`,
    ]);
    return r.rows.map((row: { rolname: string }) => row.rolname);
  } finally {
    await client.end();
  }
}

test('presto --use-postgres: a role and database of its own; status shows them; delete --delete-data drops it', async () => {
  const name = `${runDatabasePrefix()}cli`;
  const adminPassword = 'admin-pw-not-to-show';
  const created = await sandbox.run([
    '-p',
    name,
    'presto',
    '--use-postgres',
    '--postgres-hostname',
    PG_ADMIN.host,
    '--postgres-username',
    PG_ADMIN.user,
    '--postgres-password',
    adminPassword,
  ]);
  let database: string | undefined;
  try {
    expect(created.code).toBe(0);
    const profile = sandbox.profiles().includes(name)
      ? getProfile(name, { aiidaPath: sandbox.aiidaPath })
      : undefined;
    expect(profile?.storage.backend).toBe('core.psql');
    if (profile?.storage.backend !== 'core.psql') throw new Error(shown(created));
    const config = profile.storage.config;
    database = config.database_name;
    expect(config.database_username).toMatch(/^aiida_/);
    expect(config.database_username).not.toBe(PG_ADMIN.user);
    expect(created.stdout).toContain(
      `Storage: PostgreSQL ${config.database_username}@${PG_ADMIN.host}:5432/${database}`,
    );
    expect(await databasesLike(database)).toEqual([database]);

    const status = await sandbox.run(['-p', name, 'status']);
    expect(status.stdout).toMatch(
      new RegExp(
        `core\\.psql store at postgresql://${config.database_username}@.*\\(PostgreSQL 15[.\\d]*, schema version ${POSTGRES_SCHEMA_VERSION}\\)`,
      ),
    );
    const show = await sandbox.run(['-p', name, 'profile', 'show']);
    const json = await sandbox.run(['-p', name, 'profile', 'show', '--json']);
    expect(show.code).toBe(0);
    expect(json.code).toBe(0);
    for (const output of [created, status, show, json]) {
      const text = output.stdout + output.stderr;
      expect(text).not.toContain(config.database_password);
      expect(text).not.toContain(adminPassword);
    }
    expect(JSON.parse(json.stdout).storage.config.database_password).toBe('***');

    const deleted = await sandbox.run(['profile', 'delete', name, '--delete-data', '-y']);
    expect(deleted.code).toBe(0);
    expect(deleted.stdout).toContain(`Dropped the PostgreSQL database ${database}`);
    expect(await databasesLike(database)).toEqual([]);
  } finally {
    if (database) await dropDatabase(database);
  }
}, 120_000);

test('presto --use-postgres with an unreachable server or a taken name: an error, nothing left behind', async () => {
  const name = `${runDatabasePrefix()}down`;
  const result = await sandbox.run([
    '-p',
    name,
    'presto',
    '--use-postgres',
    '--postgres-hostname',
    '127.0.0.1',
    '--postgres-port',
    '1',
    '-t',
    '3',
  ]);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain('Cannot connect to PostgreSQL at 127.0.0.1:1');
  expect(result.stderr).toContain('--postgres-hostname');
  expect(sandbox.profiles()).toEqual([]);
  expect(await databasesLike(`aiida_${name}`)).toEqual([]);
  expect(await rolesLike(`aiida_${name}`)).toEqual([]);

  // A name that is taken: the database and role made for it are dropped again.
  const taken = `${runDatabasePrefix()}taken`;
  expect((await sandbox.run(['profile', 'setup', taken])).code).toBe(0);
  const again = await sandbox.run([
    '-p',
    taken,
    'presto',
    '--use-postgres',
    '--postgres-hostname',
    PG_ADMIN.host,
  ]);
  expect(again.code).toBe(1);
  expect(again.stderr).toContain(`A profile named '${taken}' already exists`);
  expect(await databasesLike(`aiida_${taken}`)).toEqual([]);
  expect(await rolesLike(`aiida_${taken}`)).toEqual([]);

  const stray = await sandbox.run(['presto', '--postgres-port', '5432']);
  expect(stray.code).toBe(2);
  expect(stray.stderr).toContain('--postgres-port only apply with --use-postgres');
});

test('profile setup --storage-backend core.psql: an existing database; missing fields are named', async () => {
  const missing = await sandbox.run([
    'profile',
    'setup',
    'shared',
    '--storage-backend',
    'core.psql',
    '--database-username',
    'someone',
  ]);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toContain('--storage-backend core.psql needs --database-name');
  expect(sandbox.profiles()).toEqual([]);

  const db = await createTestDatabase();
  try {
    const setup = await sandbox.run([
      'profile',
      'setup',
      'shared',
      '--storage-backend',
      'core.psql',
      '--database-hostname',
      db.hostname,
      '--database-port',
      String(db.port),
      '--database-username',
      db.username,
      '--database-password',
      db.password,
      '--database-name',
      db.database,
      '--set-default',
    ]);
    expect(setup.code).toBe(0);
    const status = await sandbox.run(['status']);
    expect(status.stdout).toContain(`core.psql store at postgresql://${db.username}@`);
    expect(status.stdout + status.stderr + setup.stdout + setup.stderr).not.toContain(db.password);
    const tables = await db.admin('SELECT MAX(version) AS v FROM schema_version');
    expect(tables.rows[0]).toEqual({ v: POSTGRES_SCHEMA_VERSION });

    const wrong = await sandbox.run([
      'profile',
      'setup',
      'nodb',
      '--storage-backend',
      'core.psql',
      '--database-hostname',
      db.hostname,
      '--database-username',
      db.username,
      '--database-name',
      `${db.database}_missing`,
    ]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`${db.database}_missing`);
    expect(sandbox.profiles()).toEqual(['shared']);
  } finally {
    await db.drop();
  }
}, 120_000);
