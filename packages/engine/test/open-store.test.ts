import { idleInTransactionTimeoutFor } from '../src/open-store.js';

test('a cut-off holder frees its row locks within a third of the lease, between 1 and 5 s', () => {
  // Well inside the lease: the other hosts' renewals, held up by such locks, still come in time.
  expect(idleInTransactionTimeoutFor(5)).toBeCloseTo(5 / 3);
  expect(idleInTransactionTimeoutFor(9)).toBe(3);
  // Never longer than 5 s (a long lease), never shorter than 1 s (a busy server's pauses).
  expect(idleInTransactionTimeoutFor(60)).toBe(5);
  expect(idleInTransactionTimeoutFor(1.5)).toBe(1);
});
