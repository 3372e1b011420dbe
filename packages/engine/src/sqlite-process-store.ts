import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { type ProcessState, TERMINAL_STATES } from '@aiida/ipc';
import Database from 'better-sqlite3';
import { type Clock, systemClock } from './clock.js';
import { EngineError, EngineErrorCodes } from './errors.js';
import type { JsonValue } from './json.js';
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
import { STORE_MIGRATIONS, STORE_SCHEMA_VERSION } from './store-migrations.js';
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
  runRuleSync,
  type StoreOp,
} from './store-rules.js';
import { FileWorkSignal } from './work-signal.js';

/** Options of {@link SqliteProcessStore}. */
export interface SqliteStoreOptions {
  /** Path of the SQLite file; its folder is created with mode 0700. */
  filepath: string;
  /** Time source for leases and timestamps. @default the wall clock */
  clock?: Clock;
  /**
   * How long a statement waits for another connection's write lock, in seconds. Keep it well
   * below the lease timeout.
   * @default 2
   */
  busyTimeout?: number;
  /**
   * SQLite `synchronous` mode. `FULL` (the default) survives power loss; `NORMAL` survives any
   * process crash but may lose the last commits on power loss.
   * @default 'FULL'
   */
  synchronous?: 'FULL' | 'NORMAL';
}

/** What `openStore` needs of a profile (a `Profile` of `@aiida/config` fits). */
export interface StoreProfile {
  storage:
    | { backend?: 'core.sqlite'; config: { filepath: string } }
    | { backend: 'core.psql'; config: object };
}

interface ProcessRow {
  pk: number;
  uuid: string;
  type: string;
  state: ProcessState;
  paused: number;
  inputs: string;
  outputs: string | null;
  exit_status: number | null;
  exit_message: string | null;
  exception: string | null;
  process_status: string | null;
  checkpoint: string | null;
  parent_pk: number | null;
  spawn_key: string | null;
  owner: string | null;
  epoch: number;
  attempts: number;
  owner_losses: number;
  lease_expires_at: number | null;
  dispatched_at: number | null;
  runnable: number;
  time_limit: number | null;
  created_at: number;
  modified_at: number;
  started_at: number | null;
  finished_at: number | null;
  process_group: string | null;
}

const TERMINAL_SQL = `('${TERMINAL_STATES.join("', '")}')`;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function parseJson<T = JsonValue>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

/** The columns the store rules read ({@link RuleRow}), as this backend's rows hold them. */
type RuleRowColumns = Pick<ProcessRow, RuleColumn>;

function ruleRow(row: RuleRowColumns): RuleRow {
  return {
    pk: row.pk,
    state: row.state,
    paused: row.paused === 1,
    runnable: row.runnable === 1,
    owner: row.owner,
    epoch: row.epoch,
    attempts: row.attempts,
    ownerLosses: row.owner_losses,
    leaseExpiresAt: row.lease_expires_at,
    createdAt: row.created_at,
    timeLimit: row.time_limit,
    parentPk: row.parent_pk,
    processGroup: parseJson<ProcessGroupRecord>(row.process_group),
  };
}

function toRecord(row: ProcessRow): ProcessRecord {
  return {
    pk: row.pk,
    uuid: row.uuid,
    type: row.type,
    state: row.state,
    paused: row.paused === 1,
    inputs: parseJson(row.inputs) as JsonValue,
    outputs: parseJson(row.outputs),
    exitStatus: row.exit_status,
    exitMessage: row.exit_message,
    exception: row.exception,
    processStatus: row.process_status,
    checkpoint: parseJson(row.checkpoint),
    parentPk: row.parent_pk,
    owner: row.owner,
    epoch: row.epoch,
    attempts: row.attempts,
    ownerLosses: row.owner_losses,
    leaseExpiresAt: iso(row.lease_expires_at),
    dispatchedAt: iso(row.dispatched_at),
    runnable: row.runnable === 1,
    timeLimit: row.time_limit,
    createdAt: iso(row.created_at)!,
    modifiedAt: iso(row.modified_at)!,
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
    processGroup: parseJson<ProcessGroupRecord>(row.process_group),
  };
}

/**
 * Opens (creating if needed) the SQLite store of a profile, at `profile.storage.config.filepath`.
 * Throws `EngineError('store_version_unsupported')` for a store written by a newer version.
 */
export function openStore(
  profile: StoreProfile,
  options: Omit<SqliteStoreOptions, 'filepath'> = {},
): SqliteProcessStore {
  const storage = profile.storage;
  if (storage.backend === 'core.psql') {
    throw new EngineError(
      EngineErrorCodes.storeError,
      'openStore opens SQLite stores only, and this profile keeps its processes in PostgreSQL ' +
        '(core.psql): open it with openProcessStore(profile)',
    );
  }
  return new SqliteProcessStore({ ...options, filepath: storage.config.filepath });
}

/** Runs `fn` again while SQLite answers that the database is locked, for up to `timeoutMs`. */
function retryWhileBusy<T>(timeoutMs: number, fn: () => T): T {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      return fn();
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      const busy = typeof code === 'string' && code.startsWith('SQLITE_BUSY');
      if (!busy || Date.now() >= deadline) throw error;
      Atomics.wait(pause, 0, 0, 25); // a synchronous 25 ms pause: the constructor is synchronous
    }
  }
}

/** SQLite's way of writing the shared read queries (store-queries.ts), with its parameters. */
function sqliteDialect(): { dialect: SqlDialect; params: unknown[] } {
  const params: unknown[] = [];
  const dialect: SqlDialect = {
    param: (value) => {
      params.push(value);
      return '?';
    },
    anyOf: (column, values) => {
      params.push(JSON.stringify(values));
      return `${column} IN (SELECT value FROM json_each(?))`;
    },
    bool: (value) => (value ? 1 : 0),
    nulls: () => '',
  };
  return { dialect, params };
}

/**
 * The SQLite implementation of {@link ProcessStore} (better-sqlite3, WAL). Each method is one short
 * `BEGIN IMMEDIATE` transaction; several processes (workers, clients) share the file.
 */
export class SqliteProcessStore implements ProcessStore {
  readonly backend = 'core.sqlite' as const;
  readonly location: string;
  readonly serverVersion: string;
  readonly schemaVersion: number;
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly stmts: ReturnType<SqliteProcessStore['prepare']>;
  private closed = false;
  private readonly workSignal: FileWorkSignal;
  /** Commits made through this handle (SQLite's `data_version` counts only the others'). */
  private localCommits = 0;

  constructor(options: SqliteStoreOptions) {
    this.location = options.filepath;
    this.workSignal = new FileWorkSignal(`${options.filepath}.wake`);
    this.clock = options.clock ?? systemClock;
    const dir = dirname(options.filepath);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const isNew = !existsSync(options.filepath);
    try {
      this.db = new Database(options.filepath);
    } catch (error) {
      throw new EngineError(
        EngineErrorCodes.storeError,
        `cannot open the process store at ${options.filepath}: ${(error as Error).message}`,
        { cause: error },
      );
    }
    try {
      if (isNew) chmodSync(options.filepath, 0o600);
      const busyTimeout = Math.round((options.busyTimeout ?? 2) * 1000);
      this.db.pragma(`busy_timeout = ${busyTimeout}`);
      // Several workers open a new store at once when a daemon starts. Switching a new file to
      // WAL takes an exclusive lock for which SQLite may answer SQLITE_BUSY at once, without its
      // busy handler (seen in CI: a worker failed to start with "database is locked"): both steps
      // are idempotent, so they are tried again until the busy timeout.
      this.schemaVersion = retryWhileBusy(busyTimeout, () => {
        this.db.pragma('journal_mode = WAL');
        return this.migrate();
      });
      this.db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
      this.db.pragma('foreign_keys = OFF');
      this.serverVersion = (
        this.db.prepare('SELECT sqlite_version() AS v').get() as { v: string }
      ).v;
      this.stmts = this.prepare();
    } catch (error) {
      this.db.close();
      throw error;
    }
  }

  private now(): number {
    return this.clock.now();
  }

  private migrate(): number {
    const run = this.db.transaction(() => {
      this.db.exec(
        'CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at INTEGER NOT NULL)',
      );
      const found =
        (
          this.db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as {
            v: number | null;
          }
        ).v ?? 0;
      if (found > STORE_SCHEMA_VERSION) {
        throw new EngineError(
          EngineErrorCodes.storeVersionUnsupported,
          `the process store at ${this.location} has schema version ${found}, but this @aiida/engine ` +
            `supports versions up to ${STORE_SCHEMA_VERSION}. It was written by a newer version: ` +
            'upgrade @aiida/engine (and the daemon) to use it.',
          { details: { storeVersion: found, supportedVersion: STORE_SCHEMA_VERSION } },
        );
      }
      for (const step of STORE_MIGRATIONS) {
        if (step.version <= found) continue;
        this.db.exec(step.sql);
        this.db
          .prepare('INSERT INTO schema_version (version, applied_at) VALUES (?, ?)')
          .run(step.version, this.now());
      }
      return Math.max(found, STORE_SCHEMA_VERSION);
    });
    return run.immediate();
  }

  private prepare() {
    const db = this.db;
    return {
      insert: db.prepare(
        `INSERT INTO processes (uuid, type, state, inputs, parent_pk, spawn_key, owner, epoch, attempts,
           lease_expires_at, time_limit, created_at, modified_at, started_at, runnable)
         VALUES (@uuid, @type, @state, @inputs, @parent_pk, @spawn_key, @owner, @epoch, @attempts,
           @lease_expires_at, @time_limit, @now, @now, @started_at, 1)
         RETURNING *`,
      ),
      insertMany: db.prepare(
        `INSERT INTO processes (uuid, type, state, inputs, time_limit, created_at, modified_at, runnable)
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'created',
           json_extract(value, '$[2]'), json_extract(value, '$[3]'), @now, @now, 1
         FROM json_each(@rows) ORDER BY key
         RETURNING *`,
      ),
      get: db.prepare('SELECT * FROM processes WHERE pk = ?'),
      getMany: db.prepare(
        'SELECT * FROM processes WHERE pk IN (SELECT value FROM json_each(?)) ORDER BY pk',
      ),
      fence: db.prepare('SELECT owner, epoch, state FROM processes WHERE pk = ?'),
      ruleRow: db.prepare(`SELECT ${RULE_COLUMNS} FROM processes WHERE pk = ?`),
      childBySpawnKey: db.prepare('SELECT * FROM processes WHERE parent_pk = ? AND spawn_key = ?'),
      liveChildren: db.prepare(
        `SELECT ${RULE_COLUMNS} FROM processes WHERE parent_pk = ? AND state NOT IN ${TERMINAL_SQL}`,
      ),
      terminalize: db.prepare(
        `UPDATE processes SET state = @state, outputs = @outputs, exit_status = @exit_status,
           exit_message = @exit_message, exception = @exception, process_status = @process_status,
           owner = NULL, lease_expires_at = NULL, runnable = 0, paused = 0, checkpoint = NULL,
           finished_at = @now, modified_at = @now
         WHERE pk = @pk`,
      ),
      deleteIntents: db.prepare('DELETE FROM control_intents WHERE pk = ?'),
      insertIntent: db.prepare(
        'INSERT INTO control_intents (pk, intent, message, force, created_at) VALUES (?, ?, ?, ?, ?)',
      ),
      killIntent: db.prepare(
        `SELECT message, force FROM control_intents WHERE pk = ? AND intent = 'kill'
         ORDER BY force DESC, id LIMIT 1`,
      ),
      killIntents: db.prepare(
        `SELECT pk, message, force FROM control_intents
         WHERE intent = 'kill' AND pk IN (SELECT value FROM json_each(?)) ORDER BY id`,
      ),
      wakeParent: db.prepare(
        'UPDATE processes SET runnable = 1, dispatched_at = NULL, process_status = NULL, modified_at = ? WHERE pk = ?',
      ),
      claim: db.prepare(
        `UPDATE processes SET owner = @owner, epoch = epoch + 1, lease_expires_at = @lease,
           attempts = @attempts, owner_losses = @losses, state = 'running', process_status = NULL,
           started_at = COALESCE(started_at, @now), modified_at = @now
         WHERE pk = @pk RETURNING *`,
      ),
      renew: db.prepare(
        `UPDATE processes SET lease_expires_at = ?
         WHERE owner = ? AND pk IN (SELECT value FROM json_each(?)) AND state NOT IN ${TERMINAL_SQL}
         RETURNING pk, paused, created_at, time_limit`,
      ),
      release: db.prepare(
        `UPDATE processes SET owner = NULL, lease_expires_at = NULL, state = 'waiting',
           dispatched_at = NULL, attempts = attempts + @bump, modified_at = @now,
           checkpoint = CASE WHEN @set_checkpoint THEN @checkpoint ELSE checkpoint END,
           process_status = @process_status
         WHERE pk = @pk AND owner = @owner AND epoch = @epoch AND state NOT IN ${TERMINAL_SQL}
         RETURNING paused, runnable`,
      ),
      checkpoint: db.prepare(
        `UPDATE processes SET checkpoint = @checkpoint, state = COALESCE(@state, state),
           process_status = CASE WHEN @set_status THEN @process_status ELSE process_status END,
           modified_at = @now
         WHERE pk = @pk AND owner = @owner AND epoch = @epoch AND state NOT IN ${TERMINAL_SQL}
         RETURNING paused`,
      ),
      setGroup: db.prepare(
        `UPDATE processes SET process_group = @group, modified_at = @now
         WHERE pk = @pk AND owner = @owner AND epoch = @epoch AND state NOT IN ${TERMINAL_SQL}`,
      ),
      setStatus: db.prepare(
        `UPDATE processes SET process_status = @status, modified_at = @now
         WHERE pk = @pk AND owner = @owner AND epoch = @epoch AND state NOT IN ${TERMINAL_SQL}`,
      ),
      park: db.prepare(
        `UPDATE processes SET checkpoint = @checkpoint, state = 'waiting', runnable = 0, owner = NULL,
           lease_expires_at = NULL, dispatched_at = NULL, process_status = @status, modified_at = @now
         WHERE pk = @pk`,
      ),
      keepCheckpoint: db.prepare(
        'UPDATE processes SET checkpoint = @checkpoint, modified_at = @now WHERE pk = @pk',
      ),
      setPaused: db.prepare(
        'UPDATE processes SET paused = ?, process_status = ?, modified_at = ? WHERE pk = ?',
      ),
      setLosses: db.prepare('UPDATE processes SET owner_losses = ?, attempts = ? WHERE pk = ?'),
      undispatch: db.prepare('UPDATE processes SET dispatched_at = NULL WHERE pk = ?'),
      leader: db.prepare('SELECT owner, lease_expires_at FROM leader_lease WHERE id = 1'),
      setLeader: db.prepare(
        `INSERT INTO leader_lease (id, owner, lease_expires_at) VALUES (1, ?, ?)
         ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, lease_expires_at = excluded.lease_expires_at`,
      ),
      dispatchable: db.prepare(
        `SELECT pk FROM processes
         WHERE state NOT IN ${TERMINAL_SQL} AND paused = 0 AND runnable = 1 AND (
           (owner IS NULL AND dispatched_at IS NULL AND modified_at <= @grace_cutoff)
           OR (owner IS NOT NULL AND lease_expires_at < @now
               AND (dispatched_at IS NULL OR dispatched_at < lease_expires_at))
           OR (@redispatch_min IS NOT NULL AND owner IS NOT NULL AND lease_expires_at < @now
               AND dispatched_at >= lease_expires_at
               AND @now - dispatched_at >= MIN(@redispatch_max,
                     MAX(@redispatch_min, (@now - lease_expires_at) / 2)))
           OR (@stale_cutoff IS NOT NULL AND dispatched_at IS NOT NULL AND dispatched_at < @stale_cutoff
               AND (owner IS NULL OR lease_expires_at < @now))
         )
         ORDER BY pk LIMIT @limit`,
      ),
      claimable: db.prepare(
        `SELECT pk FROM processes
         WHERE ${rules.claimableSql(TERMINAL_SQL, (b) => (b ? '1' : '0'), '@now')}
           AND pk > @after ORDER BY pk LIMIT @limit`,
      ),
      markDispatched: db.prepare(
        'UPDATE processes SET dispatched_at = ? WHERE pk IN (SELECT value FROM json_each(?))',
      ),
      expired: db.prepare(
        `SELECT pk, time_limit FROM processes
         WHERE state NOT IN ${TERMINAL_SQL} AND time_limit IS NOT NULL
           AND created_at + time_limit * 1000 <= @now
           AND (owner IS NULL OR lease_expires_at < @now)`,
      ),
      addReport: db.prepare('INSERT INTO reports (pk, time, level, message) VALUES (?, ?, ?, ?)'),
      reports: db.prepare(
        'SELECT id, pk, time, level, message FROM reports WHERE pk = ? ORDER BY id',
      ),
      descendants: db.prepare(
        `WITH RECURSIVE tree(pk) AS (
           SELECT value FROM json_each(?)
           UNION SELECT p.pk FROM processes p JOIN tree t ON p.parent_pk = t.pk
         )
         SELECT p.pk, p.state, p.parent_pk FROM processes p JOIN tree t ON p.pk = t.pk`,
      ),
      deleteRows: db.prepare('DELETE FROM processes WHERE pk IN (SELECT value FROM json_each(?))'),
      deleteRowIntents: db.prepare(
        'DELETE FROM control_intents WHERE pk IN (SELECT value FROM json_each(?))',
      ),
      deleteRowReports: db.prepare(
        'DELETE FROM reports WHERE pk IN (SELECT value FROM json_each(?))',
      ),
      oldTerminal: db.prepare(
        `SELECT pk FROM processes WHERE finished_at IS NOT NULL AND finished_at <= ?
           AND state IN (SELECT value FROM json_each(?))`,
      ),
    };
  }

  private tx<T>(fn: () => T): T {
    if (this.closed) {
      throw new EngineError(
        EngineErrorCodes.storeError,
        `the process store ${this.location} is closed`,
      );
    }
    try {
      const result = this.db.transaction(fn).immediate();
      this.localCommits++;
      return result;
    } catch (error) {
      if (error instanceof EngineError) throw error;
      throw new EngineError(
        EngineErrorCodes.storeError,
        `process store ${this.location}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  private read<T>(fn: () => T): T {
    if (this.closed) {
      throw new EngineError(
        EngineErrorCodes.storeError,
        `the process store ${this.location} is closed`,
      );
    }
    try {
      return fn();
    } catch (error) {
      throw new EngineError(
        EngineErrorCodes.storeError,
        `process store ${this.location}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }

  // --- internals ------------------------------------------------------------------------------

  private getRow(pk: number): ProcessRow | undefined {
    return this.stmts.get.get(pk) as ProcessRow | undefined;
  }

  private fencedParams(fence: LeaseFence) {
    return { pk: fence.pk, owner: fence.ownerId, epoch: fence.epoch, now: this.now() };
  }

  /** Throws `lease_lost` unless `fence` holds (after a fenced UPDATE changed nothing). */
  private checkFence(fence: LeaseFence): void {
    const row = this.stmts.ruleRow.get(fence.pk) as RuleRowColumns | undefined;
    const violation = fenceViolation(row && ruleRow(row), fence);
    if (violation) throw violation;
  }

  /** Runs a rule of `store-rules.ts` in the current transaction. */
  private run<T>(rule: Rule<T>): T {
    return runRuleSync(rule, (op) => this.exec(op));
  }

  /** The SQL of each operation a rule asks for. */
  private exec(op: StoreOp): unknown {
    const s = this.stmts;
    switch (op.op) {
      case 'row': {
        const row = s.ruleRow.get(op.pk) as RuleRowColumns | undefined;
        return row && ruleRow(row);
      }
      case 'liveChildren':
        return (s.liveChildren.all(op.pk) as RuleRowColumns[]).map(ruleRow);
      case 'claimable':
        return (
          s.claimable.all({ now: op.now, after: op.afterPk, limit: op.limit }) as { pk: number }[]
        ).map((r) => r.pk);
      case 'pendingKill': {
        const intent = s.killIntent.get(op.pk) as
          | { message: string | null; force: number }
          | undefined;
        return intent ? { message: intent.message, force: intent.force === 1 } : null;
      }
      case 'terminalize': {
        const r = op.result;
        s.terminalize.run({
          pk: op.pk,
          state: r.state,
          outputs: r.outputs === undefined || r.outputs === null ? null : JSON.stringify(r.outputs),
          exit_status: r.exitStatus ?? null,
          exit_message: r.exitMessage ?? null,
          exception: r.exception ?? null,
          process_status: r.processStatus ?? null,
          now: op.now,
        });
        s.deleteIntents.run(op.pk);
        return undefined;
      }
      case 'setLosses':
        s.setLosses.run(op.ownerLosses, op.attempts, op.pk);
        return undefined;
      case 'intent':
        s.insertIntent.run(op.pk, op.intent, op.message, op.force ? 1 : 0, op.now);
        return undefined;
      case 'wake':
        s.wakeParent.run(op.now, op.pk);
        return undefined;
      case 'claim':
        return toRecord(
          s.claim.get({
            pk: op.pk,
            owner: op.owner,
            lease: op.leaseExpiresAt,
            attempts: op.attempts,
            losses: op.ownerLosses,
            now: op.now,
          }) as ProcessRow,
        );
      case 'park':
        s.park.run({
          pk: op.pk,
          checkpoint: JSON.stringify(op.checkpoint),
          status: op.processStatus,
          now: op.now,
        });
        return undefined;
      case 'keepCheckpoint':
        s.keepCheckpoint.run({ pk: op.pk, checkpoint: JSON.stringify(op.checkpoint), now: op.now });
        return undefined;
      case 'setPaused':
        s.setPaused.run(op.paused ? 1 : 0, op.processStatus, op.now, op.pk);
        return undefined;
      case 'undispatch':
        s.undispatch.run(op.pk);
        return undefined;
      case 'oldTerminal':
        return (s.oldTerminal.all(op.cutoff, JSON.stringify(op.states)) as { pk: number }[]).map(
          (r) => r.pk,
        );
      case 'tree':
        return (
          s.descendants.all(JSON.stringify(op.roots)) as {
            pk: number;
            state: ProcessState;
            parent_pk: number | null;
          }[]
        ).map((r) => ({ pk: r.pk, state: r.state, parentPk: r.parent_pk }));
      case 'deleteRows': {
        const doomed = JSON.stringify(op.pks);
        s.deleteRowIntents.run(doomed);
        s.deleteRowReports.run(doomed);
        s.deleteRows.run(doomed);
        return undefined;
      }
    }
  }

  private insertRow(
    process: NewProcess,
    extra: {
      parentPk?: number | null;
      spawnKey?: string | null;
      owner?: string | null;
      leaseSeconds?: number;
    } = {},
  ): ProcessRow {
    const now = this.now();
    const owned = extra.owner != null;
    return this.stmts.insert.get({
      uuid: randomUUID(),
      type: process.type,
      state: owned ? 'running' : 'created',
      inputs: JSON.stringify(process.inputs ?? null),
      parent_pk: extra.parentPk ?? null,
      spawn_key: extra.spawnKey ?? null,
      owner: extra.owner ?? null,
      epoch: owned ? 1 : 0,
      attempts: owned ? 1 : 0,
      lease_expires_at: owned ? leaseExpiry(now, extra.leaseSeconds ?? 0) : null,
      time_limit: process.timeLimit ?? null,
      now,
      started_at: owned ? now : null,
    }) as ProcessRow;
  }

  // --- creation -------------------------------------------------------------------------------

  async createProcesses(processes: NewProcess[]): Promise<ProcessRecord[]> {
    if (processes.length === 0) return [];
    // One statement for the whole batch (as on PostgreSQL): the rows travel as one JSON array.
    const rows = JSON.stringify(
      processes.map((p) => [
        randomUUID(),
        p.type,
        JSON.stringify(p.inputs ?? null),
        p.timeLimit ?? null,
      ]),
    );
    return this.tx(() =>
      (this.stmts.insertMany.all({ rows, now: this.now() }) as ProcessRow[])
        .sort((a, b) => a.pk - b.pk)
        .map(toRecord),
    );
  }

  async createClaimedProcess(
    process: NewProcess,
    ownerId: string,
    leaseSeconds: number,
  ): Promise<{ record: ProcessRecord; lease: Lease }> {
    return this.tx(() => {
      const row = this.insertRow(process, { owner: ownerId, leaseSeconds });
      const record = toRecord(row);
      return { record, lease: leaseOf(record) };
    });
  }

  async createChild(
    parent: LeaseFence,
    spawnKey: string,
    process: NewProcess,
    claimFor?: { ownerId: string; leaseSeconds: number },
  ): Promise<{ record: ProcessRecord; created: boolean; lease: Lease | null }> {
    return this.tx(() => {
      this.checkFence(parent);
      const existing = this.stmts.childBySpawnKey.get(parent.pk, spawnKey) as
        | ProcessRow
        | undefined;
      if (existing) return { record: toRecord(existing), created: false, lease: null };
      const row = this.insertRow(process, {
        parentPk: parent.pk,
        spawnKey,
        owner: claimFor?.ownerId ?? null,
        leaseSeconds: claimFor?.leaseSeconds,
      });
      const record = toRecord(row);
      return { record, created: true, lease: claimFor ? leaseOf(record) : null };
    });
  }

  // --- reads ----------------------------------------------------------------------------------

  async getProcess(pk: number): Promise<ProcessRecord | undefined> {
    return this.read(() => {
      const row = this.getRow(pk);
      return row ? toRecord(row) : undefined;
    });
  }

  async getProcesses(pks: number[]): Promise<ProcessRecord[]> {
    return this.read(() =>
      (this.stmts.getMany.all(JSON.stringify(pks)) as ProcessRow[]).map(toRecord),
    );
  }

  async listProcesses(filter: ProcessFilter = {}): Promise<ProcessRecord[]> {
    return this.read(() => {
      const { dialect, params } = sqliteDialect();
      const sql = listProcessesSql(filter, dialect);
      return (this.db.prepare(sql).all(...params) as ProcessRow[]).map(toRecord);
    });
  }

  async queryProcesses(query: ProcessQuery = {}): Promise<ProcessPage> {
    return this.read(() => {
      const { dialect, params } = sqliteDialect();
      const sql = queryProcessesSql(query, dialect);
      const total = (this.db.prepare(sql.count).get(...params.slice(0, -2)) as { n: number }).n;
      const rows = this.db.prepare(sql.page).all(...params) as ProcessRow[];
      return { total, processes: rows.map(toRecord) };
    });
  }

  async summarizeProcesses(): Promise<ProcessSummary> {
    return this.read(() => {
      const counts = this.db
        .prepare(
          `SELECT state, type, COUNT(*) AS count, SUM(paused) AS paused
           FROM processes GROUP BY state, type ORDER BY state, type`,
        )
        .all() as { state: ProcessState; type: string; count: number; paused: number }[];
      const totals = this.db
        .prepare(
          `SELECT COUNT(*) AS total, COALESCE(SUM(epoch), 0) AS claims,
             COALESCE(SUM(owner_losses), 0) AS losses, MAX(modified_at) AS modified
           FROM processes`,
        )
        .get() as { total: number; claims: number; losses: number; modified: number | null };
      return {
        total: totals.total,
        counts,
        claims: totals.claims,
        ownerLosses: totals.losses,
        lastModifiedAt: iso(totals.modified),
      };
    });
  }

  async processDurations(bounds: readonly number[]): Promise<ProcessDurations> {
    const sorted = [...bounds].sort((a, b) => a - b);
    const histogram = (which: 'queued' | 'run') => {
      const { dialect, params } = sqliteDialect();
      const sql = durationHistogramSql(which, sorted, dialect);
      return durationHistogram(
        this.db.prepare(sql).get(...params) as Record<string, number | null>,
        sorted,
      );
    };
    return this.read(() => ({
      bounds: sorted,
      queued: histogram('queued'),
      run: histogram('run'),
    }));
  }

  async changeToken(): Promise<string> {
    return this.read(
      () => `${this.db.pragma('data_version', { simple: true }) as number}.${this.localCommits}`,
    );
  }

  async processActivity(options: { since: string; interval: number }): Promise<ActivityBucket[]> {
    const since = Date.parse(options.since);
    const width = Math.max(1, Math.round(options.interval * 1000));
    return this.read(() => {
      const rows = this.db
        .prepare(
          `SELECT CAST((finished_at - ?) / ? AS INTEGER) AS bucket, state, COUNT(*) AS n FROM processes
           WHERE finished_at IS NOT NULL AND finished_at >= ? AND state IN ${TERMINAL_SQL}
           GROUP BY bucket, state`,
        )
        .all(since, width, since) as { bucket: number; state: ProcessState; n: number }[];
      return activityBuckets(since, width, this.clock.now(), rows);
    });
  }

  async getReports(pk: number): Promise<ProcessReport[]> {
    return this.read(() =>
      (
        this.stmts.reports.all(pk) as {
          id: number;
          pk: number;
          time: number;
          level: ReportLevel;
          message: string;
        }[]
      ).map((r) => ({ ...r, time: iso(r.time)! })),
    );
  }

  // --- leases ---------------------------------------------------------------------------------

  async claim(
    pk: number,
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult> {
    return this.tx(() =>
      this.run(rules.claim(pk, ownerId, leaseSeconds, options.maxAttempts, this.now())),
    );
  }

  async claimMany(
    pks: number[],
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult[]> {
    if (pks.length === 0) return [];
    return this.tx(() => {
      const now = this.now();
      return pks.map((pk) =>
        this.run(rules.claim(pk, ownerId, leaseSeconds, options.maxAttempts, now)),
      );
    });
  }

  async claimRunnable(
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number; limit: number },
  ): Promise<ClaimBatchItem[]> {
    if (options.limit < 1) return [];
    return this.tx(() =>
      this.run(
        rules.claimRunnable(ownerId, leaseSeconds, options.maxAttempts, options.limit, this.now()),
      ),
    );
  }

  async notifyWork(): Promise<void> {
    await this.workSignal.notify();
  }

  async listenForWork(listener: () => void): Promise<() => Promise<void>> {
    return this.workSignal.listen(listener);
  }

  async renewLeases(ownerId: string, pks: number[], leaseSeconds: number): Promise<LeaseRenewal[]> {
    if (pks.length === 0) return [];
    return this.tx(() => {
      const now = this.now();
      const list = JSON.stringify(pks);
      const held = new Map<
        number,
        { paused: boolean; createdAt: number; timeLimit: number | null }
      >();
      for (const r of this.stmts.renew.all(leaseExpiry(now, leaseSeconds), ownerId, list) as {
        pk: number;
        paused: number;
        created_at: number;
        time_limit: number | null;
      }[]) {
        held.set(r.pk, {
          paused: r.paused === 1,
          createdAt: r.created_at,
          timeLimit: r.time_limit,
        });
      }
      const kills = mergeKillIntents(
        (
          this.stmts.killIntents.all(list) as {
            pk: number;
            message: string | null;
            force: number;
          }[]
        ).map((k) => ({ pk: k.pk, message: k.message, force: k.force === 1 })),
      );
      return pks.map((pk) => renewalOf(pk, held.get(pk), kills.get(pk), now));
    });
  }

  async release(
    fence: LeaseFence,
    options: { interrupted?: boolean; checkpoint?: JsonValue; processStatus?: string | null } = {},
  ): Promise<{ dispatch: boolean }> {
    return this.tx(() => {
      const r = this.stmts.release.get({
        ...this.fencedParams(fence),
        bump: options.interrupted ? 1 : 0,
        set_checkpoint: options.checkpoint === undefined ? 0 : 1,
        checkpoint: options.checkpoint === undefined ? null : JSON.stringify(options.checkpoint),
        process_status: options.processStatus ?? null,
      }) as { paused: number; runnable: number } | undefined;
      if (!r) this.checkFence(fence);
      return { dispatch: r!.paused === 0 && r!.runnable === 1 };
    });
  }

  // --- fenced writes --------------------------------------------------------------------------

  async writeCheckpoint(
    fence: LeaseFence,
    checkpoint: JsonValue,
    options: { state?: ProcessState; processStatus?: string | null } = {},
  ): Promise<CheckpointResult> {
    return this.tx(() => {
      const r = this.stmts.checkpoint.get({
        ...this.fencedParams(fence),
        checkpoint: JSON.stringify(checkpoint),
        state: options.state ?? null,
        set_status: options.processStatus === undefined ? 0 : 1,
        process_status: options.processStatus ?? null,
      }) as { paused: number } | undefined;
      if (!r) this.checkFence(fence);
      return {
        paused: r!.paused === 1,
        kill: this.exec({ op: 'pendingKill', pk: fence.pk }) as KillIntent | null,
      };
    });
  }

  async setProcessGroup(fence: LeaseFence, group: ProcessGroupRecord | null): Promise<void> {
    this.tx(() => {
      const r = this.stmts.setGroup.run({
        ...this.fencedParams(fence),
        group: group === null ? null : JSON.stringify(group),
      });
      if (r.changes === 0) this.checkFence(fence);
    });
  }

  async setProcessStatus(fence: LeaseFence, processStatus: string | null): Promise<void> {
    this.tx(() => {
      const r = this.stmts.setStatus.run({ ...this.fencedParams(fence), status: processStatus });
      if (r.changes === 0) this.checkFence(fence);
    });
  }

  async park(
    fence: LeaseFence,
    checkpoint: JsonValue,
    waitingOn: number[],
  ): Promise<'parked' | 'continue'> {
    return this.tx(() => this.run(rules.park(fence, checkpoint, waitingOn, this.now())));
  }

  async complete(fence: LeaseFence, result: TerminalResult): Promise<TerminalEffects> {
    return this.tx(() => this.run(rules.complete(fence, result, this.now())));
  }

  async completeMany(
    items: { fence: LeaseFence; result: TerminalResult }[],
  ): Promise<(TerminalEffects | EngineError)[]> {
    if (items.length === 0) return [];
    return this.tx(() => this.run(rules.completeMany(items, this.now())));
  }

  async completeAndClaimMany(
    completions: { fence: LeaseFence; result: TerminalResult }[],
    claims: { pks: number[]; ownerId: string; leaseSeconds: number; maxAttempts: number },
  ): Promise<{ completions: (TerminalEffects | EngineError)[]; claims: ClaimResult[] }> {
    if (completions.length === 0 && claims.pks.length === 0) return { completions: [], claims: [] };
    return this.tx(() => {
      const now = this.now();
      const ended = completions.length > 0 ? this.run(rules.completeMany(completions, now)) : [];
      const claimed = claims.pks.map((pk) =>
        this.run(rules.claim(pk, claims.ownerId, claims.leaseSeconds, claims.maxAttempts, now)),
      );
      return { completions: ended, claims: claimed };
    });
  }

  // --- control --------------------------------------------------------------------------------

  async requestPause(pk: number, message: string | null = null): Promise<ControlRequestOutcome> {
    return this.tx(() => this.run(rules.requestPause(pk, message, this.now())));
  }

  async requestPlay(pk: number): Promise<ControlRequestOutcome> {
    return this.tx(() => this.run(rules.requestPlay(pk, this.now())));
  }

  async requestKill(
    pk: number,
    message: string | null,
    force: boolean,
  ): Promise<ControlRequestOutcome> {
    return this.tx(() => this.run(rules.requestKill(pk, message, force, this.now())));
  }

  async killExpired(): Promise<TerminalEffects> {
    return this.tx(() => {
      const now = this.now();
      const expired = (this.stmts.expired.all({ now }) as { pk: number; time_limit: number }[]).map(
        (r) => ({ pk: r.pk, timeLimit: r.time_limit }),
      );
      return this.run(rules.killExpired(expired, now));
    });
  }

  // --- reconciler -----------------------------------------------------------------------------

  async electLeader(ownerId: string, leaseSeconds: number): Promise<boolean> {
    return this.tx(() => {
      const now = this.now();
      const row = this.stmts.leader.get() as
        | { owner: string; lease_expires_at: number }
        | undefined;
      const current = row && { owner: row.owner, leaseExpiresAt: row.lease_expires_at };
      if (!rules.mayLead(current, ownerId, now)) return false;
      this.stmts.setLeader.run(ownerId, leaseExpiry(now, leaseSeconds));
      return true;
    });
  }

  async findDispatchable(options: {
    neverDispatchedGraceSeconds: number;
    staleDispatchSeconds?: number;
    expiredRedispatchSeconds?: { min: number; max: number };
    limit?: number;
  }): Promise<number[]> {
    return this.read(() => {
      const now = this.now();
      const redispatch = options.expiredRedispatchSeconds;
      return (
        this.stmts.dispatchable.all({
          now,
          redispatch_min: redispatch ? Math.round(redispatch.min * 1000) : null,
          redispatch_max: redispatch
            ? Math.round(Math.max(redispatch.min, redispatch.max) * 1000)
            : null,
          grace_cutoff: now - options.neverDispatchedGraceSeconds * 1000,
          stale_cutoff:
            options.staleDispatchSeconds === undefined
              ? null
              : now - options.staleDispatchSeconds * 1000,
          limit: options.limit ?? 1000,
        }) as { pk: number }[]
      ).map((r) => r.pk);
    });
  }

  async markDispatched(pks: number[]): Promise<void> {
    if (pks.length === 0) return;
    this.tx(() => this.stmts.markDispatched.run(this.now(), JSON.stringify(pks)));
  }

  // --- worker registry ------------------------------------------------------------------------

  async registerWorker(worker: WorkerRegistration): Promise<void> {
    this.tx(() => {
      const now = this.now();
      this.db
        .prepare(
          `INSERT INTO workers (worker_id, hostname, pid, slots_used, slots_total, started_at, last_heartbeat_at)
           VALUES (@workerId, @hostname, @pid, @slotsUsed, @slotsTotal, @now, @now)
           ON CONFLICT (worker_id) DO UPDATE SET hostname = excluded.hostname, pid = excluded.pid,
             slots_used = excluded.slots_used, slots_total = excluded.slots_total,
             last_heartbeat_at = excluded.last_heartbeat_at`,
        )
        .run({ ...worker, now });
    });
  }

  async unregisterWorker(workerId: string): Promise<void> {
    this.tx(() => this.db.prepare('DELETE FROM workers WHERE worker_id = ?').run(workerId));
  }

  async removeStaleWorkers(hostname: string, staleAfterSeconds: number): Promise<string[]> {
    return this.tx(() => {
      const cutoff = this.now() - staleAfterSeconds * 1000;
      const rows = this.db
        .prepare(
          'DELETE FROM workers WHERE hostname = ? AND last_heartbeat_at < ? RETURNING worker_id',
        )
        .all(hostname, cutoff) as { worker_id: string }[];
      return rows.map((r) => r.worker_id).sort();
    });
  }

  async listWorkers(options: { staleAfterSeconds: number }): Promise<WorkerRecord[]> {
    return this.read(() => {
      const now = this.now();
      const rows = this.db
        .prepare('SELECT * FROM workers ORDER BY hostname, started_at, worker_id')
        .all() as rules.WorkerRow[];
      return rows.map((row) => rules.workerRecordOf(row, now, options.staleAfterSeconds));
    });
  }

  // --- reports and cleanup --------------------------------------------------------------------

  async addReport(pk: number, level: ReportLevel, message: string): Promise<void> {
    this.tx(() => this.stmts.addReport.run(pk, this.now(), level, message));
  }

  async deleteProcesses(selection: DeleteSelection): Promise<number[]> {
    return this.tx(() => this.run(rules.deleteProcesses(selection, this.now())));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
