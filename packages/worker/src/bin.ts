#!/usr/bin/env node
/**
 * The worker program started by the daemon supervisor: `aiida-worker --profile <name>`.
 * See {@link runWorkerProgram} for its protocol.
 */
import { RabbitBroker } from '@aiida/broker';
import { runWorkerProgram } from './program.js';

process.on('uncaughtException', (error) => {
  process.stderr.write(`worker crashed: ${error.stack ?? error.message}\n`);
  process.exit(1);
});

void runWorkerProgram({
  createBroker: (profile) =>
    new RabbitBroker({
      profile,
      connectionName: `aiida-worker-${process.pid}`,
      // Info to stdout; warnings and errors to stderr (whose tail the supervisor shows).
      logger: {
        info: (message) => process.stdout.write(`broker: ${message}\n`),
        warn: (message) => process.stderr.write(`broker warning: ${message}\n`),
        error: (message) => process.stderr.write(`broker error: ${message}\n`),
      },
    }),
});
