import { settledWithin, withDeadline } from '../src/deadline.js';

describe('withDeadline', () => {
  it('resolves with the promise when it is in time', async () => {
    await expect(withDeadline(Promise.resolve(3), 1, () => new Error('late'))).resolves.toBe(3);
  });

  it('rejects with the timeout error when late', async () => {
    const never = new Promise<never>(() => {});
    await expect(withDeadline(never, 0.01, () => new Error('late'))).rejects.toThrow('late');
  });

  it('passes the promise through without a deadline for Infinity', async () => {
    await expect(
      withDeadline(Promise.resolve(1), Number.POSITIVE_INFINITY, () => new Error('x')),
    ).resolves.toBe(1);
  });
});

describe('settledWithin', () => {
  it('is true for a settled promise, rejected or not', async () => {
    await expect(settledWithin(Promise.reject(new Error('x')), 1)).resolves.toBe(true);
    await expect(settledWithin(Promise.resolve(), 1)).resolves.toBe(true);
  });

  it('is false when the deadline comes first', async () => {
    await expect(settledWithin(new Promise(() => {}), 0.01)).resolves.toBe(false);
  });
});
