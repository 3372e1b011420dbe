import { ErrorCodes } from '@aiida/ipc';
import {
  DaemonBusyException,
  DaemonException,
  DaemonNotRunningException,
  DaemonStalePidException,
  DaemonTimeoutException,
  daemonExceptionFromSerialized,
  isDaemonBusyException,
  isDaemonException,
  isDaemonNotRunningException,
  isDaemonStalePidException,
  isDaemonTimeoutException,
} from '../src/errors.js';

describe('the Daemon*Exception family', () => {
  it('has the seed hierarchy: three siblings under DaemonException, each with its code', () => {
    const timeout = new DaemonTimeoutException('slow');
    const notRunning = new DaemonNotRunningException('none');
    const stale = new DaemonStalePidException('gone');
    for (const error of [timeout, notRunning, stale]) {
      expect(error).toBeInstanceOf(DaemonException);
      expect(error).toBeInstanceOf(Error);
      expect(isDaemonException(error)).toBe(true);
    }
    expect(timeout.code).toBe(ErrorCodes.timeout);
    expect(notRunning.code).toBe(ErrorCodes.notRunning);
    expect(stale.code).toBe(ErrorCodes.stalePid);
    expect(timeout).not.toBeInstanceOf(DaemonNotRunningException);
    expect(stale).not.toBeInstanceOf(DaemonTimeoutException);
    expect(isDaemonTimeoutException(notRunning)).toBe(false);
    expect(isDaemonStalePidException(stale)).toBe(true);
    expect(isDaemonNotRunningException(notRunning)).toBe(true);
    expect(new DaemonException('x')).not.toBeInstanceOf(DaemonTimeoutException);
    expect(timeout.name).toBe('DaemonTimeoutException');
  });

  it('defaults to code daemon_error and keeps cause and details', () => {
    const cause = new Error('root');
    const error = new DaemonException('boom', { cause, details: { pid: 3 } });
    expect(error.code).toBe(ErrorCodes.daemonError);
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ pid: 3 });
  });

  it('is recognised across duplicated copies of the module', async () => {
    let copy: typeof import('../src/errors.js') | undefined;
    // In ESM mode jest's object is on import.meta.
    const jestObject = (import.meta as unknown as { jest: typeof jest }).jest;
    await jestObject.isolateModulesAsync(async () => {
      copy = await import('../src/errors.js');
    });
    if (!copy) throw new Error('no second copy loaded');
    const foreign = new copy.DaemonTimeoutException('from another copy');
    expect(copy.DaemonTimeoutException).not.toBe(DaemonTimeoutException);
    expect(foreign).toBeInstanceOf(DaemonTimeoutException);
    expect(foreign).toBeInstanceOf(DaemonException);
    expect(isDaemonTimeoutException(foreign)).toBe(true);
    expect(new DaemonStalePidException('here')).toBeInstanceOf(copy.DaemonException);
    expect(foreign).not.toBeInstanceOf(DaemonStalePidException);
  });

  it('does not take plain errors or look-alikes for its own', () => {
    expect(isDaemonException(new Error('x'))).toBe(false);
    expect(isDaemonException({ code: 'timeout', name: 'DaemonTimeoutException' })).toBe(false);
    expect(isDaemonException(null)).toBe(false);
    const busy = new DaemonBusyException('every slot taken');
    expect(busy).toBeInstanceOf(DaemonException);
    expect(busy).not.toBeInstanceOf(DaemonTimeoutException);
    expect(isDaemonBusyException(busy)).toBe(true);
    expect(isDaemonBusyException(new DaemonTimeoutException('slow'))).toBe(false);
    expect({ code: 'timeout' }).not.toBeInstanceOf(DaemonException);
  });

  it('turns a serialized error back into the matching class', () => {
    const cases = [
      [ErrorCodes.timeout, DaemonTimeoutException],
      [ErrorCodes.notRunning, DaemonNotRunningException],
      [ErrorCodes.stalePid, DaemonStalePidException],
      [ErrorCodes.busy, DaemonBusyException],
    ] as const;
    for (const [code, klass] of cases) {
      const error = daemonExceptionFromSerialized({ code, message: 'm' }, { prefix: 'P: ' });
      expect(error).toBeInstanceOf(klass);
      expect(error.code).toBe(code);
      expect(error.message).toBe('P: m');
    }
    const other = daemonExceptionFromSerialized({
      code: ErrorCodes.workerFailed,
      message: 'connect ECONNREFUSED 127.0.0.1:1',
      details: { index: 0 },
    });
    expect(other).toBeInstanceOf(DaemonException);
    expect(other).not.toBeInstanceOf(DaemonTimeoutException);
    expect(other.code).toBe(ErrorCodes.workerFailed);
    expect(other.details).toEqual({ index: 0 });
    const unknown = daemonExceptionFromSerialized({ code: 'from_the_future', message: 'm' });
    expect(unknown.code).toBe(ErrorCodes.daemonError);
    expect(unknown.details).toEqual({ remoteCode: 'from_the_future' });
  });
});
