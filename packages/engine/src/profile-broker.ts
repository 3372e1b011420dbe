import { RabbitBroker } from '@aiida/broker';
import type { Profile } from '@aiida/config';
import type { EngineLogger } from './logger.js';
import type { ControlChannel, TaskDispatcher } from './ports.js';

/**
 * The profile's RabbitMQ broker as the engine's dispatcher and control channel, connected on first
 * use only: queries need no broker, and a broker that is down does not fail a submit (the row is
 * committed first and the daemon's reconciler dispatches it later).
 */
export class ProfileBroker implements TaskDispatcher, ControlChannel {
  private readonly broker: RabbitBroker;
  private connecting: Promise<void> | undefined;

  constructor(profile: Profile, logger: EngineLogger, connectTimeout = 5) {
    this.connectTimeout = connectTimeout;
    this.broker = new RabbitBroker({
      profile,
      connectionName: `aiida-engine ${process.pid}`,
      onError: (error) => logger.debug(`broker: ${error.message}`),
      logger: {
        info: (message) => logger.debug(message),
        warn: (message) => logger.debug(message),
        error: (message) => logger.warn(message),
      },
    });
  }

  private readonly connectTimeout: number;

  private connect(): Promise<void> {
    this.connecting ??= this.broker.connect({ timeout: this.connectTimeout }).catch((error) => {
      // Try again on the next use rather than remembering one failure for ever.
      this.connecting = undefined;
      throw error;
    });
    return this.connecting;
  }

  async publishContinue(pk: number): Promise<void> {
    await this.connect();
    await this.broker.publishContinue(pk);
  }

  async publishContinueMany(pks: number[]): Promise<void> {
    await this.connect();
    await this.broker.publishContinueMany(pks);
  }

  async callRpc(
    ...args: Parameters<ControlChannel['callRpc']>
  ): ReturnType<ControlChannel['callRpc']> {
    await this.connect();
    return this.broker.callRpc(...args);
  }

  /** Closes the connection if one was opened. Never rejects. */
  async close(): Promise<void> {
    if (this.connecting === undefined) return;
    await this.broker.close({ timeout: 2 }).catch(() => {});
  }
}
