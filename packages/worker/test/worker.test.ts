import type { WorkerToSupervisorMessage } from '@aiida/ipc';
import {
  IdleProcessRunner,
  type ProcessRunner,
  Worker,
  type WorkerBroker,
  type WorkerLifecycleState,
} from '@aiida/worker';

/** A broker whose connect and close are controlled by the test. */
class FakeBroker implements WorkerBroker {
  calls: string[] = [];
  connectError: Error | undefined;
  closeDelayMs = 0;
  async connect(opts?: { timeout?: number }): Promise<void> {
    this.calls.push(`connect(${opts?.timeout})`);
    if (this.connectError) throw this.connectError;
  }
  async close(opts?: { timeout?: number }): Promise<void> {
    this.calls.push(`close(${opts?.timeout})`);
    await new Promise((resolve) => setTimeout(resolve, this.closeDelayMs));
  }
}

function setup(options: { runner?: ProcessRunner; broker?: FakeBroker; standby?: boolean } = {}) {
  const broker = options.broker ?? new FakeBroker();
  const messages: WorkerToSupervisorMessage[] = [];
  const states: WorkerLifecycleState[] = [];
  const worker = new Worker({
    broker,
    runner: options.runner,
    slotsTotal: 7,
    heartbeatInterval: 0.05,
    connectTimeout: 3,
    standby: options.standby,
    channel: (m) => messages.push(m),
    onStateChange: (s) => states.push(s),
  });
  return { broker, messages, states, worker };
}

const waitUntil = async (probe: () => boolean, ms = 2000) => {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
};

test('start connects, sends ready, heartbeats; shutdown drains and closes, in state order', async () => {
  const { broker, messages, states, worker } = setup();
  expect(worker.state).toBe('INITIALIZED');
  await worker.start();
  expect(worker.state).toBe('RUNNING');
  expect(broker.calls).toEqual(['connect(3)']);
  expect(messages[0]).toEqual({ v: 1, type: 'ready', pid: process.pid, slotsTotal: 7 });
  await waitUntil(() => messages.filter((m) => m.type === 'heartbeat').length >= 2);
  const beat = messages.find((m) => m.type === 'heartbeat');
  expect(beat).toMatchObject({ slotsUsed: 0, slotsTotal: 7, activePks: [] });
  if (beat?.type === 'heartbeat') {
    expect(beat.eventLoopLag).toBeGreaterThanOrEqual(0);
    expect(beat.memory).toBeGreaterThan(0);
  }
  await worker.shutdown(1);
  expect(states).toEqual(['RUNNING', 'STOPPING', 'DRAINING', 'DRAINED', 'STOPPED']);
  expect(broker.calls[1]).toMatch(/^close\(/);
  const count = messages.length;
  await new Promise((resolve) => setTimeout(resolve, 120));
  expect(messages).toHaveLength(count); // no heartbeat after stopping
  await worker.stopped;
});

test('an unreachable broker fails the start (FAILED) and sends nothing', async () => {
  const broker = new FakeBroker();
  broker.connectError = new Error('connect ECONNREFUSED 127.0.0.1:5999');
  const { messages, worker } = setup({ broker });
  await expect(worker.start()).rejects.toThrow('ECONNREFUSED');
  expect(worker.state).toBe('FAILED');
  expect(messages).toEqual([]);
  await worker.stopped;
});

test('drain is bounded by the graceful timeout, less the close budget', async () => {
  let drainedWith: number | undefined;
  const runner: ProcessRunner = {
    start: async () => {},
    drain: (timeout) => {
      drainedWith = timeout;
      return new Promise(() => {}); // never finishes by itself
    },
    stats: () => ({ slotsUsed: 3, slotsTotal: 5, activePks: [1, 2, 3] }),
  };
  const { messages, worker } = setup({ runner });
  await worker.start();
  expect(messages[0]).toMatchObject({ type: 'ready', slotsTotal: 5 });
  const t0 = Date.now();
  await worker.shutdown(0.4);
  const elapsed = Date.now() - t0;
  expect(drainedWith).toBeCloseTo(0.3);
  expect(elapsed).toBeGreaterThanOrEqual(250);
  expect(elapsed).toBeLessThan(2000);
  expect(worker.state).toBe('STOPPED');
});

test('shutdown is idempotent and a shutdown during start ends without ready', async () => {
  const { messages, worker } = setup();
  const starting = worker.start();
  const stopping = worker.shutdown(1);
  expect(worker.shutdown(5)).toBe(stopping);
  await expect(starting).rejects.toThrow('stopped while it was starting');
  await stopping;
  expect(worker.state).toBe('STOPPED');
  expect(messages.some((m) => m.type === 'ready')).toBe(false);
});

test('the idle runner reports its slots and takes no work', async () => {
  const runner = new IdleProcessRunner(200);
  expect(runner.stats()).toEqual({ slotsUsed: 0, slotsTotal: 200, activePks: [] });
  await expect(runner.drain()).resolves.toBeUndefined();
});

/** A runner that records prepare, start and drain. */
class RecordingRunner implements ProcessRunner {
  calls: string[] = [];
  async prepare(): Promise<void> {
    this.calls.push('prepare');
  }
  async start(): Promise<void> {
    this.calls.push('start');
  }
  async drain(timeout: number): Promise<void> {
    this.calls.push(`drain(${timeout})`);
  }
  stats() {
    return { slotsUsed: 0, slotsTotal: 7, activePks: [] };
  }
}

test('a warm spare connects and prepares, sends standby, and takes work only once promoted', async () => {
  const runner = new RecordingRunner();
  const { broker, messages, states, worker } = setup({ runner, standby: true });
  const started = worker.start();
  await waitUntil(() => worker.state === 'STANDBY');
  expect(broker.calls).toEqual(['connect(3)']);
  expect(runner.calls).toEqual(['prepare']);
  expect(messages).toEqual([{ v: 1, type: 'standby', pid: process.pid }]);
  // Still waiting: no start, no ready, no heartbeat.
  await new Promise((resolve) => setTimeout(resolve, 120));
  expect(runner.calls).toEqual(['prepare']);
  expect(messages).toHaveLength(1);
  worker.promote();
  await started;
  expect(worker.state).toBe('RUNNING');
  expect(runner.calls).toEqual(['prepare', 'start']);
  expect(messages[1]).toEqual({ v: 1, type: 'ready', pid: process.pid, slotsTotal: 7 });
  await worker.shutdown(1);
  expect(states).toEqual(['STANDBY', 'RUNNING', 'STOPPING', 'DRAINING', 'DRAINED', 'STOPPED']);
});

test('a warm spare stopped before its promotion never starts its runner and releases what it prepared', async () => {
  const runner = new RecordingRunner();
  const { broker, messages, worker } = setup({ runner, standby: true });
  const started = worker.start().then(
    () => 'started',
    (error: Error) => error.message,
  );
  await waitUntil(() => worker.state === 'STANDBY');
  await worker.shutdown(1);
  expect(await started).toBe('the warm spare was stopped before its promotion');
  await worker.stopped;
  expect(worker.state).toBe('STOPPED');
  expect(runner.calls).not.toContain('start');
  expect(runner.calls).toContain('drain(0)');
  expect(broker.calls[1]).toMatch(/^close\(/);
  expect(messages.map((m) => m.type)).toEqual(['standby']);
});

test('promote() on a worker that is not a spare changes nothing', async () => {
  const runner = new RecordingRunner();
  const { worker } = setup({ runner });
  worker.promote();
  await worker.start();
  expect(runner.calls).toEqual(['start']);
  await worker.shutdown(1);
});
