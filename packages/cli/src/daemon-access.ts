import type { Profile } from '@aiida/config';
import { DaemonClient } from '@aiida/daemon-client';

/** The daemon client of a profile (its timeouts default to the profile's `daemon.timeout`). */
export function daemonClientFor(profile: Profile): DaemonClient {
  return new DaemonClient(profile);
}

/**
 * Whether the profile's daemon runs (its supervisor is alive and ours). Never throws: a profile
 * whose daemon can't even be asked counts as not running.
 */
export async function isDaemonRunning(profile: Profile): Promise<boolean> {
  try {
    return daemonClientFor(profile).isDaemonRunning;
  } catch {
    return false;
  }
}
