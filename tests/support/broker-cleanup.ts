// Test-only use of @aiida/broker (resolved by jest's @aiida/* mapper). Import it only from tests of
// packages that may use the broker (@aiida/daemon-client may not: its helpers have their own copy).
import { RabbitBroker } from '@aiida/broker';
import type { Profile } from '@aiida/config';

const silent = { info: () => {}, warn: () => {}, error: () => {} };

/**
 * Deletes the queues and exchanges of `profile` (its `aiida-<uuid>` prefix) that a test's daemon,
 * workers or CLI declared. Best effort and quiet: a broker that is not reachable (a test with a
 * wrong port) had nothing declared.
 */
export async function deleteProfileTopology(profile: Profile): Promise<void> {
  const broker = new RabbitBroker({ profile, logger: silent, onError: () => {} });
  try {
    await broker.connect({ timeout: 5 });
    await broker.deleteTopology();
  } catch {
    // Nothing declared, or the broker is down: nothing to clean.
  } finally {
    await broker.close({ timeout: 2 }).catch(() => {});
  }
}
