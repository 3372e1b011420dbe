/**
 * Races `promise` against a deadline of `seconds`; on expiry rejects with `onTimeout()`. The timer
 * never outlives the race (no open handle after it settles). `seconds` of `Infinity` means no
 * deadline.
 */
export function withDeadline<T>(
  promise: Promise<T>,
  seconds: number,
  onTimeout: () => Error,
): Promise<T> {
  if (!Number.isFinite(seconds)) return promise;
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, seconds * 1000));
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

/** Settles after `promise` or after `seconds`, whichever is first; true when `promise` settled. */
export async function settledWithin(promise: Promise<unknown>, seconds: number): Promise<boolean> {
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await withDeadline(settled, seconds, () => new Error('deadline'));
  } catch {
    return false;
  }
}
