import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RabbitBroker } from '@aiida/broker';
import {
  createProfile,
  defaultBrokerSettings,
  getBrokerUrl,
  getProfile,
  type Profile,
  setOption,
} from '@aiida/config';
import { DaemonClient } from '@aiida/daemon-client';
import {
  type ControlChannel,
  type Engine,
  openEngine,
  type ProcessState,
  silentLogger,
  type TaskDispatcher,
} from '@aiida/engine';
import { Connection } from 'rabbitmq-client';
import { dropBenchDatabase, noteBenchDatabase, PG_ADMIN } from './pg-admin.js';
import { isAlive, stopPid } from './procs.js';
import type { StorageBackend, TransportBackend } from './variants.js';

/** Name of the process type the bench's plugin registers: sleeps `ms` milliseconds. */
export const SLEEP_TYPE = 'bench.sleep';

/**
 * The plugin module written into each bench AIIDA_PATH and listed in `engine.plugins`. It uses
 * only the `api` the engine hands to `register`, so it needs no package of its own.
 */
const PLUGIN_SOURCE = `import { setTimeout as sleep } from 'node:timers/promises';

export function register(registry, { calculation, z }) {
  registry.register(
    calculation({
      name: '${SLEEP_TYPE}',
      description: 'Sleeps ms milliseconds (bench).',
      inputs: z.object({ ms: z.number().nonnegative() }),
      outputs: z.object({ slept: z.number() }),
      run: async ({ ms }, ctx) => {
        await sleep(ms, undefined, { signal: ctx.signal });
        return { slept: ms };
      },
    }),
  );
}
`;

/** Deletes a profile's queues and exchanges by name (idempotent), over a short-lived connection. */
async function deleteNames(topology: RabbitBroker['topology']): Promise<void> {
  const connection = new Connection({
    url: getBrokerUrl(defaultBrokerSettings()),
    connectionName: 'aiida-bench-cleanup',
    retryLow: 100,
    connectionTimeout: 5000,
  });
  try {
    for (const queue of [topology.processQueue, topology.dlq]) {
      await connection.queueDelete({ queue });
    }
    for (const exchange of [topology.tasksExchange, topology.dlx, topology.messagesExchange]) {
      await connection.exchangeDelete({ exchange });
    }
  } finally {
    await connection.close();
  }
}

/** A state change as the submitter hears it. */
export type StateChangeHandler = (change: { pk: number; to: ProcessState }) => void;

/**
 * How often the submitter of a `core.store` profile polls the store's change token for state
 * changes (`Engine.watchStateChanges`, the way a user hears of them without a broker); the
 * latency run's "heard" includes up to this much.
 */
export const STORE_WATCH_INTERVAL_S = 0.005;

/** What the bench process (the submitter) holds of a profile's transport. */
export interface SubmitterSide {
  /**
   * The engine's dispatcher and control channel (`openEngine` options; `undefined`: the engine's
   * default for the profile's transport).
   */
  dispatcher: TaskDispatcher | null | undefined;
  control: ControlChannel | null | undefined;
  /**
   * Calls `handler` for every state change of the profile's processes; without it, the engine's
   * `watchStateChanges` (a poll of the store every {@link STORE_WATCH_INTERVAL_S}).
   */
  subscribeStateChanged?(handler: StateChangeHandler): Promise<void>;
  /** The RabbitMQ broker, for the transports that have one. */
  broker?: RabbitBroker;
  /** Closes it and deletes what the profile made on the transport (queues, exchanges). */
  dispose(): Promise<void>;
}

/**
 * Each `process_control.backend` the bench knows: the `createProfile` input and `aiida presto`
 * arguments that choose it, and how the submitter connects.
 */
export const TRANSPORTS: Record<
  TransportBackend,
  {
    profileInput: Record<string, unknown>;
    prestoArgs: string[];
    connect(profile: Profile): Promise<SubmitterSide>;
  }
> = {
  'core.rabbitmq': {
    profileInput: {},
    prestoArgs: [],
    async connect(profile) {
      const broker = new RabbitBroker({ profile, connectionName: 'aiida-bench' });
      await broker.connect({ timeout: 10 });
      return {
        dispatcher: broker,
        control: broker,
        broker,
        subscribeStateChanged: async (handler) =>
          void (await broker.subscribeStateChanged((m) => handler({ pk: m.pk, to: m.to }))),
        async dispose() {
          const topology = broker.topology;
          try {
            await broker.deleteTopology();
            await broker.close({ timeout: 5 });
          } finally {
            // A broker that reconnected meanwhile (a RabbitMQ restart) redeclares its topology:
            // delete again over a connection of our own, which does not.
            await deleteNames(topology);
          }
        },
      };
    },
  },
  // The store is the queue (issue 10): the engine's defaults (a submit wakes the workers through
  // the store; control through the store's intents), state changes from the store itself.
  'core.store': {
    profileInput: { processControl: 'core.store' },
    prestoArgs: ['--broker', 'store'],
    async connect() {
      return { dispatcher: undefined, control: undefined, async dispose() {} };
    },
  },
};

/** The `aiida` command line of this workspace. */
const CLI = fileURLToPath(new URL('../../cli/dist/bin.js', import.meta.url));

function run(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, options, (error, stdout, stderr) => {
      if (error) reject(new Error(`${args.slice(1).join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * Each `storage.backend` the bench knows: how a profile on it is made as users make one, and what
 * is removed at the end. SQLite: `createProfile` (the library; the file lives in the AIIDA_PATH).
 * PostgreSQL: `aiida presto --use-postgres` on the local server (the CLI makes a role and a
 * database of the profile's own), options set with `setOption`; the database and role are dropped.
 */
export const STORAGES: Record<
  StorageBackend,
  {
    make(
      aiidaPath: string,
      init: { name: string; options: Record<string, unknown> },
      transport: TransportBackend,
    ): Promise<Profile>;
    drop(profile: Profile): Promise<void>;
  }
> = {
  'core.sqlite': {
    async make(aiidaPath, init, transport) {
      return createProfile(
        {
          ...TRANSPORTS[transport].profileInput,
          name: init.name,
          pluginBaseDir: aiidaPath,
          options: init.options,
          setDefault: true,
        },
        { aiidaPath },
      );
    },
    async drop() {},
  },
  'core.psql': {
    async make(aiidaPath, init, transport) {
      await run(
        [
          CLI,
          '-p',
          init.name,
          'presto',
          '--use-postgres',
          '--postgres-hostname',
          PG_ADMIN.host,
          '--postgres-port',
          String(PG_ADMIN.port),
          '--postgres-username',
          PG_ADMIN.user,
          ...TRANSPORTS[transport].prestoArgs,
        ],
        // presto takes the plugin folder from the working directory, as for a user.
        { cwd: aiidaPath, env: { ...process.env, AIIDA_PATH: aiidaPath } },
      );
      const made = getProfile(init.name, { aiidaPath });
      if (made.storage.backend !== 'core.psql') {
        throw new Error(`aiida presto --use-postgres made a ${made.storage.backend} profile`);
      }
      noteBenchDatabase(made.storage.config.database_name);
      for (const [option, value] of Object.entries(init.options)) {
        setOption(option, value, { profile: init.name, aiidaPath });
      }
      return getProfile(init.name, { aiidaPath });
    },
    async drop(profile) {
      if (profile.storage.backend === 'core.psql') {
        await dropBenchDatabase(profile.storage.config.database_name);
      }
    },
  },
};

/** What {@link BenchProfile.create} and {@link BenchProfile.open} take. */
export interface BenchProfileInit {
  name?: string;
  options?: Record<string, unknown>;
  env?: NodeJS.ProcessEnv;
  supervisorProgram?: string;
}

/**
 * A throwaway AIIDA_PATH with one profile (its own broker prefix, and on PostgreSQL its own
 * database), a daemon client and engine.
 */
export class BenchProfile {
  readonly aiidaPath: string;
  readonly profile: Profile;
  readonly client: DaemonClient;
  private side: SubmitterSide | undefined;
  private engine: Engine | undefined;
  private watchers: { close(): Promise<void> }[] = [];
  private daemonPid: number | null = null;

  private constructor(
    aiidaPath: string,
    profile: Profile,
    env: NodeJS.ProcessEnv,
    supervisorProgram: string | undefined,
    private readonly storage: StorageBackend,
    private readonly transport: TransportBackend,
  ) {
    this.aiidaPath = aiidaPath;
    this.profile = profile;
    this.client = new DaemonClient(profile, { env, supervisorProgram });
  }

  private static folder(): string {
    const aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-bench-'));
    writeFileSync(join(aiidaPath, 'bench-plugin.mjs'), PLUGIN_SOURCE);
    return aiidaPath;
  }

  private static options(init: BenchProfileInit): Record<string, unknown> {
    return { 'engine.plugins': ['./bench-plugin.mjs'], ...init.options };
  }

  /**
   * A profile on `storage` with `transport` (default SQLite and RabbitMQ), made through
   * {@link STORAGES}; otherwise as {@link create}.
   */
  static async open(
    init: BenchProfileInit & { storage?: StorageBackend; transport?: TransportBackend } = {},
  ): Promise<BenchProfile> {
    const storage = init.storage ?? 'core.sqlite';
    const transport = init.transport ?? 'core.rabbitmq';
    const aiidaPath = BenchProfile.folder();
    try {
      const profile = await STORAGES[storage].make(
        aiidaPath,
        { name: init.name ?? 'bench', options: BenchProfile.options(init) },
        transport,
      );
      return new BenchProfile(
        aiidaPath,
        profile,
        { ...init.env, AIIDA_PATH: aiidaPath },
        init.supervisorProgram,
        storage,
        transport,
      );
    } catch (error) {
      rmSync(aiidaPath, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * Creates the folder, the plugin file and the profile (default daemon options unless
   * `options` says otherwise). `env` goes to the supervisor and so to its workers;
   * `supervisorProgram` replaces the supervisor's entry (the CPU-profiling wrapper).
   */
  static create(init: BenchProfileInit = {}): BenchProfile {
    const aiidaPath = BenchProfile.folder();
    const profile = createProfile(
      {
        name: init.name ?? 'bench',
        pluginBaseDir: aiidaPath,
        options: BenchProfile.options(init),
        setDefault: true,
      },
      { aiidaPath },
    );
    return new BenchProfile(
      aiidaPath,
      profile,
      { ...init.env, AIIDA_PATH: aiidaPath },
      init.supervisorProgram,
      'core.sqlite',
      'core.rabbitmq',
    );
  }

  /** Environment for a child that should find this profile (the CLI). */
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, AIIDA_PATH: this.aiidaPath, AIIDA_PROFILE: this.profile.name };
  }

  /** Starts the daemon with `numberWorkers` workers; resolves when all are ready. */
  async startDaemon(numberWorkers: number): Promise<void> {
    const started = await this.client.startDaemon({ numberWorkers });
    this.daemonPid = started.pid;
  }

  /** Stops the daemon (graceful), and makes sure by pid that it is gone. */
  async stopDaemon(): Promise<void> {
    const pid = this.daemonPid;
    try {
      await this.client.stopDaemon();
    } finally {
      if (pid !== null && isAlive(pid)) await stopPid(pid, 5);
      this.daemonPid = null;
    }
  }

  /** Records a daemon pid started by someone else (a timed start). */
  noteDaemonPid(pid: number): void {
    this.daemonPid = pid;
  }

  /** The submitter's side of this profile's transport, connected on first use. */
  async getSide(): Promise<SubmitterSide> {
    this.side ??= await TRANSPORTS[this.transport].connect(this.profile);
    return this.side;
  }

  /** The connected RabbitMQ broker of this profile (its transport must be `core.rabbitmq`). */
  async getBroker(): Promise<RabbitBroker> {
    const broker = (await this.getSide()).broker;
    if (!broker) throw new Error(`profile ${this.profile.name} has no RabbitMQ broker`);
    return broker;
  }

  /**
   * Calls `handler` for every state change of this profile's processes: through the transport
   * (RabbitMQ's broadcasts) or, without one, by watching the store.
   */
  async subscribeStateChanged(handler: StateChangeHandler): Promise<void> {
    const side = await this.getSide();
    if (side.subscribeStateChanged) {
      await side.subscribeStateChanged(handler);
      return;
    }
    const engine = await this.getEngine();
    this.watchers.push(
      await engine.watchStateChanges((change) => handler({ pk: change.pk, to: change.to }), {
        interval: STORE_WATCH_INTERVAL_S,
      }),
    );
  }

  /** The engine of this profile, with the transport's dispatcher and control channel. */
  async getEngine(): Promise<Engine> {
    if (!this.engine) {
      const side = await this.getSide();
      this.engine = await openEngine(this.profile, {
        dispatcher: side.dispatcher,
        control: side.control,
        logger: silentLogger,
      });
      if (!this.engine.registry.has(SLEEP_TYPE)) {
        const errors = this.engine.registry.pluginErrors.map((e) => JSON.stringify(e)).join('; ');
        throw new Error(`the bench plugin did not register ${SLEEP_TYPE}: ${errors || 'no error'}`);
      }
    }
    return this.engine;
  }

  /**
   * Stops the daemon, closes the engine, deletes the profile's queues, drops its database (on
   * PostgreSQL) and removes the folder.
   */
  async dispose(): Promise<void> {
    const problems: string[] = [];
    try {
      if (this.daemonPid !== null || this.client.isDaemonRunning) await this.stopDaemon();
    } catch (error) {
      problems.push(`stopping the daemon: ${(error as Error).message}`);
    }
    for (const watcher of this.watchers.splice(0)) {
      try {
        await watcher.close();
      } catch (error) {
        problems.push(`closing a state-change watcher: ${(error as Error).message}`);
      }
    }
    try {
      await this.engine?.close();
    } catch (error) {
      problems.push(`closing the engine: ${(error as Error).message}`);
    }
    try {
      await (await this.getSide()).dispose();
    } catch (error) {
      problems.push(`deleting the queues: ${(error as Error).message}`);
    }
    try {
      await STORAGES[this.storage].drop(this.profile);
    } catch (error) {
      problems.push(`dropping the store: ${(error as Error).message}`);
    }
    rmSync(this.aiidaPath, { recursive: true, force: true });
    if (problems.length > 0) {
      process.stderr.write(`bench: clean-up of ${this.aiidaPath}: ${problems.join('; ')}\n`);
    }
  }
}
