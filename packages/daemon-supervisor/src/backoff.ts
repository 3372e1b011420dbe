/** Parameters of the crash-loop backoff, in seconds. */
export interface CrashBackoffOptions {
  /** Delay before the second quick restart. @default 0.5 */
  initial?: number;
  /** Growth factor per further quick failure. @default 2 */
  factor?: number;
  /** Upper bound of the delay. @default 15 */
  max?: number;
}

/**
 * How long a worker waits before its next start, in seconds, after `failures` consecutive quick
 * failures (deaths before ready or within a second of it). The first failure is revived at once;
 * from the second on the delay is `initial × factor^(failures − 2)`, capped at `max`.
 */
export function crashBackoffDelay(failures: number, options: CrashBackoffOptions = {}): number {
  const initial = options.initial ?? 0.5;
  const factor = options.factor ?? 2;
  const max = options.max ?? 15;
  if (failures <= 1) return 0;
  const delay = initial * factor ** (failures - 2);
  return Number.isFinite(delay) ? Math.min(max, delay) : max;
}

/** How long after `ready` a worker's death still counts as a quick failure, in seconds. */
export const QUICK_FAILURE_WINDOW = 1;

/**
 * The number of consecutive quick failures after a worker died: a death before ready or within
 * {@link QUICK_FAILURE_WINDOW} of it adds one; a death later in life starts a new count at one
 * (so that worker is revived at once).
 */
export function nextFailureCount(
  previous: number,
  readyFor: number | undefined,
  window = QUICK_FAILURE_WINDOW,
): number {
  const quick = readyFor === undefined || readyFor < window;
  return quick ? previous + 1 : 1;
}
