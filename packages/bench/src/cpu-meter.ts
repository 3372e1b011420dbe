import { cpuTimeMs, pidsByComm } from './procs.js';

/** How long the servers' background CPU rate is read before each measured run. */
const BACKGROUND_MS = 1000;

/** The processes whose CPU time a throughput run is split into. */
export const CPU_COMPONENTS = ['bench', 'workers', 'rabbitmq', 'redis', 'postgres'] as const;
export type CpuComponent = (typeof CPU_COMPONENTS)[number];

/**
 * Reads the CPU time (user + system, ms) used so far by: this process (the submitter and poller),
 * a set of worker processes (given by the caller), the RabbitMQ server (`beam.smp`), the Redis
 * server (`redis-server`) and PostgreSQL (every `postgres` process: the server forks one per
 * connection, so they are looked up at each reading). The servers are shared with anyone else using them at the same time:
 * {@link measure} first reads their CPU rate over an idle second and subtracts that background.
 */
export class CpuMeter {
  private readonly rabbitmq = pidsByComm('beam.smp');
  private readonly redis = pidsByComm('redis-server');

  constructor(private readonly workerPids: () => number[]) {}

  read(): Record<CpuComponent, number> {
    const sum = (pids: number[]) => pids.reduce((total, pid) => total + cpuTimeMs(pid), 0);
    const own = process.cpuUsage();
    return {
      bench: (own.user + own.system) / 1000,
      workers: sum(this.workerPids()),
      rabbitmq: sum(this.rabbitmq),
      redis: sum(this.redis),
      postgres: sum(pidsByComm('postgres')),
    };
  }

  /** Runs `work` and returns its result with the CPU ms each component used per item. */
  async measure<T>(
    items: number,
    work: () => Promise<T>,
  ): Promise<{ result: T; perItem: Record<CpuComponent, number> }> {
    // The servers' background load (other users of this RabbitMQ and Redis), per ms.
    const idleStart = this.read();
    const idleT0 = performance.now();
    await new Promise((resolve) => setTimeout(resolve, BACKGROUND_MS));
    const idleEnd = this.read();
    const idleMs = performance.now() - idleT0;
    const background = {
      rabbitmq: (idleEnd.rabbitmq - idleStart.rabbitmq) / idleMs,
      redis: (idleEnd.redis - idleStart.redis) / idleMs,
      postgres: Math.max(0, idleEnd.postgres - idleStart.postgres) / idleMs,
    };

    const before = this.read();
    const t0 = performance.now();
    const result = await work();
    const after = this.read();
    const elapsed = performance.now() - t0;
    const perItem = {} as Record<CpuComponent, number>;
    for (const c of CPU_COMPONENTS) {
      const used = after[c] - before[c];
      const noise = c === 'bench' || c === 'workers' ? 0 : background[c] * elapsed;
      perItem[c] = Math.max(0, used - noise) / items;
    }
    return { result, perItem };
  }
}
