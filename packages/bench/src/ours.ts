import type { SubmitItem } from '@aiida/engine';
import { BenchProfile } from './aiida-env.js';
import { forceNoDelay } from './children/nodelay.js';
import { BATCH } from './peers.js';
import { pollUntil } from './procs.js';
import { nowMs } from './stats.js';
import type { OursVariant } from './variants.js';

const ACTIVE_STATES = ['created', 'waiting', 'running'] as const;

/** `n` trivial additions, as submit items. */
export function addItems(n: number, offset = 0): SubmitItem[] {
  const items: SubmitItem[] = [];
  for (let i = 0; i < n; i++) {
    items.push({ type: 'core.arithmetic.add', inputs: { x: offset + i, y: 1 } });
  }
  return items;
}

/** Submits `items` with `submitMany`, {@link BATCH} at a time. */
export async function submitInBatches(bp: BenchProfile, items: SubmitItem[]): Promise<void> {
  const engine = await bp.getEngine();
  for (let start = 0; start < items.length; start += BATCH) {
    await engine.submitMany(items.slice(start, start + BATCH));
  }
}

/** True when no process of the profile is active (created, waiting or running). */
export async function noneActive(bp: BenchProfile): Promise<boolean> {
  const engine = await bp.getEngine();
  const active = await engine.listProcesses({ states: [...ACTIVE_STATES], limit: 1 });
  return active.length === 0;
}

/** Throws unless every process of the profile finished (none excepted or killed). */
export async function assertAllFinished(bp: BenchProfile, expected: number): Promise<void> {
  const engine = await bp.getEngine();
  const bad = await engine.listProcesses({ states: ['excepted', 'killed'], limit: 3 });
  if (bad.length > 0) {
    const first = bad[0]!;
    throw new Error(
      `process ${first.pk} ended ${first.state}: ${first.exception ?? first.processStatus ?? ''}`,
    );
  }
  const finished = await engine.listProcesses({ states: ['finished'] });
  if (finished.length !== expected) {
    throw new Error(`expected ${expected} finished processes, found ${finished.length}`);
  }
}

/**
 * Ours end to end: a profile whose daemon runs `workers` workers with `slots` slots each; a
 * repetition submits `n` additions and polls the store until none is active. The profile's
 * storage and transport are those of `options.variant` (default SQLite and RabbitMQ).
 */
export class OursThroughput {
  private profile: BenchProfile | undefined;

  private readonly noDelay: boolean;

  /**
   * `daemon` replaces the supervisor program and adds environment (the profiling wrappers);
   * `noDelay` makes this process's broker connection with TCP_NODELAY forced on (the experiment).
   */
  constructor(
    private readonly name: string,
    private readonly slots: number,
    private readonly daemon: { env?: NodeJS.ProcessEnv; supervisorProgram?: string } = {},
    private readonly options: { noDelay?: boolean; variant?: OursVariant } = {},
  ) {
    this.noDelay = options.noDelay ?? false;
  }

  /** The profile (after {@link setup}). */
  get bp(): BenchProfile {
    if (!this.profile) throw new Error(`${this.name}: setup() first`);
    return this.profile;
  }

  /** Pids of the supervisor and its workers (after {@link setup}). */
  pids: number[] = [];

  /** Makes the profile and starts its daemon with `workers` workers. */
  async setup(workers: number): Promise<void> {
    this.profile = await BenchProfile.open({
      name: this.name,
      options: { 'daemon.worker_process_slots': this.slots },
      ...this.daemon,
      storage: this.options.variant?.storage,
      transport: this.options.variant?.transport,
    });
    await this.bp.startDaemon(workers);
    const restore = this.noDelay ? forceNoDelay() : undefined;
    try {
      await this.bp.getEngine();
    } finally {
      restore?.();
    }
    const status = await this.bp.client.getStatus();
    this.pids = [status.pid, ...status.workers.map((w) => w.pid).filter((p) => p !== null)];
  }

  async runOnce(n: number): Promise<{ seconds: number; submitSeconds: number }> {
    const items = addItems(n);
    const t0 = nowMs();
    await submitInBatches(this.bp, items);
    const submitted = nowMs();
    await pollUntil(() => noneActive(this.bp), {
      timeout: 600,
      interval: 20,
      what: `${n} processes to finish`,
    });
    const seconds = (nowMs() - t0) / 1000;
    await assertAllFinished(this.bp, n);
    // Start the next repetition from an empty store.
    await (await this.bp.getEngine()).deleteProcesses({ olderThan: 0 });
    return { seconds, submitSeconds: (submitted - t0) / 1000 };
  }

  async dispose(): Promise<void> {
    await this.profile?.dispose();
  }
}
