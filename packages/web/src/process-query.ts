import { PROCESS_STATES, type ProcessQuery, type ProcessState } from '@aiida/engine';
import { WebError, WebErrorCodes } from './errors.js';

/** Largest page the API serves. */
export const MAX_PAGE_SIZE = 500;

const SORT_KEYS = ['pk', 'type', 'state', 'created', 'modified', 'finished'] as const;
const KNOWN_KEYS = [
  'state',
  'type',
  'exit_status',
  'paused',
  'created_after',
  'created_before',
  'sort',
  'order',
  'offset',
  'limit',
] as const;

function bad(message: string, parameter: string): WebError {
  return new WebError(WebErrorCodes.badRequest, message, { details: { parameter } });
}

function integer(name: string, text: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(text)) throw bad(`'${name}' must be an integer, got '${text}'`, name);
  const value = Number(text);
  if (value < min || value > max) {
    throw bad(`'${name}' must be between ${min} and ${max}, got ${value}`, name);
  }
  return value;
}

function time(name: string, text: string): string {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) {
    throw bad(`'${name}' must be a date and time (ISO 8601), got '${text}'`, name);
  }
  return new Date(ms).toISOString();
}

function oneOf<T extends string>(name: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) {
    throw bad(`'${name}' must be one of ${allowed.join(', ')}; got '${text}'`, name);
  }
  return text as T;
}

/**
 * Turns the query string of `GET /api/processes` into a {@link ProcessQuery}. Every parameter is
 * checked: an unknown or repeated one, a state that does not exist, a number that is not one, a
 * date that does not parse, all throw {@link WebError} `web_bad_request` naming the parameter.
 *
 * Parameters: `state` (comma-separated states), `type`, `exit_status`, `paused` (`true`/`false`),
 * `created_after`, `created_before` (ISO 8601), `sort` (`pk`, `type`, `state`, `created`,
 * `modified`, `finished`), `order` (`asc`/`desc`), `offset`, `limit` (1 to {@link MAX_PAGE_SIZE}).
 */
export function parseProcessQuery(params: URLSearchParams): ProcessQuery {
  const seen = new Set<string>();
  for (const key of params.keys()) {
    if (!(KNOWN_KEYS as readonly string[]).includes(key)) {
      throw bad(`unknown parameter '${key}'; known: ${KNOWN_KEYS.join(', ')}`, key);
    }
    if (seen.has(key)) throw bad(`parameter '${key}' is given more than once`, key);
    seen.add(key);
  }
  const query: ProcessQuery = { limit: 50 };
  const get = (key: (typeof KNOWN_KEYS)[number]) => {
    const value = params.get(key);
    return value === null || value === '' ? undefined : value;
  };
  const state = get('state');
  if (state !== undefined) {
    query.states = state
      .split(',')
      .map((s) => oneOf<ProcessState>('state', s.trim(), PROCESS_STATES));
  }
  const type = get('type');
  if (type !== undefined) {
    if (type.length > 200) throw bad(`'type' is longer than 200 characters`, 'type');
    query.type = type;
  }
  const exitStatus = get('exit_status');
  if (exitStatus !== undefined) {
    query.exitStatus = integer('exit_status', exitStatus, -(2 ** 31), 2 ** 31 - 1);
  }
  const paused = get('paused');
  if (paused !== undefined) query.paused = oneOf('paused', paused, ['true', 'false']) === 'true';
  const after = get('created_after');
  if (after !== undefined) query.createdAfter = time('created_after', after);
  const before = get('created_before');
  if (before !== undefined) query.createdBefore = time('created_before', before);
  const sort = get('sort');
  if (sort !== undefined) query.sort = oneOf('sort', sort, SORT_KEYS);
  const order = get('order');
  if (order !== undefined) query.order = oneOf('order', order, ['asc', 'desc'] as const);
  const offset = get('offset');
  if (offset !== undefined) query.offset = integer('offset', offset, 0, Number.MAX_SAFE_INTEGER);
  const limit = get('limit');
  if (limit !== undefined) query.limit = integer('limit', limit, 1, MAX_PAGE_SIZE);
  return query;
}

/** A pk from a URL path segment; throws `web_bad_request` unless it is a positive integer. */
export function parsePk(text: string): number {
  if (!/^\d{1,15}$/.test(text) || Number(text) < 1) {
    throw bad(`a process pk is a positive integer, got '${text.slice(0, 40)}'`, 'pk');
  }
  return Number(text);
}
