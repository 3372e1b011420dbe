/**
 * Which "ours" the bench measures: our daemon on one storage backend with one transport (how a
 * submitted process reaches a worker). Each entry is one system of `--systems`, one series in the
 * throughput chart and one set of figures in publish, throughput and latency.
 *
 * Adding a pair is one entry here, once `BenchProfile` knows its backends (`STORAGES` and
 * `TRANSPORTS` in aiida-env.ts). The store as the queue (`core.store`, issue 10) is measured on
 * both stores, and is also timed in the control section (start and revival, vs PM2).
 */

/** `storage.backend` of a profile. */
export type StorageBackend = 'core.sqlite' | 'core.psql';
/** `process_control.backend` of a profile. */
export type TransportBackend = 'core.rabbitmq' | 'core.store';

export interface OursVariant {
  /** Its name in `--systems`. */
  system: string;
  /**
   * Inserted after the section in figure ids (`throughput.<prefix>1.bullmq`). Empty for the
   * first pair measured (SQLite + RabbitMQ), so its ids stay those of earlier reports.
   */
  idPrefix: string;
  /** Its name in tables and the chart. */
  label: string;
  storage: StorageBackend;
  transport: TransportBackend;
}

export const OURS_VARIANTS = [
  {
    system: 'ours-sqlite',
    idPrefix: '',
    label: 'ours (SQLite + RabbitMQ)',
    storage: 'core.sqlite',
    transport: 'core.rabbitmq',
  },
  {
    system: 'ours-psql',
    idPrefix: 'psql.',
    label: 'ours (PostgreSQL + RabbitMQ)',
    storage: 'core.psql',
    transport: 'core.rabbitmq',
  },
  {
    system: 'ours-store-sqlite',
    idPrefix: 'store-sqlite.',
    label: 'ours (SQLite, core.store: no broker)',
    storage: 'core.sqlite',
    transport: 'core.store',
  },
  {
    system: 'ours-store-psql',
    idPrefix: 'store-psql.',
    label: 'ours (PostgreSQL, core.store: no broker)',
    storage: 'core.psql',
    transport: 'core.store',
  },
] as const satisfies readonly OursVariant[];

/** The peers (and our TCP_NODELAY experiment) that `--systems` can pick. */
export const PEER_SYSTEMS = ['bullmq', 'graphile', 'raw', 'nodelay'] as const;

/** Every name `--systems` takes. */
export const SYSTEMS: readonly string[] = [...OURS_VARIANTS.map((v) => v.system), ...PEER_SYSTEMS];

/** The variants among `systems`, in table order. */
export function oursVariants(systems: readonly string[]): OursVariant[] {
  return OURS_VARIANTS.filter((v) => systems.includes(v.system));
}

/**
 * The peer whose throughput each pair is held to, with the same number of worker processes: with
 * RabbitMQ, BullMQ (issues 3 and 9); with the store as the queue, graphile-worker, the job queue
 * on PostgreSQL alone (issue 10).
 */
export function throughputGoalPeer(variant: Pick<OursVariant, 'transport'>): 'bullmq' | 'graphile' {
  return variant.transport === 'core.store' ? 'graphile' : 'bullmq';
}

/** Whether a pair's p50 latency is held to BullMQ's (issue 10: the store as the queue). */
export function hasLatencyGoal(variant: Pick<OursVariant, 'transport'>): boolean {
  return variant.transport === 'core.store';
}
