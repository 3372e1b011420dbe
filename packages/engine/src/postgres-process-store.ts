import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { type ProcessState, TERMINAL_STATES } from '@aiida/ipc';
import type pg from 'pg';
import { EngineError, EngineErrorCodes } from './errors.js';
import type { JsonValue } from './json.js';
import { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from './postgres-migrations.js';
import type {
  ActivityBucket,
  CheckpointResult,
  ClaimBatchItem,
  ClaimResult,
  ControlRequestOutcome,
  DeleteSelection,
  Lease,
  LeaseFence,
  LeaseRenewal,
  NewProcess,
  ProcessDurations,
  ProcessFilter,
  ProcessGroupRecord,
  ProcessPage,
  ProcessQuery,
  ProcessRecord,
  ProcessReport,
  ProcessStore,
  ProcessSummary,
  ReportLevel,
  TerminalEffects,
  TerminalResult,
  WorkerRecord,
  WorkerRegistration,
} from './process-store.js';
import {
  activityBuckets,
  durationHistogram,
  durationHistogramSql,
  listProcessesSql,
  queryProcessesSql,
  RULE_COLUMNS,
  type RuleColumn,
  type SqlDialect,
} from './store-queries.js';
import * as rules from './store-rules.js';
import {
  fenceViolation,
  type KillIntent,
  leaseExpiry,
  leaseOf,
  mergeKillIntents,
  type Rule,
  type RuleRow,
  renewalOf,
  runRuleAsync,
  type StoreOp,
} from './store-rules.js';
import { PostgresWorkSignal } from './work-signal.js';

/** How to reach a PostgreSQL database (AiiDA's `core.psql` fields). */
export interface PostgresConnection {
  /** `database_hostname`. */
  hostname: string;
  /** `database_port`. */
  port: number;
  /** `database_username`. */
  username: string;
  /** `database_password`; never written to messages or logs. */
  password?: string | null;
  /** `database_name`. */
  database: string;
}

/** Options of {@link PostgresProcessStore.open}. */
export interface PostgresStoreOptions {
  connection: PostgresConnection;
  /**
   * Connections in the pool.
   * @default 4
   */
  poolSize?: number;
  /**
   * Seconds to wait for a connection before a call fails.
   * @default 10
   */
  connectTimeout?: number;
  /**
   * Seconds the server lets one of the store's transactions wait for its client before it ends the
   * session (PostgreSQL's `idle_in_transaction_session_timeout`). A host cut off from the network
   * in the middle of a transaction leaves it open on the server, holding the locks of the rows it
   * read; every other host that touches those rows waits on them. This frees them long before the
   * server would notice the silent client (TCP keepalive: hours). A live client never idles
   * inside a transaction for more than milliseconds. With a `daemon.lease_timeout` shorter than
   * this, a takeover held up by such locks waits until this timeout instead of the lease.
   * @default 5
   */
  idleInTransactionTimeout?: number;
  /** Receives errors of idle connections (e.g. the server restarted); the pool replaces them. */
  onIdleError?: (error: Error) => void;
}

/** Default of {@link PostgresStoreOptions.idleInTransactionTimeout}, in seconds. */
export const DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT = 5;

interface ProcessRow {
  pk: number;
  uuid: string;
  type: string;
  state: ProcessState;
  paused: boolean;
  inputs: JsonValue;
  outputs: JsonValue | null;
  exit_status: number | null;
  exit_message: string | null;
  exception: string | null;
  process_status: string | null;
  checkpoint: JsonValue | null;
  parent_pk: number | null;
  spawn_key: string | null;
  owner: string | null;
  epoch: number;
  attempts: number;
  owner_losses: number;
  lease_expires_at: number | null;
  dispatched_at: number | null;
  runnable: boolean;
  time_limit: number | null;
  created_at: number;
  modified_at: number;
  started_at: number | null;
  finished_at: number | null;
  process_group: ProcessGroupRecord | null;
}

const TERMINAL_SQL = `('${TERMINAL_STATES.join("', '")}')`;
/** The database's clock, in milliseconds since the Unix epoch: leases never use a host's clock. */
const NOW_SQL = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';
/** Key of the advisory lock that serialises migrations of one database. */
const MIGRATION_LOCK = 7_261_009;
/** Deadlock and serialization failures: the transaction was rolled back and may be retried. */
const RETRYABLE = new Set(['40P01', '40001']);
const MAX_TX_ATTEMPTS = 8;

/**
 * node-postgres, imported by the first {@link PostgresProcessStore.open}: a process that only
 * uses SQLite stores (a worker or a command of such a profile) never loads it.
 */
let driver: typeof pg | undefined;
async function loadDriver(): Promise<typeof pg> {
  driver ??= (await import('pg')).default;
  return driver;
}

/** Type parsers of the pool: `bigint` (pks, times) as numbers; they stay below 2^53. */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === 20) return (value: string) => Number(value);
    return driver!.types.getTypeParser(oid, format as 'text');
  },
} as pg.CustomTypesConfig;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function json(value: JsonValue | null | undefined): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

function toRecord(row: ProcessRow): ProcessRecord {
  return {
    pk: row.pk,
    uuid: row.uuid,
    type: row.type,
    state: row.state,
    paused: row.paused,
    inputs: row.inputs,
    outputs: row.outputs,
    exitStatus: row.exit_status,
    exitMessage: row.exit_message,
    exception: row.exception,
    processStatus: row.process_status,
    checkpoint: row.checkpoint,
    parentPk: row.parent_pk,
    owner: row.owner,
    epoch: row.epoch,
    attempts: row.attempts,
    ownerLosses: row.owner_losses,
    leaseExpiresAt: iso(row.lease_expires_at),
    dispatchedAt: iso(row.dispatched_at),
    runnable: row.runnable,
    timeLimit: row.time_limit,
    createdAt: iso(row.created_at)!,
    modifiedAt: iso(row.modified_at)!,
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    processGroup: row.process_group,
  };
}

/** The columns the store rules read ({@link RuleRow}), as this backend's rows hold them. */
type RuleRowColumns = Pick<ProcessRow, RuleColumn>;

function ruleRow(row: RuleRowColumns): RuleRow {
  return {
    pk: row.pk,
    state: row.state,
    paused: row.paused,
    runnable: row.runnable,
    owner: row.owner,
    epoch: row.epoch,
    attempts: row.attempts,
    ownerLosses: row.owner_losses,
    leaseExpiresAt: row.lease_expires_at,
    createdAt: row.created_at,
    timeLimit: row.time_limit,
    parentPk: row.parent_pk,
    processGroup: row.process_group,
  };
}

/** `postgresql://user@host:port/db`: where a store lives, without its password. */
export function describePostgresConnection(c: PostgresConnection): string {
  return `postgresql://${c.username}@${c.hostname}:${c.port}/${c.database}`;
}

type Queryable = Pick<pg.PoolClient, 'query'>;

/** PostgreSQL's way of writing the shared read queries (store-queries.ts), with its parameters. */
function postgresDialect(): { dialect: SqlDialect; params: unknown[] } {
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  const dialect: SqlDialect = {
    param,
    anyOf: (column, values) => `${column} = ANY(${param([...values])}::text[])`,
    bool: (value) => value,
    nulls: (order) => (order === 'ASC' ? ' NULLS FIRST' : ' NULLS LAST'),
  };
  return { dialect, params };
}

/**
 * The PostgreSQL implementation of {@link ProcessStore} (node-postgres, a pool, parametrised SQL
 * only). The decisions are those of `store-rules.ts`, run inside one transaction per call; rows a
 * rule reads are locked (`FOR UPDATE`), so concurrent claimers on any number of hosts serialise per
 * row and never hand one process to two owners. Every time (leases, creation, time limits) is the
 * database's clock, so a host whose clock is off neither steals a live lease nor keeps an expired
 * one. Open it with {@link PostgresProcessStore.open}.
 */
export class PostgresProcessStore implements ProcessStore {
  readonly backend = 'core.psql' as const;
  readonly location: string;
  private closed = false;
  private readonly workSignal: PostgresWorkSignal;

  private constructor(
    private readonly pool: pg.Pool,
    location: string,
    readonly schemaVersion: number,
    /** `server_version` of the database server. */
    readonly serverVersion: string,
    clientConfig: pg.ClientConfig,
    onIdleError?: (error: Error) => void,
  ) {
    this.location = location;
    this.workSignal = new PostgresWorkSignal(
      pool,
      () => new driver!.Client(clientConfig),
      (error) => onIdleError?.(error),
    );
  }

  /**
   * Connects, migrates the schema to {@link POSTGRES_SCHEMA_VERSION} (one process at a time, under
   * an advisory lock) and returns the store. Throws `EngineError('store_version_unsupported')` for
   * a database written by a newer version (and changes nothing), `store_error` when the server
   * cannot be reached or refuses the login.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresProcessStore> {
    const c = options.connection;
    const location = describePostgresConnection(c);
    const clientConfig: pg.ClientConfig = {
      host: c.hostname,
      port: c.port,
      user: c.username,
      password: c.password ?? undefined,
      database: c.database,
      connectionTimeoutMillis: Math.round((options.connectTimeout ?? 10) * 1000),
      idle_in_transaction_session_timeout: Math.round(
        (options.idleInTransactionTimeout ?? DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT) * 1000,
      ),
      application_name: 'aiida-daemon-ts',
      types,
    };
    const pool = new (await loadDriver()).Pool({ ...clientConfig, max: options.poolSize ?? 4 });
    // Without a listener, an idle connection dropped by a server restart would crash the process.
    pool.on('error', (error) => options.onIdleError?.(error));
    try {
      const version = (await pool.query('SHOW server_version')).rows[0] as {
        server_version: string;
      };
      const schemaVersion = await migrate(pool, location);
      // "15.20 (Debian 15.20-0+deb12u1)": the version number only.
      const serverVersion = version.server_version.split(' ')[0] ?? version.server_version;
      return new PostgresProcessStore(
        pool,
        location,
        schemaVersion,
        serverVersion,
        clientConfig,
        options.onIdleError,
      );
    } catch (error) {
      await pool.end().catch(() => undefined);
      if (error instanceof EngineError) throw error;
      throw storeError(location, error, 'cannot open the process store');
    }
  }

  // --- plumbing -------------------------------------------------------------------------------

  private assertOpen(): void {
    if (this.closed) {
      throw new EngineError(
        EngineErrorCodes.storeError,
        `the process store ${this.location} is closed`,
      );
    }
  }

  /**
   * Runs `fn` in one transaction with the database's time at its start. A deadlock or
   * serialization failure (rolled back by the server) is retried; any other error rolls back and
   * becomes a `store_error`.
   */
  private async tx<T>(fn: (c: pg.PoolClient, now: number) => Promise<T>): Promise<T> {
    this.assertOpen();
    for (let attempt = 1; ; attempt++) {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw storeError(this.location, error);
      }
      let broken = false;
      // The pool listens for errors of idle connections only: without this, a connection the
      // server drops (a restart) while checked out between two queries would crash the process.
      const onError = () => {
        broken = true;
      };
      client.on('error', onError);
      try {
        const begun = (await client.query(
          `BEGIN; SELECT ${NOW_SQL} AS now`,
        )) as unknown as pg.QueryResult[];
        const now = (begun[1]!.rows[0] as { now: number }).now;
        const out = await fn(client, now);
        await client.query('COMMIT');
        return out;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        const code = (error as { code?: string }).code;
        const retry = code !== undefined && RETRYABLE.has(code) && attempt < MAX_TX_ATTEMPTS;
        if (!retry) {
          if (error instanceof EngineError) throw error;
          throw storeError(this.location, error);
        }
      } finally {
        client.removeListener('error', onError);
        client.release(broken);
      }
      // Retried: a short random pause, growing with the attempt (the connection back in the
      // pool meanwhile), so that the transactions that collided don't collide again at once.
      await delay(Math.random() * 5 * attempt);
    }
  }

  /** One statement outside a transaction. */
  private async query<R>(sql: string, params: unknown[] = []): Promise<R[]> {
    this.assertOpen();
    try {
      return (await this.pool.query(sql, params)).rows as R[];
    } catch (error) {
      throw storeError(this.location, error);
    }
  }

  private run<T>(c: Queryable, rule: Rule<T>): Promise<T> {
    return runRuleAsync(rule, (op) => this.exec(c, op));
  }

  /** The SQL of each operation a rule asks for. */
  private async exec(c: Queryable, op: StoreOp): Promise<unknown> {
    switch (op.op) {
      case 'row': {
        const r = await c.query(`SELECT ${RULE_COLUMNS} FROM processes WHERE pk = $1 FOR UPDATE`, [
          op.pk,
        ]);
        return r.rows[0] ? ruleRow(r.rows[0] as RuleRowColumns) : undefined;
      }
      case 'claimable': {
        // SKIP LOCKED: a row another batch claimer holds right now is left to it.
        const r = await c.query(
          `SELECT pk FROM processes
           WHERE ${rules.claimableSql(TERMINAL_SQL, (b) => (b ? 'TRUE' : 'FALSE'), '$1')}
             AND pk > $2 ORDER BY pk LIMIT $3 FOR UPDATE SKIP LOCKED`,
          [op.now, op.afterPk, op.limit],
        );
        return (r.rows as { pk: number | string }[]).map((x) => Number(x.pk));
      }
      case 'liveChildren': {
        const r = await c.query(
          `SELECT ${RULE_COLUMNS} FROM processes WHERE parent_pk = $1 AND state NOT IN ${TERMINAL_SQL} ORDER BY pk`,
          [op.pk],
        );
        return (r.rows as RuleRowColumns[]).map(ruleRow);
      }
      case 'pendingKill': {
        const r = await c.query(
          `SELECT message, force FROM control_intents WHERE pk = $1 AND intent = 'kill'
           ORDER BY force DESC, id LIMIT 1`,
          [op.pk],
        );
        const k = r.rows[0] as KillIntent | undefined;
        return k ? { message: k.message, force: k.force } : null;
      }
      case 'terminalize': {
        const res = op.result;
        await c.query(
          `UPDATE processes SET state = $2, outputs = $3::jsonb, exit_status = $4, exit_message = $5,
             exception = $6, process_status = $7, owner = NULL, lease_expires_at = NULL,
             runnable = FALSE, paused = FALSE, checkpoint = NULL, finished_at = $8, modified_at = $8
           WHERE pk = $1`,
          [
            op.pk,
            res.state,
            json(res.outputs),
            res.exitStatus ?? null,
            res.exitMessage ?? null,
            res.exception ?? null,
            res.processStatus ?? null,
            op.now,
          ],
        );
        await c.query('DELETE FROM control_intents WHERE pk = $1', [op.pk]);
        return undefined;
      }
      case 'setLosses':
        await c.query('UPDATE processes SET owner_losses = $2, attempts = $3 WHERE pk = $1', [
          op.pk,
          op.ownerLosses,
          op.attempts,
        ]);
        return undefined;
      case 'intent':
        await c.query(
          'INSERT INTO control_intents (pk, intent, message, force, created_at) VALUES ($1, $2, $3, $4, $5)',
          [op.pk, op.intent, op.message, op.force, op.now],
        );
        return undefined;
      case 'wake':
        await c.query(
          `UPDATE processes SET runnable = TRUE, dispatched_at = NULL, process_status = NULL,
             modified_at = $2 WHERE pk = $1`,
          [op.pk, op.now],
        );
        return undefined;
      case 'claim': {
        // The lease counts from this write, not from the transaction's start (op.now): a claim that
        // waited for a row lock (held by a host cut off mid-transaction, until the server ends
        // that transaction) would otherwise be granted a lease that is already running out.
        const r = await c.query(
          `UPDATE processes SET owner = $2, epoch = epoch + 1,
             lease_expires_at = $3::bigint + GREATEST(0, ${NOW_SQL} - $6::bigint), attempts = $4,
             owner_losses = $5, state = 'running', process_status = NULL,
             started_at = COALESCE(started_at, $6), modified_at = $6
           WHERE pk = $1 RETURNING *`,
          [op.pk, op.owner, op.leaseExpiresAt, op.attempts, op.ownerLosses, op.now],
        );
        return toRecord(r.rows[0] as ProcessRow);
      }
      case 'park':
        await c.query(
          `UPDATE processes SET checkpoint = $2::jsonb, state = 'waiting', runnable = FALSE,
             owner = NULL, lease_expires_at = NULL, dispatched_at = NULL, process_status = $3,
             modified_at = $4
           WHERE pk = $1`,
          [op.pk, JSON.stringify(op.checkpoint), op.processStatus, op.now],
        );
        return undefined;
      case 'keepCheckpoint':
        await c.query(
          'UPDATE processes SET checkpoint = $2::jsonb, modified_at = $3 WHERE pk = $1',
          [op.pk, JSON.stringify(op.checkpoint), op.now],
        );
        return undefined;
      case 'setPaused':
        await c.query(
          'UPDATE processes SET paused = $2, process_status = $3, modified_at = $4 WHERE pk = $1',
          [op.pk, op.paused, op.processStatus, op.now],
        );
        return undefined;
      case 'undispatch':
        await c.query('UPDATE processes SET dispatched_at = NULL WHERE pk = $1', [op.pk]);
        return undefined;
      case 'oldTerminal': {
        const r = await c.query(
          `SELECT pk FROM processes WHERE finished_at IS NOT NULL AND finished_at <= $1
             AND state = ANY($2::text[]) ORDER BY pk`,
          [op.cutoff, [...op.states]],
        );
        return (r.rows as { pk: number }[]).map((x) => x.pk);
      }
      case 'tree': {
        const r = await c.query(
          `WITH RECURSIVE tree(pk) AS (
             SELECT unnest($1::bigint[])
             UNION SELECT p.pk FROM processes p JOIN tree t ON p.parent_pk = t.pk
           )
           SELECT p.pk, p.state, p.parent_pk FROM processes p JOIN tree t ON p.pk = t.pk`,
          [op.roots],
        );
        return (r.rows as { pk: number; state: ProcessState; parent_pk: number | null }[]).map(
          (x) => ({ pk: x.pk, state: x.state, parentPk: x.parent_pk }),
        );
      }
      case 'deleteRows':
        await c.query('DELETE FROM control_intents WHERE pk = ANY($1::bigint[])', [op.pks]);
        await c.query('DELETE FROM reports WHERE pk = ANY($1::bigint[])', [op.pks]);
        await c.query('DELETE FROM processes WHERE pk = ANY($1::bigint[])', [op.pks]);
        return undefined;
    }
  }

  /** Throws `lease_lost` unless `fence` holds (after a fenced UPDATE changed nothing). */
  private async checkFence(c: Queryable, fence: LeaseFence): Promise<void> {
    const r = await c.query('SELECT state, owner, epoch FROM processes WHERE pk = $1', [fence.pk]);
    const violation = fenceViolation(r.rows[0] as RuleRow | undefined, fence);
    if (violation) throw violation;
  }

  private async insertRow(
    c: Queryable,
    now: number,
    process: NewProcess,
    extra: {
      parentPk?: number | null;
      spawnKey?: string | null;
      owner?: string | null;
      leaseSeconds?: number;
    } = {},
  ): Promise<ProcessRow> {
    const owned = extra.owner != null;
    const r = await c.query(
      `INSERT INTO processes (uuid, type, state, inputs, parent_pk, spawn_key, owner, epoch, attempts,
         lease_expires_at, time_limit, created_at, modified_at, started_at, runnable)
       VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, TRUE)
       RETURNING *`,
      [
        randomUUID(),
        process.type,
        owned ? 'running' : 'created',
        JSON.stringify(process.inputs ?? null),
        extra.parentPk ?? null,
        extra.spawnKey ?? null,
        extra.owner ?? null,
        owned ? 1 : 0,
        owned ? 1 : 0,
        owned ? leaseExpiry(now, extra.leaseSeconds ?? 0) : null,
        process.timeLimit ?? null,
        now,
        owned ? now : null,
      ],
    );
    return r.rows[0] as ProcessRow;
  }

  // --- creation -------------------------------------------------------------------------------

  async createProcesses(processes: NewProcess[]): Promise<ProcessRecord[]> {
    if (processes.length === 0) return [];
    return this.tx(async (c, now) => {
      // One statement for the whole batch: submitMany is one round trip.
      const r = await c.query(
        `INSERT INTO processes (uuid, type, state, inputs, time_limit, created_at, modified_at, runnable)
         SELECT u, t, 'created', i::jsonb, l, $5, $5, TRUE
         FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[]) WITH ORDINALITY AS x(u, t, i, l, n)
         ORDER BY n
         RETURNING *`,
        [
          processes.map(() => randomUUID()),
          processes.map((p) => p.type),
          processes.map((p) => JSON.stringify(p.inputs ?? null)),
          processes.map((p) => p.timeLimit ?? null),
          now,
        ],
      );
      return (r.rows as ProcessRow[]).sort((a, b) => a.pk - b.pk).map(toRecord);
    });
  }

  async createClaimedProcess(
    process: NewProcess,
    ownerId: string,
    leaseSeconds: number,
  ): Promise<{ record: ProcessRecord; lease: Lease }> {
    return this.tx(async (c, now) => {
      const record = toRecord(
        await this.insertRow(c, now, process, { owner: ownerId, leaseSeconds }),
      );
      return { record, lease: leaseOf(record) };
    });
  }

  async createChild(
    parent: LeaseFence,
    spawnKey: string,
    process: NewProcess,
    claimFor?: { ownerId: string; leaseSeconds: number },
  ): Promise<{ record: ProcessRecord; created: boolean; lease: Lease | null }> {
    return this.tx(async (c, now) => {
      await this.run(c, rules.checkFence(parent));
      const existing = await c.query(
        'SELECT * FROM processes WHERE parent_pk = $1 AND spawn_key = $2',
        [parent.pk, spawnKey],
      );
      if (existing.rows[0]) {
        return { record: toRecord(existing.rows[0] as ProcessRow), created: false, lease: null };
      }
      const record = toRecord(
        await this.insertRow(c, now, process, {
          parentPk: parent.pk,
          spawnKey,
          owner: claimFor?.ownerId ?? null,
          leaseSeconds: claimFor?.leaseSeconds,
        }),
      );
      return { record, created: true, lease: claimFor ? leaseOf(record) : null };
    });
  }

  // --- reads ----------------------------------------------------------------------------------

  async getProcess(pk: number): Promise<ProcessRecord | undefined> {
    const rows = await this.query<ProcessRow>('SELECT * FROM processes WHERE pk = $1', [pk]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  async getProcesses(pks: number[]): Promise<ProcessRecord[]> {
    if (pks.length === 0) return [];
    return (
      await this.query<ProcessRow>(
        'SELECT * FROM processes WHERE pk = ANY($1::bigint[]) ORDER BY pk',
        [pks],
      )
    ).map(toRecord);
  }

  async listProcesses(filter: ProcessFilter = {}): Promise<ProcessRecord[]> {
    const { dialect, params } = postgresDialect();
    const sql = listProcessesSql(filter, dialect);
    return (await this.query<ProcessRow>(sql, params)).map(toRecord);
  }

  async queryProcesses(query: ProcessQuery = {}): Promise<ProcessPage> {
    const { dialect, params } = postgresDialect();
    const sql = queryProcessesSql(query, dialect);
    const [count] = await this.query<{ n: number }>(sql.count, params.slice(0, -2));
    const rows = await this.query<ProcessRow>(sql.page, params);
    return { total: count?.n ?? 0, processes: rows.map(toRecord) };
  }

  async summarizeProcesses(): Promise<ProcessSummary> {
    const counts = await this.query<{
      state: ProcessState;
      type: string;
      count: number;
      paused: number;
    }>(
      `SELECT state, type, COUNT(*) AS count, COUNT(*) FILTER (WHERE paused) AS paused
       FROM processes GROUP BY state, type ORDER BY state, type`,
    );
    const [totals] = await this.query<{
      total: number;
      claims: number;
      losses: number;
      modified: number | null;
    }>(
      `SELECT COUNT(*) AS total, COALESCE(SUM(epoch), 0)::bigint AS claims,
         COALESCE(SUM(owner_losses), 0)::bigint AS losses, MAX(modified_at) AS modified
       FROM processes`,
    );
    return {
      total: totals?.total ?? 0,
      counts,
      claims: totals?.claims ?? 0,
      ownerLosses: totals?.losses ?? 0,
      lastModifiedAt: iso(totals?.modified ?? null),
    };
  }

  async processDurations(bounds: readonly number[]): Promise<ProcessDurations> {
    const sorted = [...bounds].sort((a, b) => a - b);
    const histogram = async (which: 'queued' | 'run') => {
      const { dialect, params } = postgresDialect();
      const sql = durationHistogramSql(which, sorted, dialect);
      const [row] = await this.query<Record<string, number | string | null>>(sql, params);
      return durationHistogram(row, sorted);
    };
    return { bounds: sorted, queued: await histogram('queued'), run: await histogram('run') };
  }

  async changeToken(): Promise<string> {
    // Every write of a row moves modified_at or the row count; every report adds an id.
    const [row] = await this.query<{ m: number | null; n: number; r: number | null }>(
      `SELECT (SELECT MAX(modified_at) FROM processes) AS m,
         (SELECT COUNT(*) FROM processes) AS n, (SELECT MAX(id) FROM reports) AS r`,
    );
    return `${row?.m ?? 0}.${row?.n ?? 0}.${row?.r ?? 0}`;
  }

  async processActivity(options: { since: string; interval: number }): Promise<ActivityBucket[]> {
    const since = Date.parse(options.since);
    const width = Math.max(1, Math.round(options.interval * 1000));
    const rows = await this.query<{ bucket: number; state: ProcessState; n: number }>(
      `SELECT ((finished_at - $1) / $2)::bigint AS bucket, state, COUNT(*) AS n FROM processes
       WHERE finished_at IS NOT NULL AND finished_at >= $1 AND state IN ${TERMINAL_SQL}
       GROUP BY 1, state`,
      [since, width],
    );
    const [clock] = await this.query<{ now: number }>(`SELECT ${NOW_SQL} AS now`);
    return activityBuckets(since, width, clock?.now ?? since, rows);
  }

  async getReports(pk: number): Promise<ProcessReport[]> {
    const rows = await this.query<{
      id: number;
      pk: number;
      time: number;
      level: ReportLevel;
      message: string;
    }>('SELECT id, pk, time, level, message FROM reports WHERE pk = $1 ORDER BY id', [pk]);
    return rows.map((r) => ({ ...r, time: iso(r.time)! }));
  }

  // --- leases ---------------------------------------------------------------------------------

  async claim(
    pk: number,
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult> {
    return this.tx((c, now) =>
      this.run(c, rules.claim(pk, ownerId, leaseSeconds, options.maxAttempts, now)),
    );
  }

  async claimMany(
    pks: number[],
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult[]> {
    if (pks.length === 0) return [];
    // Rows are locked in ascending pk order whatever the order asked, so two batches that share
    // rows can't lock them in opposite orders and deadlock; the results keep the order asked.
    const order = pks.map((pk, index) => ({ pk, index })).sort((a, b) => a.pk - b.pk);
    return this.tx(async (c, now) => {
      const out: ClaimResult[] = new Array(pks.length);
      for (const { pk, index } of order) {
        out[index] = await this.run(
          c,
          rules.claim(pk, ownerId, leaseSeconds, options.maxAttempts, now),
        );
      }
      return out;
    });
  }

  async claimRunnable(
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number; limit: number },
  ): Promise<ClaimBatchItem[]> {
    if (options.limit < 1) return [];
    return this.tx((c, now) =>
      this.run(
        c,
        rules.claimRunnable(ownerId, leaseSeconds, options.maxAttempts, options.limit, now),
      ),
    );
  }

  async notifyWork(): Promise<void> {
    if (this.closed) return;
    await this.workSignal.notify();
  }

  async listenForWork(listener: () => void): Promise<() => Promise<void>> {
    this.assertOpen();
    try {
      return await this.workSignal.listen(listener);
    } catch (error) {
      throw storeError(this.location, error, 'cannot listen for work on');
    }
  }

  async renewLeases(ownerId: string, pks: number[], leaseSeconds: number): Promise<LeaseRenewal[]> {
    if (pks.length === 0) return [];
    return this.tx(async (c, now) => {
      // As for a claim, the renewed lease counts from this write, even after a wait for locks.
      const renewed = await c.query(
        `UPDATE processes SET lease_expires_at = $1::bigint + GREATEST(0, ${NOW_SQL} - $4::bigint)
         WHERE owner = $2 AND pk = ANY($3::bigint[]) AND state NOT IN ${TERMINAL_SQL}
         RETURNING pk, paused, created_at, time_limit`,
        [leaseExpiry(now, leaseSeconds), ownerId, pks, now],
      );
      const held = new Map<
        number,
        { paused: boolean; createdAt: number; timeLimit: number | null }
      >();
      for (const r of renewed.rows as {
        pk: number;
        paused: boolean;
        created_at: number;
        time_limit: number | null;
      }[]) {
        held.set(r.pk, { paused: r.paused, createdAt: r.created_at, timeLimit: r.time_limit });
      }
      const intents = await c.query(
        `SELECT pk, message, force FROM control_intents
         WHERE intent = 'kill' AND pk = ANY($1::bigint[]) ORDER BY id`,
        [pks],
      );
      const kills = mergeKillIntents(
        intents.rows as { pk: number; message: string | null; force: boolean }[],
      );
      return pks.map((pk) => renewalOf(pk, held.get(pk), kills.get(pk), now));
    });
  }

  async release(
    fence: LeaseFence,
    options: { interrupted?: boolean; checkpoint?: JsonValue; processStatus?: string | null } = {},
  ): Promise<{ dispatch: boolean }> {
    return this.tx(async (c, now) => {
      const r = await c.query(
        `UPDATE processes SET owner = NULL, lease_expires_at = NULL, state = 'waiting',
           dispatched_at = NULL, attempts = attempts + $4, modified_at = $5,
           checkpoint = CASE WHEN $6 THEN $7::jsonb ELSE checkpoint END, process_status = $8
         WHERE pk = $1 AND owner = $2 AND epoch = $3 AND state NOT IN ${TERMINAL_SQL}
         RETURNING paused, runnable`,
        [
          fence.pk,
          fence.ownerId,
          fence.epoch,
          options.interrupted ? 1 : 0,
          now,
          options.checkpoint !== undefined,
          options.checkpoint === undefined ? null : JSON.stringify(options.checkpoint),
          options.processStatus ?? null,
        ],
      );
      const row = r.rows[0] as { paused: boolean; runnable: boolean } | undefined;
      if (!row) await this.checkFence(c, fence);
      return { dispatch: !row!.paused && row!.runnable };
    });
  }

  // --- fenced writes --------------------------------------------------------------------------

  async writeCheckpoint(
    fence: LeaseFence,
    checkpoint: JsonValue,
    options: { state?: ProcessState; processStatus?: string | null } = {},
  ): Promise<CheckpointResult> {
    return this.tx(async (c, now) => {
      const r = await c.query(
        `UPDATE processes SET checkpoint = $4::jsonb, state = COALESCE($5, state),
           process_status = CASE WHEN $6 THEN $7 ELSE process_status END, modified_at = $8
         WHERE pk = $1 AND owner = $2 AND epoch = $3 AND state NOT IN ${TERMINAL_SQL}
         RETURNING paused`,
        [
          fence.pk,
          fence.ownerId,
          fence.epoch,
          JSON.stringify(checkpoint),
          options.state ?? null,
          options.processStatus !== undefined,
          options.processStatus ?? null,
          now,
        ],
      );
      const row = r.rows[0] as { paused: boolean } | undefined;
      if (!row) await this.checkFence(c, fence);
      const kill = (await this.exec(c, { op: 'pendingKill', pk: fence.pk })) as KillIntent | null;
      return { paused: row!.paused, kill };
    });
  }

  async setProcessGroup(fence: LeaseFence, group: ProcessGroupRecord | null): Promise<void> {
    await this.fencedUpdate(
      fence,
      'process_group = $4::jsonb',
      group === null ? null : JSON.stringify(group),
    );
  }

  async setProcessStatus(fence: LeaseFence, processStatus: string | null): Promise<void> {
    await this.fencedUpdate(fence, 'process_status = $4', processStatus);
  }

  private async fencedUpdate(fence: LeaseFence, set: string, value: unknown): Promise<void> {
    await this.tx(async (c, now) => {
      const r = await c.query(
        `UPDATE processes SET ${set}, modified_at = $5
         WHERE pk = $1 AND owner = $2 AND epoch = $3 AND state NOT IN ${TERMINAL_SQL}`,
        [fence.pk, fence.ownerId, fence.epoch, value, now],
      );
      if (r.rowCount === 0) await this.checkFence(c, fence);
    });
  }

  async park(
    fence: LeaseFence,
    checkpoint: JsonValue,
    waitingOn: number[],
  ): Promise<'parked' | 'continue'> {
    return this.tx((c, now) => this.run(c, rules.park(fence, checkpoint, waitingOn, now)));
  }

  async complete(fence: LeaseFence, result: TerminalResult): Promise<TerminalEffects> {
    return this.tx((c, now) => this.run(c, rules.complete(fence, result, now)));
  }

  async completeMany(
    items: { fence: LeaseFence; result: TerminalResult }[],
  ): Promise<(TerminalEffects | EngineError)[]> {
    if (items.length === 0) return [];
    return this.tx((c, now) => this.run(c, rules.completeMany(items, now)));
  }

  async completeAndClaimMany(
    completions: { fence: LeaseFence; result: TerminalResult }[],
    claims: { pks: number[]; ownerId: string; leaseSeconds: number; maxAttempts: number },
  ): Promise<{ completions: (TerminalEffects | EngineError)[]; claims: ClaimResult[] }> {
    if (completions.length === 0 && claims.pks.length === 0) return { completions: [], claims: [] };
    return this.tx(async (c, now) => {
      const ended =
        completions.length > 0 ? await this.run(c, rules.completeMany(completions, now)) : [];
      const claimed: ClaimResult[] = [];
      for (const pk of claims.pks) {
        claimed.push(
          await this.run(
            c,
            rules.claim(pk, claims.ownerId, claims.leaseSeconds, claims.maxAttempts, now),
          ),
        );
      }
      return { completions: ended, claims: claimed };
    });
  }

  // --- control --------------------------------------------------------------------------------

  async requestPause(pk: number, message: string | null = null): Promise<ControlRequestOutcome> {
    return this.tx((c, now) => this.run(c, rules.requestPause(pk, message, now)));
  }

  async requestPlay(pk: number): Promise<ControlRequestOutcome> {
    return this.tx((c, now) => this.run(c, rules.requestPlay(pk, now)));
  }

  async requestKill(
    pk: number,
    message: string | null,
    force: boolean,
  ): Promise<ControlRequestOutcome> {
    return this.tx((c, now) => this.run(c, rules.requestKill(pk, message, force, now)));
  }

  async killExpired(): Promise<TerminalEffects> {
    return this.tx(async (c, now) => {
      const r = await c.query(
        `SELECT pk, time_limit FROM processes
         WHERE state NOT IN ${TERMINAL_SQL} AND time_limit IS NOT NULL
           AND created_at + time_limit * 1000 <= $1
           AND (owner IS NULL OR lease_expires_at < $1)
         ORDER BY pk FOR UPDATE SKIP LOCKED`,
        [now],
      );
      const expired = (r.rows as { pk: number; time_limit: number }[]).map((x) => ({
        pk: x.pk,
        timeLimit: x.time_limit,
      }));
      return this.run(c, rules.killExpired(expired, now));
    });
  }

  // --- reconciler -----------------------------------------------------------------------------

  async electLeader(ownerId: string, leaseSeconds: number): Promise<boolean> {
    return this.tx(async (c, now) => {
      const r = await c.query(
        'SELECT owner, lease_expires_at FROM leader_lease WHERE id = 1 FOR UPDATE',
      );
      const row = r.rows[0] as { owner: string; lease_expires_at: number } | undefined;
      const current = row && { owner: row.owner, leaseExpiresAt: row.lease_expires_at };
      if (!rules.mayLead(current, ownerId, now)) return false;
      await c.query(
        `INSERT INTO leader_lease (id, owner, lease_expires_at) VALUES (1, $1, $2)
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, lease_expires_at = excluded.lease_expires_at`,
        [ownerId, leaseExpiry(now, leaseSeconds)],
      );
      return true;
    });
  }

  async findDispatchable(options: {
    neverDispatchedGraceSeconds: number;
    staleDispatchSeconds?: number;
    expiredRedispatchSeconds?: { min: number; max: number };
    limit?: number;
  }): Promise<number[]> {
    const redispatch = options.expiredRedispatchSeconds;
    return this.tx(async (c, now) => {
      // An expired, unclaimed row is sent again with a backoff until someone claims it: once the
      // time since the last send reaches half the time since the expiry, within [min, max].
      const r = await c.query(
        `SELECT pk FROM processes
         WHERE state NOT IN ${TERMINAL_SQL} AND NOT paused AND runnable AND (
           (owner IS NULL AND dispatched_at IS NULL AND modified_at <= $2)
           OR (owner IS NOT NULL AND lease_expires_at < $1
               AND (dispatched_at IS NULL OR dispatched_at < lease_expires_at))
           OR ($5::bigint IS NOT NULL AND owner IS NOT NULL AND lease_expires_at < $1
               AND dispatched_at >= lease_expires_at
               AND $1 - dispatched_at >= LEAST($6::bigint,
                     GREATEST($5::bigint, ($1 - lease_expires_at) / 2)))
           OR ($3::bigint IS NOT NULL AND dispatched_at IS NOT NULL AND dispatched_at < $3
               AND (owner IS NULL OR lease_expires_at < $1))
         )
         ORDER BY pk LIMIT $4`,
        [
          now,
          now - options.neverDispatchedGraceSeconds * 1000,
          options.staleDispatchSeconds === undefined
            ? null
            : now - options.staleDispatchSeconds * 1000,
          options.limit ?? 1000,
          redispatch ? Math.round(redispatch.min * 1000) : null,
          redispatch ? Math.round(Math.max(redispatch.min, redispatch.max) * 1000) : null,
        ],
      );
      return (r.rows as { pk: number }[]).map((x) => x.pk);
    });
  }

  async markDispatched(pks: number[]): Promise<void> {
    if (pks.length === 0) return;
    await this.query(
      `UPDATE processes SET dispatched_at = ${NOW_SQL} WHERE pk = ANY($1::bigint[])`,
      [pks],
    );
  }

  // --- worker registry ------------------------------------------------------------------------

  async registerWorker(worker: WorkerRegistration): Promise<void> {
    await this.query(
      `INSERT INTO workers (worker_id, hostname, pid, slots_used, slots_total, started_at, last_heartbeat_at)
       VALUES ($1, $2, $3, $4, $5, ${NOW_SQL}, ${NOW_SQL})
       ON CONFLICT (worker_id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid,
         slots_used = excluded.slots_used, slots_total = excluded.slots_total,
         last_heartbeat_at = excluded.last_heartbeat_at`,
      [worker.workerId, worker.hostname, worker.pid, worker.slotsUsed, worker.slotsTotal],
    );
  }

  async unregisterWorker(workerId: string): Promise<void> {
    await this.query('DELETE FROM workers WHERE worker_id = $1', [workerId]);
  }

  async removeStaleWorkers(hostname: string, staleAfterSeconds: number): Promise<string[]> {
    const rows = await this.query<{ worker_id: string }>(
      `DELETE FROM workers WHERE hostname = $1 AND last_heartbeat_at < ${NOW_SQL} - $2::bigint
       RETURNING worker_id`,
      [hostname, Math.round(staleAfterSeconds * 1000)],
    );
    return rows.map((r) => r.worker_id).sort();
  }

  async listWorkers(options: { staleAfterSeconds: number }): Promise<WorkerRecord[]> {
    // One statement: the rows and the database's time at the same instant.
    const rows = await this.query<rules.WorkerRow & { now: number }>(
      `SELECT w.*, n.now FROM (SELECT ${NOW_SQL} AS now) n
       LEFT JOIN workers w ON TRUE ORDER BY w.hostname COLLATE "C", w.started_at, w.worker_id`,
    );
    return rows
      .filter((row) => row.worker_id !== null)
      .map((row) => rules.workerRecordOf(row, Number(row.now), options.staleAfterSeconds));
  }

  // --- reports and cleanup --------------------------------------------------------------------

  async addReport(pk: number, level: ReportLevel, message: string): Promise<void> {
    await this.query(
      `INSERT INTO reports (pk, time, level, message) VALUES ($1, ${NOW_SQL}, $2, $3)`,
      [pk, level, message],
    );
  }

  async deleteProcesses(selection: DeleteSelection): Promise<number[]> {
    return this.tx((c, now) => this.run(c, rules.deleteProcesses(selection, now)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

function storeError(location: string, error: unknown, what = 'process store'): EngineError {
  return new EngineError(
    EngineErrorCodes.storeError,
    `${what} ${location}: ${(error as Error).message}`,
    { cause: error },
  );
}

/** Applies the missing migrations in one transaction, under an advisory lock; refuses a newer schema. */
async function migrate(pool: pg.Pool, location: string): Promise<number> {
  const c = await pool.connect();
  const onError = () => undefined;
  c.on('error', onError);
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query(
      'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at BIGINT NOT NULL)',
    );
    const found =
      (
        (await c.query('SELECT MAX(version) AS v FROM schema_version')).rows[0] as {
          v: number | null;
        }
      ).v ?? 0;
    if (found > POSTGRES_SCHEMA_VERSION) {
      throw new EngineError(
        EngineErrorCodes.storeVersionUnsupported,
        `the process store at ${location} has schema version ${found}, but this @aiida/engine ` +
          `supports versions up to ${POSTGRES_SCHEMA_VERSION}. It was written by a newer version: ` +
          'upgrade @aiida/engine (and the daemon) to use it.',
        { details: { storeVersion: found, supportedVersion: POSTGRES_SCHEMA_VERSION } },
      );
    }
    for (const step of POSTGRES_MIGRATIONS) {
      if (step.version <= found) continue;
      await c.query(step.sql);
      await c.query(`INSERT INTO schema_version (version, applied_at) VALUES ($1, ${NOW_SQL})`, [
        step.version,
      ]);
    }
    await c.query('COMMIT');
    return Math.max(found, POSTGRES_SCHEMA_VERSION);
  } catch (error) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    c.removeListener('error', onError);
    c.release();
  }
}
