import { type ProcessState, TERMINAL_STATES } from '@aiida/ipc';
import type {
  ActivityBucket,
  DurationHistogram,
  ProcessFilter,
  ProcessQuery,
} from './process-store.js';
import { PROCESS_SORT_COLUMNS } from './process-store.js';
import { createdAfterMillis } from './store-rules.js';

/**
 * The read queries of the store port (process lists, the dashboard's pages, histograms and
 * activity), written once for both backends. A backend passes its {@link SqlDialect}: how it
 * writes a parameter, a membership test and a boolean; the filters, orders and the shaping of the
 * results are the same everywhere.
 */

/** How one backend writes the parts of a query that differ between SQL dialects. */
/** The columns of a process row that the store rules read (`RuleRow`): never the JSON payloads. */
export const RULE_COLUMN_NAMES = [
  'pk',
  'state',
  'paused',
  'runnable',
  'owner',
  'epoch',
  'attempts',
  'owner_losses',
  'lease_expires_at',
  'created_at',
  'time_limit',
  'parent_pk',
  'process_group',
] as const;
export type RuleColumn = (typeof RULE_COLUMN_NAMES)[number];
/** {@link RULE_COLUMN_NAMES} as a select list. */
export const RULE_COLUMNS = RULE_COLUMN_NAMES.join(', ');

export interface SqlDialect {
  /** Adds `value` to the statement's parameters and returns its placeholder (`?`, `$3`). */
  param(value: unknown): string;
  /** `column` is one of `values` (a text list). */
  anyOf(column: string, values: readonly string[]): string;
  /** A boolean column's value as the backend stores it. */
  bool(value: boolean): unknown;
  /**
   * What an ORDER BY term needs so that NULLs come first going up and last going down (SQLite's
   * default; PostgreSQL's is the other way round).
   */
  nulls(order: 'ASC' | 'DESC'): string;
}

/** A SELECT over `processes` with its WHERE clause, ready for an ORDER BY and a LIMIT. */
function whereClause(where: string[]): string {
  return where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '';
}

/** The statement of {@link ProcessStore.listProcesses}: filters, order and limit in SQL. */
export function listProcessesSql(filter: ProcessFilter, d: SqlDialect): string {
  const where: string[] = [];
  if (filter.states && filter.states.length > 0) where.push(d.anyOf('state', filter.states));
  if (filter.type !== undefined) where.push(`type = ${d.param(filter.type)}`);
  if (filter.parentPk !== undefined) where.push(`parent_pk = ${d.param(filter.parentPk)}`);
  if (filter.exitStatus !== undefined) {
    where.push(`state = 'finished' AND exit_status = ${d.param(filter.exitStatus)}`);
  }
  if (filter.failed) where.push("state = 'finished' AND exit_status <> 0");
  if (filter.paused !== undefined) where.push(`paused = ${d.param(d.bool(filter.paused))}`);
  if (filter.createdAfter !== undefined) {
    where.push(`created_at >= ${d.param(createdAfterMillis(filter.createdAfter))}`);
  }
  const order = filter.order === 'asc' ? 'ASC' : 'DESC';
  // pk breaks ties of equal creation times, so the order is stable.
  const orderBy =
    filter.orderBy === 'createdAt' ? `created_at ${order}, pk ${order}` : `pk ${order}`;
  const limit =
    filter.limit === undefined ? '' : ` LIMIT ${d.param(Math.max(0, Math.floor(filter.limit)))}`;
  return `SELECT * FROM processes${whereClause(where)} ORDER BY ${orderBy}${limit}`;
}

/**
 * The two statements of {@link ProcessStore.queryProcesses}: the count of every match, and one
 * page of them. They share the dialect's parameters: run `count` with the parameters as they are
 * after this call minus the last two (limit and offset), `page` with all of them.
 */
export function queryProcessesSql(
  query: ProcessQuery,
  d: SqlDialect,
): { count: string; page: string } {
  const where: string[] = [];
  if (query.states && query.states.length > 0) where.push(d.anyOf('state', query.states));
  if (query.type !== undefined) where.push(`type = ${d.param(query.type)}`);
  if (query.exitStatus !== undefined) where.push(`exit_status = ${d.param(query.exitStatus)}`);
  if (query.paused !== undefined) where.push(`paused = ${d.param(d.bool(query.paused))}`);
  if (query.createdAfter !== undefined) {
    where.push(`created_at >= ${d.param(Date.parse(query.createdAfter))}`);
  }
  if (query.createdBefore !== undefined) {
    where.push(`created_at < ${d.param(Date.parse(query.createdBefore))}`);
  }
  const clause = whereClause(where);
  const column = PROCESS_SORT_COLUMNS[query.sort ?? 'pk'];
  const order = query.order === 'asc' ? 'ASC' : 'DESC';
  // Rows without a value (unfinished ones sorted by end) come first going up, last going down,
  // in both backends; ties are broken by pk so that pages never overlap.
  const orderBy =
    column === 'pk' ? `pk ${order}` : `${column} ${order}${d.nulls(order)}, pk ${order}`;
  const limit = d.param(Math.max(0, Math.floor(query.limit ?? 50)));
  const offset = d.param(Math.max(0, Math.floor(query.offset ?? 0)));
  return {
    count: `SELECT COUNT(*) AS n FROM processes${clause}`,
    page: `SELECT * FROM processes${clause} ORDER BY ${orderBy} LIMIT ${limit} OFFSET ${offset}`,
  };
}

/** The duration expressions (milliseconds) and conditions of {@link ProcessStore.processDurations}. */
export const DURATIONS = {
  queued: { expression: 'started_at - created_at', condition: 'started_at IS NOT NULL' },
  run: {
    expression: 'finished_at - started_at',
    condition: `started_at IS NOT NULL AND finished_at IS NOT NULL AND state IN ('${TERMINAL_STATES.join("', '")}')`,
  },
} as const;

/**
 * One pass over the durations: the count, the sum and a count per bucket bound (`b0`, `b1`, ...,
 * compared in milliseconds); read it with {@link durationHistogram}.
 */
export function durationHistogramSql(
  which: keyof typeof DURATIONS,
  bounds: readonly number[],
  d: SqlDialect,
): string {
  const { expression, condition } = DURATIONS[which];
  const buckets = bounds.map(
    (bound, i) => `, SUM(CASE WHEN d <= ${d.param(bound * 1000)} THEN 1 ELSE 0 END) AS b${i}`,
  );
  return `SELECT COUNT(*) AS n, COALESCE(SUM(d), 0) AS s${buckets.join('')}
    FROM (SELECT ${expression} AS d FROM processes WHERE ${condition}) AS durations`;
}

/** A {@link DurationHistogram} from the row of {@link durationHistogramSql}. */
export function durationHistogram(
  row: Record<string, number | string | null> | undefined,
  bounds: readonly number[],
): DurationHistogram {
  const num = (value: number | string | null | undefined) => Number(value ?? 0);
  return {
    counts: bounds.map((_, i) => num(row?.[`b${i}`])),
    count: num(row?.n),
    sum: num(row?.s) / 1000,
  };
}

/** Ended processes per bucket of `width` ms from `since` to `end`, from per-bucket counts. */
export function activityBuckets(
  since: number,
  width: number,
  end: number,
  rows: readonly { bucket: number; state: ProcessState; n: number }[],
): ActivityBucket[] {
  const buckets: ActivityBucket[] = [];
  for (let t = since; t <= end; t += width) {
    buckets.push({ time: new Date(t).toISOString(), finished: 0, excepted: 0, killed: 0 });
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
}
