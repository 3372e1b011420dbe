import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RabbitBroker } from '@aiida/broker';
import { createProfile, defaultBrokerSettings, getBrokerUrl, type Profile } from '@aiida/config';
import { DaemonClient } from '@aiida/daemon-client';
import { type Engine, openEngine, silentLogger } from '@aiida/engine';
import { Connection } from 'rabbitmq-client';
import { isAlive, stopPid } from './procs.js';

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

/** A throwaway AIIDA_PATH with one profile (its own broker prefix), a daemon client and engine. */
export class BenchProfile {
  readonly aiidaPath: string;
  readonly profile: Profile;
  readonly client: DaemonClient;
  private broker: RabbitBroker | undefined;
  private engine: Engine | undefined;
  private daemonPid: number | null = null;

  private constructor(
    aiidaPath: string,
    profile: Profile,
    env: NodeJS.ProcessEnv,
    supervisorProgram: string | undefined,
  ) {
    this.aiidaPath = aiidaPath;
    this.profile = profile;
    this.client = new DaemonClient(profile, { env, supervisorProgram });
  }

  /**
   * Creates the folder, the plugin file and the profile (default daemon options unless
   * `options` says otherwise). `env` goes to the supervisor and so to its workers;
   * `supervisorProgram` replaces the supervisor's entry (the CPU-profiling wrapper).
   */
  static create(
    init: {
      name?: string;
      options?: Record<string, unknown>;
      env?: NodeJS.ProcessEnv;
      supervisorProgram?: string;
    } = {},
  ): BenchProfile {
    const aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-bench-'));
    writeFileSync(join(aiidaPath, 'bench-plugin.mjs'), PLUGIN_SOURCE);
    const profile = createProfile(
      {
        name: init.name ?? 'bench',
        pluginBaseDir: aiidaPath,
        options: { 'engine.plugins': ['./bench-plugin.mjs'], ...init.options },
        setDefault: true,
      },
      { aiidaPath },
    );
    return new BenchProfile(
      aiidaPath,
      profile,
      { ...init.env, AIIDA_PATH: aiidaPath },
      init.supervisorProgram,
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

  /** The connected broker of this profile (for submits and the raw connection's queue clean-up). */
  async getBroker(): Promise<RabbitBroker> {
    if (!this.broker) {
      const broker = new RabbitBroker({ profile: this.profile, connectionName: 'aiida-bench' });
      await broker.connect({ timeout: 10 });
      this.broker = broker;
    }
    return this.broker;
  }

  /** The engine of this profile, with the broker as dispatcher and control channel. */
  async getEngine(): Promise<Engine> {
    if (!this.engine) {
      const broker = await this.getBroker();
      this.engine = await openEngine(this.profile, {
        dispatcher: broker,
        control: broker,
        logger: silentLogger,
      });
      if (!this.engine.registry.has(SLEEP_TYPE)) {
        const errors = this.engine.registry.pluginErrors.map((e) => JSON.stringify(e)).join('; ');
        throw new Error(`the bench plugin did not register ${SLEEP_TYPE}: ${errors || 'no error'}`);
      }
    }
    return this.engine;
  }

  /** Stops the daemon, closes the engine, deletes the profile's queues and removes the folder. */
  async dispose(): Promise<void> {
    const problems: string[] = [];
    try {
      if (this.daemonPid !== null || this.client.isDaemonRunning) await this.stopDaemon();
    } catch (error) {
      problems.push(`stopping the daemon: ${(error as Error).message}`);
    }
    try {
      await this.engine?.close();
    } catch (error) {
      problems.push(`closing the engine: ${(error as Error).message}`);
    }
    let topology: RabbitBroker['topology'] | undefined;
    try {
      const broker = await this.getBroker();
      topology = broker.topology;
      await broker.deleteTopology();
      await broker.close({ timeout: 5 });
    } catch (error) {
      problems.push(`deleting the queues: ${(error as Error).message}`);
    }
    // A broker that reconnected meanwhile (a RabbitMQ restart) redeclares its topology: delete
    // again over a connection of our own, which does not.
    if (topology) {
      try {
        await deleteNames(topology);
      } catch (error) {
        problems.push(`deleting the queues again: ${(error as Error).message}`);
      }
    }
    rmSync(this.aiidaPath, { recursive: true, force: true });
    if (problems.length > 0) {
      process.stderr.write(`bench: clean-up of ${this.aiidaPath}: ${problems.join('; ')}\n`);
    }
  }
}
