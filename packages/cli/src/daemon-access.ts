import type { Profile } from '@aiida/config';
import type { DaemonClient } from '@aiida/daemon-client';

/**
 * The daemon client of a profile (its timeouts default to the profile's `daemon.timeout`).
 * `@aiida/daemon-client` is imported on the first call, so that commands that never ask the
 * daemon don't load it.
 */
export async function daemonClientFor(profile: Profile): Promise<DaemonClient> {
  const { DaemonClient } = await import('@aiida/daemon-client');
  return new DaemonClient(profile);
}

/**
 * Whether the profile's daemon runs (its supervisor is alive and ours). Never throws: a profile
 * whose daemon can't even be asked counts as not running.
 */
export async function isDaemonRunning(profile: Profile): Promise<boolean> {
  try {
    return (await daemonClientFor(profile)).isDaemonRunning;
  } catch {
    return false;
  }
}
