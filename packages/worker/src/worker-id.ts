import { getHostname } from '@aiida/config';

/**
 * A new worker id: `host:pid:random`, unique across hosts and restarts. The host is
 * `getHostname()` of `@aiida/config` (`AIIDA_HOSTNAME`, else the machine's name), the name the
 * worker registry and the daemon's files use.
 */
export function newWorkerId(): string {
  return `${getHostname()}:${process.pid}:${Math.random().toString(36).slice(2, 10)}`;
}
