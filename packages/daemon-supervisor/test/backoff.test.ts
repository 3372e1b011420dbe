import { crashBackoffDelay, QUICK_FAILURE_WINDOW } from '@aiida/daemon-supervisor';
import fc from 'fast-check';
import { nextFailureCount } from '../src/backoff.js';

describe('crashBackoffDelay', () => {
  test('the first failure is revived at once, then 0.5 s doubling, capped at 15 s', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 8, 50, 5000].map((n) => crashBackoffDelay(n))).toEqual([
      0, 0, 0.5, 1, 2, 4, 8, 15, 15, 15, 15,
    ]);
  });

  test('property: never negative, never above the cap, never decreasing with more failures', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 10_000 }), (n) => {
        const delay = crashBackoffDelay(n);
        return delay >= 0 && delay <= 15 && crashBackoffDelay(n + 1) >= delay;
      }),
    );
  });

  test('options change the start, the factor and the cap', () => {
    expect(crashBackoffDelay(2, { initial: 1, factor: 3, max: 5 })).toBe(1);
    expect(crashBackoffDelay(3, { initial: 1, factor: 3, max: 5 })).toBe(3);
    expect(crashBackoffDelay(4, { initial: 1, factor: 3, max: 5 })).toBe(5);
  });
});

describe('nextFailureCount', () => {
  test('a death before ready or within the window adds one', () => {
    expect(nextFailureCount(0, undefined)).toBe(1);
    expect(nextFailureCount(3, undefined)).toBe(4);
    expect(nextFailureCount(3, QUICK_FAILURE_WINDOW - 0.01)).toBe(4);
  });

  test('a death later in life starts a new count at one (revived at once)', () => {
    expect(nextFailureCount(7, QUICK_FAILURE_WINDOW)).toBe(1);
    expect(nextFailureCount(7, 3600)).toBe(1);
    expect(crashBackoffDelay(nextFailureCount(7, 3600))).toBe(0);
  });
});
