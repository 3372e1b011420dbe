/**
 * A graphile-worker process for the side-by-side runs: tasks `add` return x + y, tasks `sleep`
 * wait `ms` milliseconds. Argv: <connection string>. Options: {@link GRAPHILE_WORKER_OPTIONS}
 * (its documented batching options on). IPC: `ready` once it is looking for jobs, `stop` to stop
 * (letting running jobs finish) and exit.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger, run } from 'graphile-worker';
import { GRAPHILE_WORKER_OPTIONS } from '../graphile-options.js';

const [connectionString] = process.argv.slice(2);
if (!connectionString) {
  process.stderr.write('usage: graphile-worker <connection string>\n');
  process.exit(2);
}
const send = (message: Record<string, unknown>) => {
  if (process.connected) process.send?.(message);
};

// Its info lines ("Worker connected and looking for jobs") would flood the bench's output.
const logger = new Logger(() => (level, message) => {
  if (level === 'error' || level === 'warning')
    process.stderr.write(`graphile-worker: ${message}\n`);
});

const runner = await run({
  logger,
  noHandleSignals: true,
  preset: { worker: { ...GRAPHILE_WORKER_OPTIONS, connectionString } },
  taskList: {
    add: async (payload) => {
      const { x, y } = payload as { x: number; y: number };
      return void (x + y);
    },
    sleep: async (payload) => {
      await sleep((payload as { ms: number }).ms);
    },
  },
});
send({ type: 'ready' });
process.on('message', async (message: { type?: string }) => {
  if (message.type !== 'stop') return;
  await runner.stop();
  process.exit(0);
});
process.on('disconnect', () => process.exit(0));
