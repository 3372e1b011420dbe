import { getOption, type Profile } from '@aiida/config';
import type { Clock } from './clock.js';
import { Engine } from './engine.js';
import { type EngineLogger, stderrLogger } from './logger.js';
import { openProcessStore } from './open-store.js';
import { loadPlugins } from './plugins.js';
import type { ControlChannel, TaskDispatcher } from './ports.js';
import { ProfileBroker } from './profile-broker.js';
import { ProcessRegistry } from './registry.js';
import { StoreWorkDispatcher } from './work-signal.js';

/** The engine-related options of a profile, resolved through `@aiida/config`. */
export interface EngineProfileOptions {
  /** `engine.plugins`: module specifiers. */
  plugins: string[];
  /** `engine.max_attempts`. */
  maxAttempts: number;
  /** `engine.max_input_bytes`, bytes. */
  maxInputBytes: number;
  /** `daemon.lease_timeout`, seconds. */
  leaseTimeout: number;
  /** `daemon.worker_heartbeat_interval`, seconds. */
  heartbeatInterval: number;
}

/** Reads the options the engine uses from the profile (profile value, else global, else default). */
export function readEngineOptions(profile: Profile): EngineProfileOptions {
  return {
    plugins: [...getOption('engine.plugins', { profile })],
    maxAttempts: getOption('engine.max_attempts', { profile }),
    maxInputBytes: getOption('engine.max_input_bytes', { profile }),
    leaseTimeout: getOption('daemon.lease_timeout', { profile }),
    heartbeatInterval: getOption('daemon.worker_heartbeat_interval', { profile }),
  };
}

/** Collaborators of {@link openEngine}. */
export interface OpenEngineOptions {
  /**
   * Publishes `continue` tasks. Default: the profile's RabbitMQ broker, connected on first use
   * and closed with the engine; for a `core.store` profile, a {@link StoreWorkDispatcher} (wakes
   * the workers through the store; no broker). `null`: none (submitted rows wait for the
   * daemon's reconciler, or its workers' poll).
   */
  dispatcher?: TaskDispatcher | null;
  /**
   * The control fast path (RPC to a process's worker). Default and `null` as for `dispatcher`;
   * none for a `core.store` profile (the owner finds the store's intents within a heartbeat).
   */
  control?: ControlChannel | null;
  logger?: EngineLogger;
  clock?: Clock;
}

/**
 * Opens the engine of a profile: its store (SQLite or PostgreSQL, by `storage.backend`), a registry with the built-ins and the plugins of
 * `engine.plugins` (resolved from `profile.pluginBaseDir`), and the profile's lease options.
 * Plugins that fail to load are logged and listed in `engine.pluginErrors`; nothing throws for them.
 */
export async function openEngine(
  profile: Profile,
  options: OpenEngineOptions = {},
): Promise<Engine> {
  const resolved = readEngineOptions(profile);
  const logger = options.logger ?? stderrLogger;
  const registry = new ProcessRegistry();
  await loadPlugins(registry, resolved.plugins, profile.pluginBaseDir, logger);
  const store = await openProcessStore(profile, {
    clock: options.clock,
    onIdleError: (error) => logger.warn(`store connection dropped: ${error.message}`),
    // `run()` holds leases in this process too.
    leaseTimeout: resolved.leaseTimeout,
  });
  // core.store: the row is the task; a submit only wakes the workers through the store, and
  // control goes through the store's intents alone (the owner applies them on lease renewal).
  const storeTransport = profile.broker.backend === 'core.store';
  const needsBroker =
    !storeTransport && (options.dispatcher === undefined || options.control === undefined);
  const broker = needsBroker ? new ProfileBroker(profile, logger) : undefined;
  const defaultDispatcher = storeTransport ? new StoreWorkDispatcher(store) : broker;
  return new Engine({
    store,
    registry,
    dispatcher:
      options.dispatcher === undefined ? defaultDispatcher : (options.dispatcher ?? undefined),
    control: options.control === undefined ? broker : (options.control ?? undefined),
    ownedResources: broker ? [broker] : [],
    leaseTimeout: resolved.leaseTimeout,
    heartbeatInterval: resolved.heartbeatInterval,
    maxAttempts: resolved.maxAttempts,
    maxInputBytes: resolved.maxInputBytes,
    logger,
    clock: options.clock,
  });
}
