import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import {
  calculation,
  exitCode,
  if_,
  type ProcessDefinition,
  return_,
  step,
  while_,
  workflow,
} from './definitions.js';
import { describeError } from './errors.js';
import { type EngineLogger, stderrLogger } from './logger.js';
import type { PluginLoadError, ProcessRegistry } from './registry.js';

/**
 * What a plugin's `register(registry, api)` receives as `api`: the definition builders and the zod
 * this engine uses, so a plugin needs no import of its own to define processes.
 */
export const pluginApi = Object.freeze({
  calculation,
  workflow,
  step,
  if_,
  while_,
  return_,
  exitCode,
  z,
});

/** The `api` argument of a plugin's `register`. */
export type PluginApi = typeof pluginApi;

/**
 * The shape of a plugin module: `export function register(registry, api)`, or a default export
 * that is an array of definitions.
 */
export interface PluginModule {
  register?: (registry: ProcessRegistry, api: PluginApi) => void | Promise<void>;
  default?: readonly ProcessDefinition[];
}

/**
 * Imports each plugin module specifier, resolved from `baseDir` (the profile's plugin base
 * directory, as if required from a file there), and lets it register its types. Never throws: a
 * plugin that fails to resolve, import or register is logged, recorded in
 * `registry.pluginErrors`, and returned; the other plugins still load.
 */
export async function loadPlugins(
  registry: ProcessRegistry,
  specs: readonly string[],
  baseDir: string,
  logger: EngineLogger = stderrLogger,
): Promise<PluginLoadError[]> {
  const errors: PluginLoadError[] = [];
  const require = createRequire(join(baseDir, 'noop.js'));
  for (const spec of specs) {
    let stage = 'resolve';
    try {
      const file = require.resolve(spec);
      stage = 'import';
      const mod = (await import(pathToFileURL(file).href)) as PluginModule;
      stage = 'register';
      if (typeof mod.register === 'function') {
        await mod.register(registry, pluginApi);
      } else if (Array.isArray(mod.default)) {
        for (const definition of mod.default) registry.register(definition);
      } else {
        throw new TypeError(
          'the module exports neither register(registry, api) nor a default array of definitions',
        );
      }
    } catch (error) {
      const { message } = describeError(error);
      const failure: PluginLoadError = {
        spec,
        message: `${stage} failed: ${message}`,
        cause: error,
      };
      errors.push(failure);
      registry.pluginErrors.push(failure);
      logger.error(`plugin '${spec}' could not be loaded (${stage}): ${message}`, {
        plugin: spec,
        baseDir,
      });
    }
  }
  return errors;
}
