import { BUILTIN_DEFINITIONS } from './builtins.js';
import type { ProcessDefinition } from './definitions.js';
import { EngineError, EngineErrorCodes } from './errors.js';

/** A plugin that could not be loaded. */
export interface PluginLoadError {
  /** The module specifier from `engine.plugins`. */
  spec: string;
  /** What went wrong (resolution, import, or registration). */
  message: string;
  cause: unknown;
}

/**
 * Process types by name. Starts with the built-ins (`core.arithmetic.add`,
 * `core.arithmetic.multiply_add`, `core.shell`) unless told otherwise; plugins add theirs.
 */
export class ProcessRegistry {
  private readonly definitions = new Map<string, ProcessDefinition>();
  /** Plugins that failed to load; processes of unknown types cite them when they fail. */
  readonly pluginErrors: PluginLoadError[] = [];

  constructor(options: { builtins?: boolean } = {}) {
    if (options.builtins !== false) for (const d of BUILTIN_DEFINITIONS) this.register(d);
  }

  /** Adds a definition. Registering another definition under a taken name throws. */
  register(definition: ProcessDefinition): void {
    if (
      typeof definition !== 'object' ||
      definition === null ||
      (definition.kind !== 'calculation' && definition.kind !== 'workflow') ||
      typeof definition.name !== 'string'
    ) {
      throw new TypeError(
        'not a process definition: build one with calculation({...}) or workflow({...})',
      );
    }
    const existing = this.definitions.get(definition.name);
    if (existing !== undefined && existing !== definition) {
      throw new TypeError(`process type '${definition.name}' is already registered`);
    }
    this.definitions.set(definition.name, definition);
  }

  get(name: string): ProcessDefinition | undefined {
    return this.definitions.get(name);
  }

  has(name: string): boolean {
    return this.definitions.has(name);
  }

  /** Registered names, sorted. */
  names(): string[] {
    return [...this.definitions.keys()].sort();
  }

  /**
   * The definition of `name`, or an EngineError: `unknown_process_type` listing the known types,
   * or `plugin_import_failed` naming the plugins that failed to load (the type may be theirs).
   */
  require(name: string): ProcessDefinition {
    const definition = this.definitions.get(name);
    if (definition) return definition;
    throw this.unknownTypeError(name);
  }

  /** The error for an unknown type (see {@link ProcessRegistry.require}). */
  unknownTypeError(name: string): EngineError {
    const known = `known types: ${this.names().join(', ') || 'none'}`;
    if (this.pluginErrors.length > 0) {
      const failed = this.pluginErrors.map((e) => `'${e.spec}' (${e.message})`).join('; ');
      return new EngineError(
        EngineErrorCodes.pluginImportFailed,
        `unknown process type '${name}'; it may come from a plugin that failed to load: ${failed}. ` +
          `Fix the plugin or the option engine.plugins; ${known}`,
        { details: { type: name, plugins: this.pluginErrors.map((e) => e.spec) } },
      );
    }
    return new EngineError(
      EngineErrorCodes.unknownProcessType,
      `unknown process type '${name}'; ${known}. Plugins add types through the option engine.plugins`,
      { details: { type: name, known: this.names() } },
    );
  }
}
