import { type ConfigError, isConfigError } from '@aiida/config';

/** The ConfigError that `fn` throws; fails the test when it throws something else or nothing. */
export function thrown(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (isConfigError(error)) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}
