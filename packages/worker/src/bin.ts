#!/usr/bin/env node
/**
 * The worker program started by the daemon supervisor: `aiida-worker --profile <name>`.
 * See {@link runWorkerProgram} for its protocol and {@link createEngineRunner} for its work.
 */
import { createEngineRunner, StoreTransportBroker } from './engine-runner.js';
import { runWorkerProgram } from './program.js';

process.on('uncaughtException', (error) => {
  process.stderr.write(`worker crashed: ${error.stack ?? error.message}\n`);
  process.exit(1);
});
// A promise a process body forgot to handle can't be blamed on one process: log it and go on,
// rather than take every process of this worker down with it.
process.on('unhandledRejection', (reason) => {
  const text = reason instanceof Error ? (reason.stack ?? reason.message) : String(reason);
  process.stderr.write(`warn: unhandled promise rejection (ignored): ${text}\n`);
});

void runWorkerProgram({
  // A core.store worker has no broker: @aiida/broker (and its AMQP client) is not even loaded.
  createBroker: async (profile, { logger }) => {
    if (profile.broker.backend === 'core.store') return new StoreTransportBroker();
    const { RabbitBroker } = await import('@aiida/broker');
    return new RabbitBroker({
      profile,
      connectionName: `aiida-worker-${process.pid}`,
      // The program's logger: `logging.level` and `logging.format` apply to the broker's lines.
      logger: logger.child({ component: 'broker' }),
    });
  },
  createRunner: (profile, _broker, { logger, workerId }) =>
    createEngineRunner(profile, { logger, workerId }),
});
