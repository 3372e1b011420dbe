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
  ClaimResult,
  ControlRequestOutcome,
  DeleteSelection,
  DurationHistogram,
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
  ProcessSortKey,
  ProcessStore,
  ProcessSummary,
  ReportLevel,
  TerminalEffects,
  TerminalResult,
} from './process-store.js';
import { STORE_MIGRATIONS, STORE_SCHEMA_VERSION } from './store-migrations.js';

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
  storage: { config: { filepath: string } };
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

/** The column behind each sort key; ties are broken by pk so pages never overlap. */
const SORT_COLUMNS: Record<ProcessSortKey, string> = {
  pk: 'pk',
  type: 'type',
  state: 'state',
  created: 'created_at',
  modified: 'modified_at',
  finished: 'finished_at',
};

function isTerminal(state: ProcessState): boolean {
  return TERMINAL_STATES.includes(state);
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function parseJson<T = JsonValue>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
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

function emptyEffects(): TerminalEffects {
  return { terminated: [], parentsToDispatch: [], killRequested: [], orphanedGroups: [] };
}

function leaseLost(pk: number, detail: string): EngineError {
  return new EngineError(
    EngineErrorCodes.leaseLost,
    `lease of process ${pk} lost: ${detail}; this holder must stop working on it`,
    { details: { pk } },
  );
}

/**
 * Opens (creating if needed) the SQLite store of a profile, at `profile.storage.config.filepath`.
 * Throws `EngineError('store_version_unsupported')` for a store written by a newer version.
 */
export function openStore(
  profile: StoreProfile,
  options: Omit<SqliteStoreOptions, 'filepath'> = {},
): SqliteProcessStore {
  return new SqliteProcessStore({ ...options, filepath: profile.storage.config.filepath });
}

/**
 * The SQLite implementation of {@link ProcessStore} (better-sqlite3, WAL). Each method is one short
 * `BEGIN IMMEDIATE` transaction; several processes (workers, clients) share the file.
 */
export class SqliteProcessStore implements ProcessStore {
  readonly location: string;
  readonly schemaVersion: number;
  private readonly db: Database.Database;
  private readonly clock: Clock;
  private readonly stmts: ReturnType<SqliteProcessStore['prepare']>;
  private closed = false;
  /** Commits made through this handle (SQLite's `data_version` counts only the others'). */
  private localCommits = 0;

  constructor(options: SqliteStoreOptions) {
    this.location = options.filepath;
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
      this.db.pragma(`busy_timeout = ${Math.round((options.busyTimeout ?? 2) * 1000)}`);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${options.synchronous ?? 'FULL'}`);
      this.db.pragma('foreign_keys = OFF');
      this.schemaVersion = this.migrate();
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
      get: db.prepare('SELECT * FROM processes WHERE pk = ?'),
      getMany: db.prepare(
        'SELECT * FROM processes WHERE pk IN (SELECT value FROM json_each(?)) ORDER BY pk',
      ),
      fence: db.prepare('SELECT owner, epoch, state FROM processes WHERE pk = ?'),
      childBySpawnKey: db.prepare('SELECT * FROM processes WHERE parent_pk = ? AND spawn_key = ?'),
      liveChildren: db.prepare(
        `SELECT pk, owner, lease_expires_at, process_group, state FROM processes
         WHERE parent_pk = ? AND state NOT IN ${TERMINAL_SQL}`,
      ),
      countLiveChildren: db.prepare(
        `SELECT COUNT(*) AS n FROM processes WHERE parent_pk = ? AND state NOT IN ${TERMINAL_SQL}`,
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

  private checkFence(fence: LeaseFence): ProcessRow {
    const row = this.getRow(fence.pk);
    if (!row) throw leaseLost(fence.pk, 'the process no longer exists');
    if (isTerminal(row.state)) throw leaseLost(fence.pk, `it is already ${row.state}`);
    if (row.owner !== fence.ownerId || row.epoch !== fence.epoch) {
      throw leaseLost(
        fence.pk,
        `held by ${row.owner ?? 'no one'} at epoch ${row.epoch}, not ${fence.ownerId} at epoch ${fence.epoch}`,
      );
    }
    return row;
  }

  private fencedParams(fence: LeaseFence) {
    return { pk: fence.pk, owner: fence.ownerId, epoch: fence.epoch, now: this.now() };
  }

  private ownerAlive(row: { owner: string | null; lease_expires_at: number | null }): boolean {
    return row.owner !== null && row.lease_expires_at !== null && row.lease_expires_at > this.now();
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
      lease_expires_at: owned ? now + (extra.leaseSeconds ?? 0) * 1000 : null,
      time_limit: process.timeLimit ?? null,
      now,
      started_at: owned ? now : null,
    }) as ProcessRow;
  }

  /**
   * Makes `pk` terminal (if it is not already) and carries out the consequences in the same
   * transaction: kill live children of a killed/excepted workflow, wake a parent whose children are
   * all done. `byOwner` is false when the row is ended without its holder (kill, poison, limit).
   */
  private terminalize(
    pk: number,
    result: TerminalResult,
    effects: TerminalEffects,
    byOwner: boolean,
  ): void {
    const row = this.getRow(pk);
    if (!row || isTerminal(row.state)) return;
    const now = this.now();
    this.stmts.terminalize.run({
      pk,
      state: result.state,
      outputs:
        result.outputs === undefined || result.outputs === null
          ? null
          : JSON.stringify(result.outputs),
      exit_status: result.exitStatus ?? null,
      exit_message: result.exitMessage ?? null,
      exception: result.exception ?? null,
      process_status: result.processStatus ?? null,
      now,
    });
    this.stmts.deleteIntents.run(pk);
    effects.terminated.push({ pk, state: result.state, from: row.state });
    if (!byOwner && row.process_group !== null) {
      effects.orphanedGroups.push(JSON.parse(row.process_group) as ProcessGroupRecord);
    }
    if (result.state !== 'finished') {
      const reason = `parent process ${pk} was ${result.state}`;
      for (const child of this.stmts.liveChildren.all(pk) as ProcessRow[]) {
        if (this.ownerAlive(child)) {
          this.stmts.insertIntent.run(child.pk, 'kill', reason, 0, now);
          effects.killRequested.push({ pk: child.pk, owner: child.owner!, message: reason });
        } else {
          this.terminalize(
            child.pk,
            { state: 'killed', processStatus: `Killed: ${reason}` },
            effects,
            false,
          );
        }
      }
    }
    if (row.parent_pk !== null) this.wakeParent(row.parent_pk, effects);
  }

  private wakeParent(parentPk: number, effects: TerminalEffects): void {
    const parent = this.getRow(parentPk);
    if (!parent || isTerminal(parent.state) || parent.runnable === 1) return;
    const { n } = this.stmts.countLiveChildren.get(parentPk) as { n: number };
    if (n > 0) return;
    this.stmts.wakeParent.run(this.now(), parentPk);
    if (parent.paused === 0 && !this.ownerAlive(parent)) effects.parentsToDispatch.push(parentPk);
  }

  private pendingKill(pk: number): { message: string | null; force: boolean } | null {
    const intent = this.stmts.killIntent.get(pk) as
      | { message: string | null; force: number }
      | undefined;
    return intent ? { message: intent.message, force: intent.force === 1 } : null;
  }

  // --- creation -------------------------------------------------------------------------------

  async createProcesses(processes: NewProcess[]): Promise<ProcessRecord[]> {
    return this.tx(() => processes.map((p) => toRecord(this.insertRow(p))));
  }

  async createClaimedProcess(
    process: NewProcess,
    ownerId: string,
    leaseSeconds: number,
  ): Promise<{ record: ProcessRecord; lease: Lease }> {
    return this.tx(() => {
      const row = this.insertRow(process, { owner: ownerId, leaseSeconds });
      return { record: toRecord(row), lease: leaseOf(row) };
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
      return { record: toRecord(row), created: true, lease: claimFor ? leaseOf(row) : null };
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
      const where: string[] = [];
      const params: unknown[] = [];
      if (filter.states && filter.states.length > 0) {
        where.push('state IN (SELECT value FROM json_each(?))');
        params.push(JSON.stringify(filter.states));
      }
      if (filter.type !== undefined) {
        where.push('type = ?');
        params.push(filter.type);
      }
      if (filter.parentPk !== undefined) {
        where.push('parent_pk = ?');
        params.push(filter.parentPk);
      }
      if (filter.exitStatus !== undefined) {
        where.push("state = 'finished' AND exit_status = ?");
        params.push(filter.exitStatus);
      }
      if (filter.failed) where.push("state = 'finished' AND exit_status <> 0");
      if (filter.paused !== undefined) {
        where.push('paused = ?');
        params.push(filter.paused ? 1 : 0);
      }
      if (filter.createdAfter !== undefined) {
        where.push('created_at >= ?');
        const since = new Date(filter.createdAfter).getTime();
        if (Number.isNaN(since)) {
          throw new EngineError(
            EngineErrorCodes.internal,
            `listProcesses: createdAfter is not a valid time: ${String(filter.createdAfter)}`,
          );
        }
        params.push(since);
      }
      const order = filter.order === 'asc' ? 'ASC' : 'DESC';
      // pk breaks ties of equal creation times, so the order is stable.
      const orderBy =
        filter.orderBy === 'createdAt' ? `created_at ${order}, pk ${order}` : `pk ${order}`;
      let sql = `SELECT * FROM processes${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ${orderBy}`;
      if (filter.limit !== undefined) {
        sql += ' LIMIT ?';
        params.push(Math.max(0, Math.floor(filter.limit)));
      }
      return (this.db.prepare(sql).all(...params) as ProcessRow[]).map(toRecord);
    });
  }

  async queryProcesses(query: ProcessQuery = {}): Promise<ProcessPage> {
    return this.read(() => {
      const where: string[] = [];
      const params: unknown[] = [];
      if (query.states && query.states.length > 0) {
        where.push('state IN (SELECT value FROM json_each(?))');
        params.push(JSON.stringify(query.states));
      }
      if (query.type !== undefined) {
        where.push('type = ?');
        params.push(query.type);
      }
      if (query.exitStatus !== undefined) {
        where.push('exit_status = ?');
        params.push(query.exitStatus);
      }
      if (query.paused !== undefined) {
        where.push('paused = ?');
        params.push(query.paused ? 1 : 0);
      }
      if (query.createdAfter !== undefined) {
        where.push('created_at >= ?');
        params.push(Date.parse(query.createdAfter));
      }
      if (query.createdBefore !== undefined) {
        where.push('created_at < ?');
        params.push(Date.parse(query.createdBefore));
      }
      const clause = where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
      const total = (
        this.db.prepare(`SELECT COUNT(*) AS n FROM processes${clause}`).get(...params) as {
          n: number;
        }
      ).n;
      const column = SORT_COLUMNS[query.sort ?? 'pk'];
      const order = query.order === 'asc' ? 'ASC' : 'DESC';
      const orderBy = column === 'pk' ? `pk ${order}` : `${column} ${order}, pk ${order}`;
      const limit = Math.max(0, Math.floor(query.limit ?? 50));
      const offset = Math.max(0, Math.floor(query.offset ?? 0));
      const rows = this.db
        .prepare(`SELECT * FROM processes${clause} ORDER BY ${orderBy} LIMIT ? OFFSET ?`)
        .all(...params, limit, offset) as ProcessRow[];
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
    const histogram = (expression: string, condition: string): DurationHistogram => {
      // One pass: a SUM(CASE) per bucket, in milliseconds as stored.
      const buckets = sorted.map((_, i) => `SUM(CASE WHEN d <= ? THEN 1 ELSE 0 END) AS b${i}`);
      const sql = `SELECT COUNT(*) AS n, COALESCE(SUM(d), 0) AS s${buckets.map((b) => `, ${b}`).join('')}
        FROM (SELECT ${expression} AS d FROM processes WHERE ${condition})`;
      const row = this.db.prepare(sql).get(...sorted.map((b) => b * 1000)) as Record<
        string,
        number | null
      >;
      return {
        counts: sorted.map((_, i) => row[`b${i}`] ?? 0),
        count: row.n ?? 0,
        sum: (row.s ?? 0) / 1000,
      };
    };
    return this.read(() => ({
      bounds: sorted,
      queued: histogram('started_at - created_at', 'started_at IS NOT NULL'),
      run: histogram(
        'finished_at - started_at',
        `started_at IS NOT NULL AND finished_at IS NOT NULL AND state IN ${TERMINAL_SQL}`,
      ),
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
      const end = this.clock.now();
      const buckets: ActivityBucket[] = [];
      for (let t = since; t <= end; t += width) {
        buckets.push({ time: iso(t)!, finished: 0, excepted: 0, killed: 0 });
      }
      for (const row of rows) {
        const bucket = buckets[row.bucket];
        if (
          bucket &&
          (row.state === 'finished' || row.state === 'excepted' || row.state === 'killed')
        ) {
          bucket[row.state] += row.n;
        }
      }
      return buckets;
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
    return this.tx(() => this.claimOne(pk, ownerId, leaseSeconds, options));
  }

  async claimMany(
    pks: number[],
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): Promise<ClaimResult[]> {
    if (pks.length === 0) return [];
    return this.tx(() => pks.map((pk) => this.claimOne(pk, ownerId, leaseSeconds, options)));
  }

  private claimOne(
    pk: number,
    ownerId: string,
    leaseSeconds: number,
    options: { maxAttempts: number },
  ): ClaimResult {
    const row = this.getRow(pk);
    if (!row) return { ok: false, reason: 'not_found' };
    if (isTerminal(row.state)) return { ok: false, reason: 'terminal' };
    if (row.paused === 1) return { ok: false, reason: 'paused' };
    if (row.runnable === 0) return { ok: false, reason: 'not_runnable' };
    if (this.ownerAlive(row)) return { ok: false, reason: 'owned' };
    const now = this.now();
    const ownerLost = row.owner !== null;
    const kill = this.pendingKill(pk);
    if (kill) {
      const effects = emptyEffects();
      this.terminalize(
        pk,
        { state: 'killed', processStatus: `Killed: ${kill.message ?? 'killed by request'}` },
        effects,
        false,
      );
      return { ok: false, reason: 'killed', effects };
    }
    if (row.time_limit !== null && row.created_at + row.time_limit * 1000 <= now) {
      const effects = emptyEffects();
      this.terminalize(
        pk,
        { state: 'killed', processStatus: `Killed: time limit of ${row.time_limit} s exceeded` },
        effects,
        false,
      );
      return { ok: false, reason: 'killed', effects };
    }
    let attempts = row.attempts === 0 ? 1 : row.attempts;
    let losses = row.owner_losses;
    if (ownerLost) {
      attempts = row.attempts + 1;
      losses += 1;
      if (losses >= options.maxAttempts) {
        const effects = emptyEffects();
        const reason =
          `owner lost ${losses} times (engine.max_attempts = ${options.maxAttempts}): ` +
          `the last owner was ${row.owner}; its body may crash or stall its worker`;
        this.terminalize(
          pk,
          { state: 'excepted', exception: reason, processStatus: reason },
          effects,
          false,
        );
        this.db
          .prepare('UPDATE processes SET owner_losses = ?, attempts = ? WHERE pk = ?')
          .run(losses, row.attempts, pk);
        return { ok: false, reason: 'poisoned', effects };
      }
    }
    const updated = this.stmts.claim.get({
      pk,
      owner: ownerId,
      lease: now + leaseSeconds * 1000,
      attempts,
      losses,
      now,
    }) as ProcessRow;
    return {
      ok: true,
      lease: leaseOf(updated),
      record: toRecord(updated),
      previousState: row.state,
      ownerLost,
    };
  }

  async renewLeases(ownerId: string, pks: number[], leaseSeconds: number): Promise<LeaseRenewal[]> {
    if (pks.length === 0) return [];
    return this.tx(() => {
      const now = this.now();
      const list = JSON.stringify(pks);
      const held = new Map<
        number,
        { paused: number; created_at: number; time_limit: number | null }
      >();
      for (const r of this.stmts.renew.all(now + leaseSeconds * 1000, ownerId, list) as {
        pk: number;
        paused: number;
        created_at: number;
        time_limit: number | null;
      }[]) {
        held.set(r.pk, r);
      }
      const kills = new Map<number, { message: string | null; force: boolean }>();
      for (const k of this.stmts.killIntents.all(list) as {
        pk: number;
        message: string | null;
        force: number;
      }[]) {
        const previous = kills.get(k.pk);
        kills.set(k.pk, {
          message: previous?.message ?? k.message,
          force: (previous?.force ?? false) || k.force === 1,
        });
      }
      return pks.map((pk): LeaseRenewal => {
        const r = held.get(pk);
        if (!r) return { pk, held: false, paused: false, kill: null, timeLimitExceeded: null };
        const exceeded =
          r.time_limit !== null && r.created_at + r.time_limit * 1000 <= now ? r.time_limit : null;
        return {
          pk,
          held: true,
          paused: r.paused === 1,
          kill: kills.get(pk) ?? null,
          timeLimitExceeded: exceeded,
        };
      });
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
      return { paused: r!.paused === 1, kill: this.pendingKill(fence.pk) };
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
    return this.tx(() => {
      this.checkFence(fence);
      const now = this.now();
      const live = this.stmts.liveChildren.all(fence.pk) as ProcessRow[];
      const text = JSON.stringify(checkpoint);
      if (live.length === 0) {
        this.stmts.keepCheckpoint.run({ pk: fence.pk, checkpoint: text, now });
        return 'continue';
      }
      const pks = live.map((c) => c.pk);
      const shown = waitingOn.length > 0 ? waitingOn.filter((pk) => pks.includes(pk)) : pks;
      this.stmts.park.run({
        pk: fence.pk,
        checkpoint: text,
        status: `Waiting for ${live.length} child process${live.length === 1 ? '' : 'es'}: ${(shown.length > 0 ? shown : pks).join(', ')}`,
        now,
      });
      return 'parked';
    });
  }

  async complete(fence: LeaseFence, result: TerminalResult): Promise<TerminalEffects> {
    return this.tx(() => {
      this.checkFence(fence);
      const effects = emptyEffects();
      this.terminalize(fence.pk, result, effects, true);
      return effects;
    });
  }

  async completeMany(
    items: { fence: LeaseFence; result: TerminalResult }[],
  ): Promise<(TerminalEffects | EngineError)[]> {
    if (items.length === 0) return [];
    return this.tx(() =>
      items.map(({ fence, result }) => {
        try {
          // checkFence throws before anything is written, so a refused item changes nothing.
          this.checkFence(fence);
        } catch (error) {
          return error as EngineError;
        }
        const effects = emptyEffects();
        this.terminalize(fence.pk, result, effects, true);
        return effects;
      }),
    );
  }

  // --- control --------------------------------------------------------------------------------

  async requestPause(pk: number, message: string | null = null): Promise<ControlRequestOutcome> {
    return this.tx((): ControlRequestOutcome => {
      const row = this.getRow(pk);
      if (!row) return { pk, status: 'not_found' };
      if (isTerminal(row.state)) return { pk, status: 'terminal', state: row.state };
      if (row.paused === 1) return { pk, status: 'unchanged' };
      const now = this.now();
      this.stmts.setPaused.run(1, `Paused${message ? `: ${message}` : ''}`, now, pk);
      this.stmts.insertIntent.run(pk, 'pause', message, 0, now);
      if (this.ownerAlive(row)) return { pk, status: 'requested', owner: row.owner! };
      return { pk, status: 'applied' };
    });
  }

  async requestPlay(pk: number): Promise<ControlRequestOutcome> {
    return this.tx((): ControlRequestOutcome => {
      const row = this.getRow(pk);
      if (!row) return { pk, status: 'not_found' };
      if (isTerminal(row.state)) return { pk, status: 'terminal', state: row.state };
      if (row.paused === 0) return { pk, status: 'unchanged' };
      const now = this.now();
      this.stmts.setPaused.run(0, null, now, pk);
      this.stmts.insertIntent.run(pk, 'play', null, 0, now);
      if (this.ownerAlive(row)) return { pk, status: 'requested', owner: row.owner! };
      const dispatch = row.runnable === 1;
      if (dispatch) this.stmts.undispatch.run(pk);
      return { pk, status: 'applied', dispatch };
    });
  }

  async requestKill(
    pk: number,
    message: string | null,
    force: boolean,
  ): Promise<ControlRequestOutcome> {
    return this.tx((): ControlRequestOutcome => {
      const row = this.getRow(pk);
      if (!row) return { pk, status: 'not_found' };
      if (isTerminal(row.state)) return { pk, status: 'terminal', state: row.state };
      const now = this.now();
      if (this.ownerAlive(row)) {
        this.stmts.insertIntent.run(pk, 'kill', message, force ? 1 : 0, now);
        return { pk, status: 'requested', owner: row.owner! };
      }
      const effects = emptyEffects();
      this.terminalize(
        pk,
        { state: 'killed', processStatus: `Killed: ${message ?? 'killed by request'}` },
        effects,
        false,
      );
      return { pk, status: 'applied', effects };
    });
  }

  async killExpired(): Promise<TerminalEffects> {
    return this.tx(() => {
      const effects = emptyEffects();
      const rows = this.stmts.expired.all({ now: this.now() }) as {
        pk: number;
        time_limit: number;
      }[];
      for (const r of rows) {
        this.terminalize(
          r.pk,
          { state: 'killed', processStatus: `Killed: time limit of ${r.time_limit} s exceeded` },
          effects,
          false,
        );
      }
      return effects;
    });
  }

  // --- reconciler -----------------------------------------------------------------------------

  async electLeader(ownerId: string, leaseSeconds: number): Promise<boolean> {
    return this.tx(() => {
      const now = this.now();
      const row = this.stmts.leader.get() as
        | { owner: string; lease_expires_at: number }
        | undefined;
      if (row && row.owner !== ownerId && row.lease_expires_at > now) return false;
      this.stmts.setLeader.run(ownerId, now + leaseSeconds * 1000);
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

  // --- reports and cleanup --------------------------------------------------------------------

  async addReport(pk: number, level: ReportLevel, message: string): Promise<void> {
    this.tx(() => this.stmts.addReport.run(pk, this.now(), level, message));
  }

  async deleteProcesses(selection: DeleteSelection): Promise<number[]> {
    return this.tx(() => {
      let roots: number[];
      const strict = 'pks' in selection;
      if ('pks' in selection) {
        roots = [...new Set(selection.pks)];
      } else {
        const states = selection.states ?? TERMINAL_STATES;
        const active = states.filter((s) => !isTerminal(s));
        if (active.length > 0) {
          throw new EngineError(
            EngineErrorCodes.processActive,
            `refusing to delete processes in active state(s) ${active.join(', ')}: only terminal ` +
              `processes (${TERMINAL_STATES.join(', ')}) can be deleted; kill them first`,
            { details: { states: active } },
          );
        }
        roots = (
          this.stmts.oldTerminal.all(
            this.now() - selection.olderThan * 1000,
            JSON.stringify(states),
          ) as { pk: number }[]
        ).map((r) => r.pk);
      }
      if (roots.length === 0) return [];
      const tree = this.stmts.descendants.all(JSON.stringify(roots)) as {
        pk: number;
        state: ProcessState;
        parent_pk: number | null;
      }[];
      const inTree = new Set(tree.map((r) => r.pk));
      const blocked = new Set<number>();
      for (const r of tree) {
        if (!isTerminal(r.state)) blocked.add(r.pk);
        if (r.parent_pk !== null && !inTree.has(r.parent_pk)) {
          const parent = this.getRow(r.parent_pk);
          if (parent && !isTerminal(parent.state)) blocked.add(r.parent_pk);
        }
      }
      if (blocked.size > 0) {
        if (strict) {
          const list = [...blocked].sort((a, b) => a - b);
          throw new EngineError(
            EngineErrorCodes.processActive,
            `refusing to delete: process(es) ${list.join(', ')} are still active (not finished, ` +
              'excepted or killed). Kill them or wait for them to end, then delete again. Nothing was deleted.',
            { details: { pks: list } },
          );
        }
        // By age: skip whole trees that touch an active process.
        const keep = new Set<number>();
        for (const root of roots) {
          const sub = this.stmts.descendants.all(JSON.stringify([root])) as {
            pk: number;
            state: ProcessState;
            parent_pk: number | null;
          }[];
          const touches = sub.some(
            (r) =>
              blocked.has(r.pk) ||
              (r.parent_pk !== null && blocked.has(r.parent_pk) && r.pk === root),
          );
          if (touches) for (const r of sub) keep.add(r.pk);
        }
        for (const pk of keep) inTree.delete(pk);
      }
      const doomed = JSON.stringify([...inTree]);
      this.stmts.deleteRowIntents.run(doomed);
      this.stmts.deleteRowReports.run(doomed);
      this.stmts.deleteRows.run(doomed);
      return [...inTree].sort((a, b) => a - b);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

function leaseOf(row: ProcessRow): Lease {
  return {
    pk: row.pk,
    ownerId: row.owner!,
    epoch: row.epoch,
    attempt: row.attempts,
    expiresAt: row.lease_expires_at!,
  };
}
