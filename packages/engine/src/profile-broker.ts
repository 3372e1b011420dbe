import type { RabbitBroker } from '@aiida/broker';
import type { Profile } from '@aiida/config';
import type { EngineLogger } from './logger.js';
import type { ControlChannel, TaskDispatcher } from './ports.js';

/**
 * The profile's RabbitMQ broker as the engine's dispatcher and control channel, connected on first
 * use only: queries need no broker, and a broker that is down does not fail a submit (the row is
 * committed first and the daemon's reconciler dispatches it later).
 */
export class ProfileBroker implements TaskDispatcher, ControlChannel {
  private broker: RabbitBroker | undefined;
  private connecting: Promise<RabbitBroker> | undefined;

  constructor(
    private readonly profile: Profile,
    private readonly logger: EngineLogger,
    private readonly connectTimeout = 5,
  ) {}

  /** The broker, loaded (`@aiida/broker` is imported only here) and connected on first use. */
  private connect(): Promise<RabbitBroker> {
    this.connecting ??= (async () => {
      if (!this.broker) {
        const { RabbitBroker } = await import('@aiida/broker');
        const logger = this.logger;
        this.broker = new RabbitBroker({
          profile: this.profile,
          connectionName: `aiida-engine ${process.pid}`,
          onError: (error) => logger.debug(`broker: ${error.message}`),
          logger: {
            info: (message) => logger.debug(message),
            warn: (message) => logger.debug(message),
            error: (message) => logger.warn(message),
          },
        });
      }
      await this.broker.connect({ timeout: this.connectTimeout });
      return this.broker;
    })().catch((error) => {
      // Try again on the next use rather than remembering one failure for ever.
      this.connecting = undefined;
      throw error;
    });
    return this.connecting;
  }

  async publishContinue(pk: number): Promise<void> {
    await (await this.connect()).publishContinue(pk);
  }

  async publishContinueMany(pks: number[]): Promise<void> {
    await (await this.connect()).publishContinueMany(pks);
  }

  async callRpc(
    ...args: Parameters<ControlChannel['callRpc']>
  ): ReturnType<ControlChannel['callRpc']> {
    return (await this.connect()).callRpc(...args);
  }

  /** Closes the connection if one was opened. Never rejects. */
  async close(): Promise<void> {
    if (this.connecting === undefined || !this.broker) return;
    await this.connecting.catch(() => {});
    await this.broker.close({ timeout: 2 }).catch(() => {});
  }
}
