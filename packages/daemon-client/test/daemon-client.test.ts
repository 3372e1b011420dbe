// DaemonClient with its state file and socket injected: no daemon, no processes.
import { Duplex } from 'node:stream';
import { type DaemonStateFile, ErrorCodes, PROTOCOL_VERSION } from '@aiida/ipc';
import type { DaemonStateAccess, DaemonStateReading } from '../src/daemon-state.js';
import {
  DaemonBusyException,
  DaemonClient,
  DaemonException,
  DaemonNotRunningException,
  DaemonStalePidException,
  DaemonTimeoutException,
} from '../src/index.js';
import { createTestProfile, type TestProfile } from './helpers.js';

const state: DaemonStateFile = {
  v: 1,
  pid: 4242,
  hostname: 'h',
  bootId: 'b',
  startTime: 7,
  socketPath: '/nowhere/daemon.sock',
  protocolVersion: PROTOCOL_VERSION,
  profile: 'unit',
  startedAt: '2025-01-01T00:00:00.000Z',
};

function access(reading: () => DaemonStateReading | undefined): DaemonStateAccess {
  return { path: () => '/nowhere/daemon.json', read: reading, isProcessAlive: () => true };
}

/** A connection that answers every request line with `answer(request)` (undefined: silence). */
function answering(answer: (request: { id: string; type: string }) => unknown | undefined) {
  return () => {
    const conn: Duplex = new Duplex({
      read() {},
      write(chunk, _encoding, callback) {
        const request = JSON.parse(chunk.toString()) as { id: string; type: string };
        const reply = answer(request);
        if (reply !== undefined) conn.push(`${JSON.stringify(reply)}\n`);
        callback();
      },
    });
    return conn;
  };
}

function refusing(code: string) {
  return () => {
    const conn = new Duplex({ read() {}, write: (_c, _e, cb) => cb() });
    setImmediate(() => conn.destroy(Object.assign(new Error(`connect ${code}`), { code })));
    return conn;
  };
}

async function rejection(promise: Promise<unknown>): Promise<DaemonException> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DaemonException) return error;
    throw error;
  }
  throw new Error('expected a DaemonException');
}

describe('DaemonClient (injected state file and socket)', () => {
  let tp: TestProfile;
  const live = (): DaemonStateReading => ({ live: true, state });

  beforeAll(() => {
    tp = createTestProfile({ name: 'unit', options: { 'daemon.timeout': 1 } });
  });
  afterAll(() => tp.remove());

  it('reports no daemon and a stale one from the state file alone', async () => {
    const none = new DaemonClient(tp.profile, { stateAccess: access(() => undefined) });
    expect(none.isDaemonRunning).toBe(false);
    expect(none.getDaemonPid()).toBeNull();
    await expect(none.getStatus()).rejects.toBeInstanceOf(DaemonNotRunningException);

    const stale = new DaemonClient(tp.profile, {
      stateAccess: access(() => ({ live: false, state, reason: 'process 4242 is not running' })),
    });
    expect(stale.isDaemonRunning).toBe(false);
    expect(() => stale.getDaemonPid()).toThrow(DaemonStalePidException);
    const error = await rejection(stale.increaseWorkers(1));
    expect(error).toBeInstanceOf(DaemonStalePidException);
    expect(error.message).toContain('process 4242 is not running');

    const running = new DaemonClient(tp.profile, { stateAccess: access(live) });
    expect(running.isDaemonRunning).toBe(true);
    expect(running.getDaemonPid()).toBe(4242);
  });

  it('turns error answers back into the matching class', async () => {
    const cases: [string, new (...args: never[]) => DaemonException][] = [
      [ErrorCodes.timeout, DaemonTimeoutException],
      [ErrorCodes.stalePid, DaemonStalePidException],
      [ErrorCodes.shuttingDown, DaemonException],
    ];
    for (const [code, klass] of cases) {
      const client = new DaemonClient(tp.profile, {
        stateAccess: access(live),
        connect: answering((r) => ({ v: 1, id: r.id, ok: false, error: { code, message: 'no' } })),
      });
      const error = await rejection(client.decreaseWorkers(1));
      expect(error).toBeInstanceOf(klass);
      expect(error.code).toBe(code);
      expect(error.message).toBe(
        "The daemon for profile 'unit' (pid 4242) refused the 'decr' request: no",
      );
    }
  });

  it('times out after the timeout given, naming the request and the option', async () => {
    const client = new DaemonClient(tp.profile, {
      stateAccess: access(live),
      connect: answering(() => undefined),
    });
    const started = performance.now();
    const error = await rejection(client.getStatus({ timeout: 0.2 }));
    expect((performance.now() - started) / 1000).toBeGreaterThanOrEqual(0.19);
    expect(error).toBeInstanceOf(DaemonTimeoutException);
    expect(error.message).toContain("did not answer the 'status' request within 0.2 s");
    expect(error.message).toContain('daemon.timeout (now 1 s)');
  });

  it('retries a refused socket of a live daemon briefly, then says it does not listen', async () => {
    const client = new DaemonClient(tp.profile, {
      stateAccess: access(live),
      connect: refusing('ECONNREFUSED'),
    });
    const started = performance.now();
    const error = await rejection(client.getStatus({ timeout: 5 }));
    const seconds = (performance.now() - started) / 1000;
    expect(seconds).toBeGreaterThanOrEqual(0.9);
    expect(seconds).toBeLessThan(3);
    expect(error.code).toBe(ErrorCodes.daemonError);
    expect(error.message).toContain('ECONNREFUSED');
    expect(error.message).toContain('/nowhere/daemon.sock');
  });

  it('says the daemon is gone when its socket refuses and its process ended', async () => {
    let calls = 0;
    const client = new DaemonClient(tp.profile, {
      stateAccess: access(() =>
        calls++ === 0 ? live() : { live: false, state, reason: 'process 4242 is not running' },
      ),
      connect: refusing('ENOENT'),
    });
    await expect(client.getStatus()).rejects.toBeInstanceOf(DaemonStalePidException);
  });

  it('refuses a state file of another protocol version, naming both', async () => {
    const client = new DaemonClient(tp.profile, {
      stateAccess: access(() => ({ live: true, state: { ...state, protocolVersion: 3 } })),
    });
    const error = await rejection(client.getStatus());
    expect(error.code).toBe(ErrorCodes.protocolMismatch);
    expect(error.message).toContain('this client speaks version 1');
    expect(error.message).toContain('the daemon speaks version 3');
  });

  it('checks its arguments before doing anything', async () => {
    const client = new DaemonClient(tp.profile, { stateAccess: access(live) });
    for (const call of [
      () => client.increaseWorkers(0),
      () => client.decreaseWorkers(1.5),
      () => client.getStatus({ timeout: -1 }),
      () => client.startDaemon({ numberWorkers: 0 }),
    ]) {
      const error = await rejection(call());
      expect(error.code).toBe(ErrorCodes.invalidRequest);
    }
  });

  it('retries a busy refusal within its deadline, then raises DaemonBusyException', async () => {
    const busy = { v: 1, id: null, ok: false, error: { code: 'busy', message: 'all in use' } };
    let connections = 0;
    const eventually = new DaemonClient(tp.profile, {
      stateAccess: access(live),
      connect: answering((r) =>
        ++connections <= 3 ? busy : { v: 1, id: r.id, ok: true, result: { workers: [] } },
      ),
    });
    await expect(eventually.getWorkerInfo()).resolves.toEqual([]);
    expect(connections).toBe(4);

    // A connection the daemon closed before the request arrived whole is retried the same way.
    let attempts = 0;
    const slowFirst = new DaemonClient(tp.profile, {
      stateAccess: access(live),
      connect: answering((r) =>
        ++attempts === 1
          ? { v: 1, id: null, ok: false, error: { code: 'timeout', message: 'too slow' } }
          : { v: 1, id: r.id, ok: true, result: { workers: [] } },
      ),
    });
    await expect(slowFirst.getWorkerInfo()).resolves.toEqual([]);
    expect(attempts).toBe(2);

    const always = new DaemonClient(tp.profile, {
      stateAccess: access(live),
      connect: answering(() => busy),
    });
    const error = await rejection(always.getStatus({ timeout: 0.5 }));
    expect(error).toBeInstanceOf(DaemonBusyException);
    expect(error.code).toBe(ErrorCodes.busy);
    expect(error.message).toMatch(
      /control socket stayed busy .* for 0\.5 s; the 'status' request was refused \d+ time/,
    );
  });

  it('refuses more workers than daemon.max_workers, naming the option, before doing anything', async () => {
    const small = createTestProfile({ name: 'small', options: { 'daemon.max_workers': 3 } });
    try {
      const client = new DaemonClient(small.profile, {
        stateAccess: access(live),
        supervisorProgram: '/nonexistent/never-spawned.js',
        connect: () => {
          throw new Error('no request may be sent');
        },
      });
      for (const call of [
        () => client.startDaemon({ numberWorkers: 4 }),
        () => client.increaseWorkers(4),
      ]) {
        const error = await rejection(call());
        expect(error.code).toBe(ErrorCodes.tooManyWorkers);
        expect(error.message).toContain('daemon.max_workers');
        expect(error.message).toContain('at most 3 workers');
        expect(error.details).toEqual({ requested: 4, maxWorkers: 3 });
      }
    } finally {
      small.remove();
    }
  });
});
