import { parseArgs } from 'node:util';
import { getOption, getProfile, getRedactedBrokerUrl, type Profile } from '@aiida/config';
import {
  PROTOCOL_VERSION,
  supervisorToWorkerMessageSchema,
  type WorkerToSupervisorMessage,
} from '@aiida/ipc';
import { type ProcessRunner, RunnerStartError, Worker, type WorkerBroker } from './worker.js';

/** How long a worker whose supervisor vanished may drain, in seconds. */
export const ORPHAN_DRAIN_TIMEOUT = 5;

/** What {@link runWorkerProgram} needs besides the command line. */
export interface WorkerProgramOptions<B extends WorkerBroker = WorkerBroker> {
  /** Command-line arguments (without node and the script). @default process.argv.slice(2) */
  argv?: string[];
  /** Makes the profile's broker (the bin passes `RabbitBroker` from `@aiida/broker`). */
  createBroker: (profile: Profile) => B;
  /** Makes the runner (the bin passes `createEngineRunner`); the default takes no work. */
  createRunner?: (profile: Profile, broker: B) => ProcessRunner<B>;
}

function line(stream: NodeJS.WriteStream, message: string): void {
  stream.write(`${message}\n`);
}

/**
 * The worker program: `aiida-worker --profile <name> [--spare]` (env `AIIDA_PATH` locates the
 * config). Connects the broker (declaring the topology), reports `ready` and heartbeats over the
 * IPC channel. With `--spare` (the daemon's warm spare) it connects and opens its store, reports
 * `standby` and takes work only after the supervisor's `promote` message; stops on the `shutdown` message or SIGTERM/SIGINT (a second signal exits at once);
 * drains for at most 5 s if the supervisor's channel closes. If the broker can't be reached
 * before ready, sends `fatal` with the error, writes it to stderr and exits 1.
 */
export async function runWorkerProgram<B extends WorkerBroker>(
  options: WorkerProgramOptions<B>,
): Promise<never> {
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  const send = (message: WorkerToSupervisorMessage, done?: () => void) => {
    if (process.send && process.connected) {
      process.send(message, undefined, {}, () => done?.());
    } else done?.();
  };

  let profile: Profile;
  let spare = false;
  let settings: { slots: number; heartbeat: number; connectTimeout: number; graceful: number };
  try {
    const { values } = parseArgs({
      args: options.argv ?? process.argv.slice(2),
      options: { profile: { type: 'string' }, spare: { type: 'boolean' } },
      strict: true,
    });
    profile = getProfile(values.profile);
    spare = values.spare === true;
    const opts = { profile };
    settings = {
      slots: getOption('daemon.worker_process_slots', opts),
      heartbeat: getOption('daemon.worker_heartbeat_interval', opts),
      connectTimeout: getOption('broker.task_timeout', opts),
      graceful: getOption('daemon.graceful_timeout', opts),
    };
  } catch (error) {
    return fail(`cannot load the profile: ${(error as Error).message}`, send);
  }

  let broker: B;
  let runner: ProcessRunner<B> | undefined;
  try {
    broker = options.createBroker(profile);
    runner = options.createRunner?.(profile, broker);
  } catch (error) {
    return fail(`cannot set up the worker: ${(error as Error).message}`, send);
  }
  const worker = new Worker<B>({
    broker,
    runner,
    slotsTotal: settings.slots,
    heartbeatInterval: settings.heartbeat,
    connectTimeout: settings.connectTimeout,
    standby: spare,
    onStateChange: (state) => {
      if (state !== 'STANDBY') return;
      line(
        process.stdout,
        `standby as the warm spare (pid ${process.pid}, broker ${getRedactedBrokerUrl(profile)}): ` +
          'taking no work until promoted',
      );
    },
    channel: (message) => send(message),
    log: (message) => line(process.stdout, message),
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      line(process.stdout, `${signal}: stopping (graceful timeout ${settings.graceful} s)`);
      void worker.shutdown(settings.graceful);
    } else {
      line(process.stderr, `${signal} again: exiting at once`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('message', (raw) => {
    const parsed = supervisorToWorkerMessageSchema.safeParse(raw);
    if (!parsed.success) {
      line(
        process.stderr,
        `ignoring an invalid message from the supervisor: ${parsed.error.message}`,
      );
      return;
    }
    if (parsed.data.type === 'promote') {
      line(process.stdout, 'promoted: taking work');
      worker.promote();
      return;
    }
    line(process.stdout, `shutdown requested (graceful timeout ${parsed.data.gracefulTimeout} s)`);
    void worker.shutdown(parsed.data.gracefulTimeout);
  });
  process.on('disconnect', () => {
    line(
      process.stderr,
      `the supervisor's channel closed: draining for at most ${ORPHAN_DRAIN_TIMEOUT} s`,
    );
    void worker.shutdown(Math.min(ORPHAN_DRAIN_TIMEOUT, settings.graceful));
  });

  try {
    await worker.start();
    line(process.stdout, `ready (pid ${process.pid}, broker ${getRedactedBrokerUrl(profile)})`);
  } catch (error) {
    if (worker.state !== 'FAILED') {
      await worker.stopped;
      process.exit(0);
    }
    const message = (error as Error).message ?? String(error);
    const url = getRedactedBrokerUrl(profile);
    const text =
      error instanceof RunnerStartError || message.includes(url)
        ? message
        : `cannot connect to the broker at ${url}: ${message}`;
    return fail(text, send);
  }
  await worker.stopped;
  line(process.stdout, 'stopped');
  process.exit(0);
}

function fail(
  text: string,
  send: (message: WorkerToSupervisorMessage, done?: () => void) => void,
): Promise<never> {
  line(process.stderr, text);
  return new Promise<never>(() => {
    const exit = () => process.exit(1);
    setTimeout(exit, 1000).unref();
    send({ v: PROTOCOL_VERSION, type: 'fatal', error: text }, exit);
  });
}
