#!/usr/bin/env node
/**
 * The worker program started by the daemon supervisor: `aiida-worker --profile <name>`.
 * See {@link runWorkerProgram} for its protocol and {@link createEngineRunner} for its work.
 */
import { getOption } from '@aiida/config';
import { createEngineRunner, StoreTransportBroker } from './engine-runner.js';
import { LineLogger } from './line-logger.js';
import { runWorkerProgram } from './program.js';

const sinks = {
  out: (line: string) => process.stdout.write(`${line}\n`),
  err: (line: string) => process.stderr.write(`${line}\n`),
};

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
  createBroker: async (profile) => {
    if (profile.broker.backend === 'core.store') return new StoreTransportBroker();
    const { RabbitBroker } = await import('@aiida/broker');
    return new RabbitBroker({
      profile,
      connectionName: `aiida-worker-${process.pid}`,
      // Info to stdout; warnings and errors to stderr (whose tail the supervisor shows).
      logger: {
        info: (message) => process.stdout.write(`broker: ${message}\n`),
        warn: (message) => process.stderr.write(`broker warning: ${message}\n`),
        error: (message) => process.stderr.write(`broker error: ${message}\n`),
      },
    });
  },
  createRunner: (profile) =>
    createEngineRunner(profile, {
      logger: new LineLogger(sinks, getOption('logging.level', { profile })),
    }),
});
