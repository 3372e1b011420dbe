import { getOption, type Profile } from '@aiida/config';
import type { Clock } from './clock.js';
import { Engine } from './engine.js';
import { type EngineLogger, stderrLogger } from './logger.js';
import { loadPlugins } from './plugins.js';
import type { ControlChannel, TaskDispatcher } from './ports.js';
import { ProcessRegistry } from './registry.js';
import { openStore } from './sqlite-process-store.js';

/** The engine-related options of a profile, resolved through `@aiida/config`. */
export interface EngineProfileOptions {
  /** `engine.plugins`: module specifiers. */
  plugins: string[];
  /** `engine.max_attempts`. */
  maxAttempts: number;
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
    leaseTimeout: getOption('daemon.lease_timeout', { profile }),
    heartbeatInterval: getOption('daemon.worker_heartbeat_interval', { profile }),
  };
}

/** Collaborators of {@link openEngine}. */
export interface OpenEngineOptions {
  /** The broker (or any {@link TaskDispatcher}); without it submits wait for the reconciler. */
  dispatcher?: TaskDispatcher;
  /** The broker (or any {@link ControlChannel}) for the control fast path. */
  control?: ControlChannel;
  logger?: EngineLogger;
  clock?: Clock;
}

/**
 * Opens the engine of a profile: its SQLite store, a registry with the built-ins and the plugins of
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
  const store = openStore(profile, { clock: options.clock });
  return new Engine({
    store,
    registry,
    dispatcher: options.dispatcher,
    control: options.control,
    leaseTimeout: resolved.leaseTimeout,
    heartbeatInterval: resolved.heartbeatInterval,
    maxAttempts: resolved.maxAttempts,
    logger,
    clock: options.clock,
  });
}
