import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** The local PostgreSQL the bench uses, as its superuser (trust authentication). */
export const PG_ADMIN = { host: '127.0.0.1', port: 5432, user: 'postgres' } as const;

/**
 * Names of every database (and role) the bench creates start with this, so a leftover of a killed
 * run is recognisable: `aiida_bench_...` (our profiles, named by `aiida presto`) and
 * `bench_gw_...` (graphile-worker's).
 */
export const BENCH_DATABASE_PREFIXES = ['aiida_bench', 'bench_gw_'] as const;

/** Databases this run created and has not dropped yet (name -> also drop the role of that name). */
const created = new Map<string, boolean>();

async function asAdmin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ ...PG_ADMIN, database: 'postgres' });
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A connection string to `database` as the superuser. */
export function adminUrl(database: string): string {
  return `postgres://${PG_ADMIN.user}@${PG_ADMIN.host}:${PG_ADMIN.port}/${database}`;
}

/** Creates a database with a unique name `<prefix><8 hex>`, owned by the superuser. */
export async function createBenchDatabase(prefix: (typeof BENCH_DATABASE_PREFIXES)[number]) {
  const name = `${prefix}${randomBytes(4).toString('hex')}`;
  await asAdmin((c) => c.query(`CREATE DATABASE ${c.escapeIdentifier(name)}`));
  created.set(name, false);
  return name;
}

/** Remembers a database made by someone else for this run (`aiida presto`), with its role. */
export function noteBenchDatabase(name: string): void {
  created.set(name, true);
}

/** Drops a database (closing its connections) and, if it came with one, its role. */
export async function dropBenchDatabase(name: string): Promise<void> {
  const withRole = created.get(name) ?? false;
  await asAdmin(async (c) => {
    await c.query(`DROP DATABASE IF EXISTS ${c.escapeIdentifier(name)} WITH (FORCE)`);
    if (withRole) await c.query(`DROP ROLE IF EXISTS ${c.escapeIdentifier(name)}`);
  });
  created.delete(name);
}

/** Drops what this run created and did not drop (after a failure or a signal); returns the names. */
export async function dropLeftoverDatabases(): Promise<string[]> {
  const left = [...created.keys()];
  for (const name of left) await dropBenchDatabase(name).catch(() => undefined);
  return left;
}
