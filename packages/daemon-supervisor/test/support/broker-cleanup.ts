// Test-only use of @aiida/broker (resolved by jest's @aiida/* mapper): the supervisor itself never
// talks to the broker, but its workers declare the test profile's queues, which must go.
import { RabbitBroker } from '@aiida/broker';
import type { Profile } from '@aiida/config';

const silent = { info: () => {}, warn: () => {}, error: () => {} };

/** Deletes the queues and exchanges of `profile` (its `aiida-<uuid>` prefix). Best effort. */
export async function deleteProfileTopology(profile: Profile): Promise<void> {
  const broker = new RabbitBroker({ profile, logger: silent });
  try {
    await broker.connect({ timeout: 5 });
    await broker.deleteTopology();
  } catch {
    // Nothing declared, or the broker is down: nothing to clean.
  } finally {
    await broker.close({ timeout: 2 }).catch(() => {});
  }
}
