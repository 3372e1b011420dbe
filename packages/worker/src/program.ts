import { parseArgs } from 'node:util';
import {
  type AiidaLogger,
  createLogger,
  getOption,
  getProfile,
  getRedactedBrokerUrl,
  type Profile,
} from '@aiida/config';
import {
  PROTOCOL_VERSION,
  supervisorToWorkerMessageSchema,
  type WorkerToSupervisorMessage,
} from '@aiida/ipc';
import { type ProcessRunner, RunnerStartError, Worker, type WorkerBroker } from './worker.js';
import { newWorkerId } from './worker-id.js';

/** What the worker program hands to the broker and the runner it makes. */
export interface WorkerProgramContext {
  /** This worker's id (`host:pid:random`), its lease owner id in the store. */
  workerId: string;
  /**
   * The program's logger (`logging.level`, `logging.format`; every line carries `worker` and
   * `pid`): info and debug lines to stdout, warnings and errors to stderr.
   */
  logger: AiidaLogger;
}

/** How long a worker whose supervisor vanished may drain, in seconds. */
export const ORPHAN_DRAIN_TIMEOUT = 5;

/** What {@link runWorkerProgram} needs besides the command line. */
export interface WorkerProgramOptions<B extends WorkerBroker = WorkerBroker> {
  /** Command-line arguments (without node and the script). @default process.argv.slice(2) */
  argv?: string[];
  /**
   * Makes the profile's broker (the bin passes `RabbitBroker` from `@aiida/broker`, or for a
   * `core.store` profile a broker that connects to nothing).
   */
  createBroker: (profile: Profile, context: WorkerProgramContext) => B | Promise<B>;
  /** Makes the runner (the bin passes `createEngineRunner`); the default takes no work. */
  createRunner?: (profile: Profile, broker: B, context: WorkerProgramContext) => ProcessRunner<B>;
}

function line(stream: NodeJS.WriteStream, message: string): void {
  stream.write(`${message}\n`);
}

/** The worker program's logger: info and below to stdout, warnings and errors to stderr. */
export function createWorkerLogger(profile: Profile, workerId: string): AiidaLogger {
  return createLogger({
    level: getOption('logging.level', { profile }),
    format: getOption('logging.format', { profile }),
    base: { worker: workerId, pid: process.pid },
    write: (text, level) =>
      line(
        level === 'info' || level === 'debug' || level === 'trace'
          ? process.stdout
          : process.stderr,
        text,
      ),
  });
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

  const workerId = newWorkerId();
  let log: AiidaLogger;
  try {
    log = createWorkerLogger(profile, workerId);
  } catch (error) {
    return fail(`cannot load the profile: ${(error as Error).message}`, send);
  }
  const context: WorkerProgramContext = { workerId, logger: log };
  let broker: B;
  let runner: ProcessRunner<B> | undefined;
  try {
    broker = await options.createBroker(profile, context);
    runner = options.createRunner?.(profile, broker, context);
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
    log: (message) => log.info(message),
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      log.info(`${signal}: stopping (graceful timeout ${settings.graceful} s)`);
      void worker.shutdown(settings.graceful);
    } else {
      log.warn(`${signal} again: exiting at once`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('message', (raw) => {
    const parsed = supervisorToWorkerMessageSchema.safeParse(raw);
    if (!parsed.success) {
      log.warn(`ignoring an invalid message from the supervisor: ${parsed.error.message}`);
      return;
    }
    if (parsed.data.type === 'promote') {
      log.info('promoted: taking work');
      worker.promote();
      return;
    }
    log.info(`shutdown requested (graceful timeout ${parsed.data.gracefulTimeout} s)`);
    void worker.shutdown(parsed.data.gracefulTimeout);
  });
  process.on('disconnect', () => {
    log.warn(`the supervisor's channel closed: draining for at most ${ORPHAN_DRAIN_TIMEOUT} s`);
    void worker.shutdown(Math.min(ORPHAN_DRAIN_TIMEOUT, settings.graceful));
  });

  try {
    await worker.start();
    const transport =
      profile.broker.backend === 'core.store'
        ? 'process control core.store: the store is the queue, no broker'
        : `broker ${getRedactedBrokerUrl(profile)}`;
    log.info(`ready (pid ${process.pid}, ${transport})`);
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
    log.error(text);
    return fail(text, send, false);
  }
  await worker.stopped;
  log.info('stopped');
  process.exit(0);
}

function fail(
  text: string,
  send: (message: WorkerToSupervisorMessage, done?: () => void) => void,
  print = true,
): Promise<never> {
  if (print) line(process.stderr, text);
  return new Promise<never>(() => {
    const exit = () => process.exit(1);
    setTimeout(exit, 1000).unref();
    send({ v: PROTOCOL_VERSION, type: 'fatal', error: text }, exit);
  });
}
