import { hostname } from 'node:os';

/** A new worker id: `host:pid:random`, unique across hosts and restarts. */
export function newWorkerId(): string {
  return `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
}
