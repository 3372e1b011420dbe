/**
 * Which "ours" the bench measures: our daemon on one storage backend with one transport (how a
 * submitted process reaches a worker). Each entry is one system of `--systems`, one series in the
 * throughput chart and one set of figures in publish, throughput and latency.
 *
 * Adding a pair is one entry here, once `BenchProfile` knows its backends (`STORAGES` and
 * `TRANSPORTS` in aiida-env.ts). For the store as the queue (issue 10), when `core.store` exists:
 *
 *   { system: 'ours-store-sqlite', idPrefix: 'store-sqlite.', label: 'ours (SQLite, no broker)',
 *     storage: 'core.sqlite', transport: 'core.store' },
 *
 * plus a `core.store` entry in `TRANSPORTS` (the profile's `process_control.backend`, how the
 * submitter hears state changes).
 */

/** `storage.backend` of a profile. */
export type StorageBackend = 'core.sqlite' | 'core.psql';
/** `process_control.backend` of a profile. */
export type TransportBackend = 'core.rabbitmq';

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
] as const satisfies readonly OursVariant[];

/** The peers (and our TCP_NODELAY experiment) that `--systems` can pick. */
export const PEER_SYSTEMS = ['bullmq', 'graphile', 'raw', 'nodelay'] as const;

/** Every name `--systems` takes. */
export const SYSTEMS: readonly string[] = [...OURS_VARIANTS.map((v) => v.system), ...PEER_SYSTEMS];

/** The variants among `systems`, in table order. */
export function oursVariants(systems: readonly string[]): OursVariant[] {
  return OURS_VARIANTS.filter((v) => systems.includes(v.system));
}
