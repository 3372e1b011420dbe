import { echo, echoInline, failedMark, okMark } from './output.js';

/**
 * Runs `work` behind a `label... ` line that ends with `OK` or `FAILED` (verdi's
 * `Starting the daemon with 4 workers... OK`). On failure the error is rethrown for the caller's
 * error line; `describe` may add a short note after `OK`.
 */
export async function step<T>(
  label: string,
  work: () => Promise<T>,
  describe?: (result: T) => string | undefined,
): Promise<T> {
  echoInline(`${label}... `);
  let result: T;
  try {
    result = await work();
  } catch (error) {
    echo(failedMark());
    throw error;
  }
  const note = describe?.(result);
  echo(note ? `${okMark()} ${note}` : okMark());
  return result;
}
