import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type Clock,
  type ControlChannel,
  Engine,
  ProcessExecutor,
  type ProcessExecutorOptions,
  ProcessRegistry,
  type RunOutcome,
  SqliteProcessStore,
  type TaskDispatcher,
} from '@aiida/engine';
import type { RpcReply, RpcRequest } from '@aiida/ipc';

/** A clock the test moves by hand. */
export class FakeClock implements Clock {
  constructor(public t = Date.now()) {}
  now(): number {
    return this.t;
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

/** A temporary folder, removed by `remove()`. */
export function tempDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'aiida-engine-test-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function openTestStore(dir: string, clock?: Clock): SqliteProcessStore {
  return new SqliteProcessStore({ filepath: join(dir, 'store', 'aiida.sqlite'), clock });
}

/**
 * An in-memory broker: records published tasks, can be "down", delivers tasks to a handler, and
 * routes RPC to the executor that holds the pk.
 */
export class FakeBroker implements TaskDispatcher, ControlChannel {
  published: number[] = [];
  down = false;
  onTask: ((pk: number) => void) | undefined;
  executors: ProcessExecutor[] = [];
  rpcCalls: RpcRequest[] = [];

  async publishContinue(pk: number): Promise<void> {
    await this.publishContinueMany([pk]);
  }

  async publishContinueMany(pks: number[]): Promise<void> {
    if (this.down) throw new Error('broker unreachable (fake)');
    this.published.push(...pks);
    if (this.onTask) for (const pk of pks) setImmediate(() => this.onTask?.(pk));
  }

  async callRpc(pk: number, request: RpcRequest): Promise<RpcReply> {
    this.rpcCalls.push(request);
    if (this.down) throw new Error('broker unreachable (fake)');
    const holder = this.executors.find((e) => e.activePks.includes(pk));
    if (!holder) throw new Error(`timeout: nobody serves rpc.${pk}`);
    return holder.handleRpc(request);
  }
}

/** A minimal worker: claims every task delivered by the fake broker and runs it. */
export class FakeWorker {
  readonly executor: ProcessExecutor;
  readonly outcomes: { pk: number; outcome: RunOutcome | 'dropped'; reason?: string }[] = [];
  private readonly running = new Set<Promise<unknown>>();

  constructor(
    broker: FakeBroker,
    options: Omit<ProcessExecutorOptions, 'dispatcher' | 'control'> & { heartbeat?: number },
  ) {
    this.executor = new ProcessExecutor({ ...options, dispatcher: broker, control: broker });
    broker.executors.push(this.executor);
    broker.onTask = (pk) => {
      const p = this.executor.claimAndRun(pk).then((r) => this.outcomes.push(r));
      this.running.add(p);
      p.finally(() => this.running.delete(p));
    };
    if (options.heartbeat) this.executor.startHeartbeat(options.heartbeat);
  }

  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  stop(): void {
    this.executor.stopHeartbeat();
  }
}

export function testEngine(
  store: SqliteProcessStore,
  options: { registry?: ProcessRegistry; broker?: FakeBroker; clock?: Clock } = {},
): Engine {
  return new Engine({
    store,
    registry: options.registry ?? new ProcessRegistry(),
    dispatcher: options.broker,
    control: options.broker,
    leaseTimeout: 5,
    heartbeatInterval: 0.2,
    maxAttempts: 3,
    killGrace: 0.5,
    logger: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    clock: options.clock,
  });
}
