/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Seconds before giving up. @default 20 */
  timeout?: number;
  /** Seconds between polls. @default 0.05 */
  interval?: number;
  /** What is awaited, for the failure message. */
  what?: string;
}

/**
 * Polls `probe` until it returns something other than `undefined`/`false`, and returns that. On
 * timeout it fails with what was awaited and the last value or error seen. Never a fixed sleep.
 */
export async function waitFor<T>(
  probe: () => T | Promise<T>,
  options: WaitForOptions = {},
): Promise<Exclude<T, false | undefined>> {
  const timeout = options.timeout ?? 20;
  const interval = options.interval ?? 0.05;
  const deadline = Date.now() + timeout * 1000;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return value as Exclude<T, false | undefined>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? `${last.name}: ${last.message}` : JSON.stringify(last);
      throw new Error(
        `timed out after ${timeout} s waiting for ${options.what ?? 'a condition'}; last seen: ${seen}`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval * 1000));
  }
}
