import { availableParallelism } from 'node:os';
import { z } from 'zod';

/** The unit of an option's value: seconds, bytes, or none. */
export type OptionUnit = 's' | 'bytes' | null;

/**
 * Where an option may be set: only globally, only on a profile, or both (a profile's value
 * overrides the global one).
 */
export type OptionScope = 'global' | 'profile' | 'both';

/** One entry of the option registry {@link OPTIONS}. */
export interface OptionDefinition<S extends z.ZodType = z.ZodType> {
  /** Dotted name, e.g. `daemon.timeout`. */
  readonly name: string;
  /** Zod type every value must satisfy. */
  readonly schema: S;
  /** Unit of the value: `'s'` for durations (seconds), `'bytes'` for sizes, else `null`. */
  readonly unit: OptionUnit;
  /** The value when neither the profile nor the global options set one. */
  readonly default: z.output<S>;
  /** One sentence that says what the option bounds or changes. */
  readonly description: string;
  /** Whether a running daemon only picks up a change after a restart. */
  readonly needsRestart: boolean;
  /** Where the option may be set. */
  readonly scope: OptionScope;
}

function defineOption<const N extends string, S extends z.ZodType>(
  definition: OptionDefinition<S> & { name: N },
): OptionDefinition<S> & { name: N } {
  return Object.freeze(definition);
}

const seconds = () => z.number().finite();

/**
 * Default of `daemon.max_workers`: 4 workers per CPU. A worker is a Node process (tens of MB) that
 * already runs up to `daemon.worker_process_slots` processes on its event loop, so CPU-bound work
 * gains nothing from more than about one worker per CPU and waiting work needs slots, not workers;
 * 4 per CPU leaves room for bodies that block their worker while a typo such as
 * `aiida daemon start 10000` is refused instead of forking the machine to a halt.
 */
export const DEFAULT_MAX_WORKERS = 4 * availableParallelism();
const count = () => z.number().int();

/**
 * The option registry: every option, its zod type, unit, default, description, whether it needs
 * a daemon restart, and its scope. Durations are in seconds, sizes in bytes.
 */
export const OPTIONS = Object.freeze({
  /**
   * How long a client waits for the daemon to answer, in seconds.
   * @default 10
   */
  'daemon.timeout': defineOption({
    name: 'daemon.timeout',
    schema: seconds().positive(),
    unit: 's',
    default: 10,
    description: 'How long a client waits for the daemon to answer a request.',
    needsRestart: false,
    scope: 'both',
  }),
  /**
   * Number of workers the daemon starts with.
   * @default 1
   */
  'daemon.default_workers': defineOption({
    name: 'daemon.default_workers',
    schema: count().min(1),
    unit: null,
    default: 1,
    description: 'Number of workers the daemon starts with.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Most workers one daemon may run: `start`, `incr` and the supervisor refuse more.
   * @default 4 × the number of CPUs (`os.availableParallelism()`)
   */
  'daemon.max_workers': defineOption({
    name: 'daemon.max_workers',
    schema: count().min(1),
    unit: null,
    default: DEFAULT_MAX_WORKERS,
    description:
      'Most workers one daemon may run (start, incr and the daemon refuse more); default 4 x the number of CPUs: each worker already runs up to daemon.worker_process_slots processes, so more workers than a few per CPU only add memory and contention.',
    needsRestart: false,
    scope: 'both',
  }),
  /**
   * Whether the daemon keeps one warm spare worker: started, loaded and connected, but taking no
   * work, promoted at once when a worker dies (then a new spare is started). Off by default: a
   * worker that dies is rare and loses no process (its leases expire and another takes them
   * over), while the spare is one more idle process and broker connection on every daemon.
   * @default false
   */
  'daemon.warm_spare': defineOption({
    name: 'daemon.warm_spare',
    schema: z.boolean(),
    unit: null,
    default: false,
    description:
      'Keep one warm spare worker (loaded and connected, taking no work) that replaces a worker that dies at once; it is not counted as a worker, and costs one idle process (about 70 MB) and one broker connection.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Maximum number of processes one worker runs at once.
   * @default 200
   */
  'daemon.worker_process_slots': defineOption({
    name: 'daemon.worker_process_slots',
    schema: count().min(1),
    unit: null,
    default: 200,
    description: 'Maximum number of processes one worker runs at once.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * How long a stopping worker lets running steps finish before it forces them, in seconds.
   * @default 30
   */
  'daemon.graceful_timeout': defineOption({
    name: 'daemon.graceful_timeout',
    schema: seconds().nonnegative(),
    unit: 's',
    default: 30,
    description: 'How long a stopping worker lets running steps finish before forcing them.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * How often a worker reports to the supervisor and renews its leases, in seconds.
   * @default 1
   */
  'daemon.worker_heartbeat_interval': defineOption({
    name: 'daemon.worker_heartbeat_interval',
    schema: seconds().positive(),
    unit: 's',
    default: 1,
    description: 'How often a worker reports to the supervisor and renews its leases.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * With `process_control.backend` `core.store`: how often an idle worker looks for runnable
   * processes in the store even when nothing woke it (the safety net for a lost wake-up).
   * @default 1
   */
  'daemon.store_poll_interval': defineOption({
    name: 'daemon.store_poll_interval',
    schema: seconds().positive(),
    unit: 's',
    default: 1,
    description:
      'core.store profiles: longest time a worker waits before looking for runnable processes in the store when no wake-up came.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * How long a worker owns a process without renewing its lease, in seconds; at least 3 ×
   * `daemon.worker_heartbeat_interval`.
   * @default 10
   */
  'daemon.lease_timeout': defineOption({
    name: 'daemon.lease_timeout',
    schema: seconds().positive(),
    unit: 's',
    default: 10,
    description:
      'How long a worker owns a process without renewing its lease; at least 3 x daemon.worker_heartbeat_interval.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Memory above which the supervisor restarts a worker once it drained, in bytes; 0 = no limit.
   * @default 0
   */
  'daemon.worker_max_memory': defineOption({
    name: 'daemon.worker_max_memory',
    schema: count().nonnegative(),
    unit: 'bytes',
    default: 0,
    description: 'Memory above which a worker is restarted after draining; 0 means no limit.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Size at which a daemon log file is rotated, in bytes.
   * @default 10485760
   */
  'daemon.log_max_bytes': defineOption({
    name: 'daemon.log_max_bytes',
    schema: count().positive(),
    unit: 'bytes',
    default: 10 * 1024 * 1024,
    description: 'Size at which a daemon log file is rotated.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Number of rotated daemon log files kept.
   * @default 5
   */
  'daemon.log_backups': defineOption({
    name: 'daemon.log_backups',
    schema: count().nonnegative(),
    unit: null,
    default: 5,
    description: 'Number of rotated daemon log files kept.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * How long to wait for a publisher confirm or an RPC reply from the broker, in seconds.
   * @default 10
   */
  'broker.task_timeout': defineOption({
    name: 'broker.task_timeout',
    schema: seconds().positive(),
    unit: 's',
    default: 10,
    description: 'How long to wait for a publisher confirm or an RPC reply from the broker.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Module specifiers of plugins that register process types, resolved from the profile's
   * plugin base directory.
   * @default []
   */
  'engine.plugins': defineOption({
    name: 'engine.plugins',
    schema: z.array(z.string().min(1)),
    unit: null,
    default: [] as string[],
    description:
      "Module specifiers of plugins that register process types, resolved from the profile's plugin base directory.",
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * How many times a process may lose its owner before it is marked excepted.
   * @default 5
   */
  'engine.max_attempts': defineOption({
    name: 'engine.max_attempts',
    schema: count().min(1),
    unit: null,
    default: 5,
    description: 'How many times a process may lose its owner before it is marked excepted.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Largest a process's inputs may be, as JSON, in bytes; a shell job's stdin is one of its
   * inputs, so this bounds it too. A bigger submit is refused and nothing is stored.
   * @default 4194304 (4 MiB)
   */
  'engine.max_input_bytes': defineOption({
    name: 'engine.max_input_bytes',
    schema: count().positive(),
    unit: 'bytes',
    default: 4 * 1024 * 1024,
    description:
      "Largest a process's inputs may be, as JSON (a shell job's stdin included); a bigger submit, or a workflow's child, is refused and nothing is stored.",
    needsRestart: false,
    scope: 'both',
  }),
  /**
   * Port on 127.0.0.1 where the daemon's supervisor serves `/metrics` (Prometheus text format)
   * from its workers' heartbeats; 0 serves none.
   * @default 0
   */
  'daemon.metrics_port': defineOption({
    name: 'daemon.metrics_port',
    schema: count().min(0).max(65535),
    unit: null,
    default: 0,
    description:
      'Port on 127.0.0.1 where the daemon serves /metrics (Prometheus text format) from its workers; 0 serves none.',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * Minimum level of log lines that are written.
   * @default 'info'
   */
  'logging.level': defineOption({
    name: 'logging.level',
    schema: z.enum(['error', 'warn', 'info', 'debug', 'trace']),
    unit: null,
    default: 'info',
    description: 'Minimum level of log lines that are written (error, warn, info, debug, trace).',
    needsRestart: true,
    scope: 'both',
  }),
  /**
   * How daemon log lines are written: `text` (one readable line each) or `json` (one JSON object
   * a line, with `level`, `time`, `msg`, and `pk`/`worker` where a process or worker is concerned).
   * @default 'text'
   */
  'logging.format': defineOption({
    name: 'logging.format',
    schema: z.enum(['text', 'json']),
    unit: null,
    default: 'text',
    description:
      'How daemon log lines are written: text (readable lines) or json (one JSON object a line, for log shippers).',
    needsRestart: true,
    scope: 'both',
  }),
});

/** The name of a registered option. */
export type OptionName = keyof typeof OPTIONS;

/** The type of the value of option `N`. */
export type OptionValue<N extends OptionName> = z.output<(typeof OPTIONS)[N]['schema']>;

/** Every registered option name, in registry order. */
export const OPTION_NAMES: readonly OptionName[] = Object.freeze(
  Object.keys(OPTIONS) as OptionName[],
);

/** True when `name` is a registered option. */
export function isOptionName(name: string): name is OptionName {
  return Object.hasOwn(OPTIONS, name);
}

/**
 * Rule between two options: a lease must survive at least this many missed heartbeats.
 * `daemon.lease_timeout` >= LEASE_HEARTBEAT_RATIO × `daemon.worker_heartbeat_interval`.
 */
export const LEASE_HEARTBEAT_RATIO = 3;
