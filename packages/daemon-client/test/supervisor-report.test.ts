import { workerStartupDeadline } from '../src/settings.js';
import { parseSupervisorReport } from '../src/supervisor-process.js';

describe('the supervisor report line (fd 3)', () => {
  it('accepts a success with pid and socket path', () => {
    expect(
      parseSupervisorReport({ v: 1, ok: true, pid: 12, socketPath: '/x/daemon.sock' }),
    ).toEqual({
      ok: true,
      pid: 12,
      socketPath: '/x/daemon.sock',
    });
  });

  it('accepts a failure with the error as data, of any version', () => {
    const error = { code: 'worker_failed', message: 'connect ECONNREFUSED 127.0.0.1:1' };
    expect(parseSupervisorReport({ v: 1, ok: false, error })).toEqual({ ok: false, error });
    expect(parseSupervisorReport({ v: 7, ok: false, error })).toEqual({ ok: false, error });
  });

  it('never takes a malformed line for a success', () => {
    for (const value of [
      { v: 1, ok: true, pid: 12 },
      { v: 2, ok: true, pid: 12, socketPath: '/s' },
      { v: 1, ok: true, pid: 12, socketPath: '/s', extra: 1 },
      { v: 1, ok: false },
      'ok',
      null,
    ]) {
      const report = parseSupervisorReport(value);
      expect(report.ok).toBe(false);
      expect(report).toHaveProperty('problem');
    }
  });
});

describe('workerStartupDeadline', () => {
  const settings = {
    timeout: 10,
    defaultWorkers: 1,
    maxWorkers: 8,
    gracefulTimeout: 30,
    brokerTaskTimeout: 10,
  };
  it('is max(timeout, broker.task_timeout + 5)', () => {
    expect(workerStartupDeadline(10, settings)).toBe(15);
    expect(workerStartupDeadline(60, settings)).toBe(60);
    expect(workerStartupDeadline(1, { ...settings, brokerTaskTimeout: 2 })).toBe(7);
  });
});
