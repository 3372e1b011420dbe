import { existsSync } from 'node:fs';
import { getOption, listProfiles, type Profile, renderLogLine } from '@aiida/config';
import type { ClusterStatus, DaemonClient } from '@aiida/daemon-client';
import type { Command } from 'commander';
import { loadProfile } from '../context.js';
import { daemonClientFor } from '../daemon-access.js';
import {
  type DaemonStatus,
  renderClusterStatus,
  renderDaemonStatus,
  slotUsage,
} from '../daemon-status-view.js';
import { CliError, codeOf, describeError, ExitCodes } from '../errors.js';
import { formatLocalTime, plural } from '../format.js';
import { withExamples } from '../help.js';
import { followFile, tailLines } from '../log-tail.js';
import { echo, echoError, echoJson, echoReport, echoWarning, paint } from '../output.js';
import { parseNonNegativeInt, parsePositiveInt, parseSeconds } from '../parse.js';
import { step } from '../step.js';
import { runForegroundWorker } from '../worker-program.js';

interface TimeoutOption {
  timeout?: number;
}

type StatusOptions = TimeoutOption & { all?: boolean; allHosts?: boolean; json?: boolean };

/**
 * Refuses, before anything is started, a daemon of more than `daemon.max_workers` workers (the
 * client and the supervisor refuse too; this spares the user a spinner that can only fail).
 */
function assertWorkerLimit(profile: Profile, total: number, what: string): void {
  const max = getOption('daemon.max_workers', { profile });
  if (total <= max) return;
  throw new CliError(
    'too_many_workers',
    `Cannot ${what}: the option daemon.max_workers of profile '${profile.name}' allows at most ${plural(max, 'worker')} per daemon.`,
    {
      hint: `If this machine can really take ${total}, raise it: \`aiida config set daemon.max_workers ${total}\`.`,
      exitCode: ExitCodes.usage,
    },
  );
}

const TIMEOUT_HELP =
  'How long to wait for the daemon to answer, in seconds (default: the option daemon.timeout).';

/** `aiida daemon start|stop|restart|status|incr|decr|logshow|worker`. */
/** Options of `aiida daemon logshow`. */
interface LogshowOptions {
  follow?: boolean;
  worker?: number;
  lines: number;
  raw?: boolean;
}

export function registerDaemonCommands(program: Command): void {
  const group = program
    .command('daemon')
    .summary('Start, stop, scale and inspect the daemon of a profile.')
    .description(
      "Start, stop, scale and inspect the profile's daemon: a background supervisor that runs " +
        'worker processes, which take submitted processes off the broker and run them.',
    );
  withExamples(group, [
    'aiida daemon start 2',
    'aiida daemon status',
    'aiida daemon incr 2',
    'aiida daemon logshow -f',
    'aiida daemon stop',
  ]);

  const start = group
    .command('start')
    .description(
      'Start the daemon with NUMBER workers (default: the option daemon.default_workers; at most ' +
        'daemon.max_workers). ' +
        'Returns once every worker is connected to the broker and ready. Exit code 0 if the ' +
        'daemon started, non-zero if not.',
    )
    .argument('[number]', 'Number of workers.', parsePositiveInt)
    .option(
      '--foreground',
      'Run the daemon in this terminal until Ctrl+C or SIGTERM (for systemd and containers).',
    )
    .option('-t, --timeout <seconds>', TIMEOUT_HELP, parseSeconds)
    .action(
      async (
        number: number | undefined,
        options: TimeoutOption & { foreground?: boolean },
        cmd: Command,
      ) => {
        const profile = loadProfile(cmd);
        const numberWorkers = number ?? getOption('daemon.default_workers', { profile });
        assertWorkerLimit(
          profile,
          numberWorkers,
          `start the daemon with ${plural(numberWorkers, 'worker')}`,
        );
        const client = await daemonClientFor(profile);
        if (options.foreground) {
          echo(
            `Starting the daemon with ${plural(numberWorkers, 'worker')} in the foreground ` +
              '(Ctrl+C to stop)...',
          );
          await client.startDaemon({ numberWorkers, foreground: true, timeout: options.timeout });
          echo('The daemon stopped.');
          return;
        }
        await step(`Starting the daemon with ${plural(numberWorkers, 'worker')}`, () =>
          client.startDaemon({ numberWorkers, timeout: options.timeout }),
        );
      },
    );
  withExamples(start, [
    'aiida daemon start',
    'aiida daemon start 4',
    'aiida daemon start 2 --foreground',
    'aiida -p work daemon start -t 30',
  ]);

  const stop = group
    .command('stop')
    .description(
      'Stop the daemon: workers drain (up to daemon.graceful_timeout) and exit, then the ' +
        'supervisor. A daemon that is not running counts as stopped (exit code 0).',
    )
    .option('--no-wait', 'Return once the daemon accepted the request; do not wait for it to exit.')
    .option('--all', 'Stop the daemons of all profiles.')
    .option('-t, --timeout <seconds>', TIMEOUT_HELP, parseSeconds)
    .action(async (options: TimeoutOption & { wait: boolean; all?: boolean }, cmd: Command) => {
      const profiles = options.all ? listProfiles() : [loadProfile(cmd)];
      let failed = false;
      for (const profile of profiles) {
        echo(`${paint('Profile:', ['blue', 'bold'])} ${paint(profile.name, 'bold')}`);
        const client = await daemonClientFor(profile);
        try {
          if (options.wait) await announceStopWait(client, profile);
          await step(
            'Stopping the daemon',
            () => client.stopDaemon({ wait: options.wait, timeout: options.timeout }),
            (result) => {
              if (result.staleStateRemoved) {
                return paint('(it was not running; removed its stale state file)', 'dim');
              }
              if (!result.wasRunning) return paint('(it was not running)', 'dim');
              if (result.killedWorkers > 0) {
                return paint(
                  `(${plural(result.killedWorkers, 'worker')} outlived daemon.graceful_timeout and was killed)`,
                  'yellow',
                );
              }
              return undefined;
            },
          );
        } catch (error) {
          if (!options.all) throw error;
          const report = describeError(error);
          echoError(report.message, report.hint);
          failed = true;
        }
      }
      if (failed) process.exitCode = ExitCodes.failure;
    });
  withExamples(stop, [
    'aiida daemon stop',
    'aiida daemon stop --all',
    'aiida daemon stop --no-wait',
  ]);

  const restart = group
    .command('restart')
    .description(
      'Replace every worker by a new one, one at a time (the daemon keeps serving). With --reset, ' +
        'stop the whole daemon and start it again with daemon.default_workers workers.',
    )
    .option('--reset', 'Stop the daemon completely and start it again.')
    .option('-t, --timeout <seconds>', TIMEOUT_HELP, parseSeconds)
    .action(async (options: TimeoutOption & { reset?: boolean }, cmd: Command) => {
      const profile = loadProfile(cmd);
      const client = await daemonClientFor(profile);
      requireRunning(client, profile);
      if (options.reset) {
        const number = getOption('daemon.default_workers', { profile });
        await step(`Restarting the daemon with ${plural(number, 'worker')} (reset)`, () =>
          client.restartDaemon({ reset: true, timeout: options.timeout }),
        );
      } else {
        await step('Restarting the daemon workers', () =>
          client.restartDaemon({ timeout: options.timeout }),
        );
      }
    });
  withExamples(restart, ['aiida daemon restart', 'aiida daemon restart --reset']);

  const status = group
    .command('status')
    .description(
      'Print the status of the daemon: per worker its pid, state, CPU, memory, start, uptime, ' +
        'restarts and slots; the last stderr lines of a crash-looping worker; a warning above ' +
        '90 % slot use. Exit code 0 if the daemon runs, 3 if not.',
    )
    .option('--all', 'Show the daemons of all profiles.')
    .option(
      '--all-hosts',
      "Show every host's workers of the profile from the store's worker registry (stale: no " +
        'heartbeat for daemon.lease_timeout); works while this host runs no daemon. Exit code 0 ' +
        'if some worker is live, 3 if none.',
    )
    .option('--json', 'Print the status as JSON (an array with --all).')
    .option('-t, --timeout <seconds>', TIMEOUT_HELP, parseSeconds)
    .action(async (options: StatusOptions, cmd: Command) => {
      const profiles = options.all ? listProfiles() : [loadProfile(cmd)];
      if (options.allHosts) return printClusterStatus(profiles, options);
      const results: DaemonStatusResult[] = [];
      for (const profile of profiles) {
        const result = await daemonStatusOf(profile, options.timeout);
        results.push(result);
        if (!options.json) printStatus(result);
      }
      if (options.json) echoJson(options.all ? results : results[0]);
      if (results.some((r) => !r.running)) process.exitCode = ExitCodes.notRunning;
    });
  withExamples(status, [
    'aiida daemon status',
    'aiida daemon status --all',
    'aiida daemon status --json',
    'aiida daemon status --all-hosts',
    'aiida daemon status --all-hosts --json',
  ]);

  const incr = group
    .command('incr')
    .description('Add NUMBER workers to the running daemon; returns once they are ready.')
    .argument('[number]', 'Number of workers to add.', parsePositiveInt, 1)
    .option('-t, --timeout <seconds>', TIMEOUT_HELP, parseSeconds)
    .action(async (number: number, options: TimeoutOption, cmd: Command) => {
      const profile = loadProfile(cmd);
      const client = await daemonClientFor(profile);
      const running = await client.getNumberOfWorkers({ timeout: options.timeout });
      assertWorkerLimit(
        profile,
        running + number,
        `add ${plural(number, 'worker')} to the ${running} running`,
      );
      await step(`Starting ${plural(number, 'daemon worker')}`, () =>
        client.increaseWorkers(number, { timeout: options.timeout }),
      );
    });
  withExamples(incr, ['aiida daemon incr', 'aiida daemon incr 4']);

  const decr = group
    .command('decr')
    .description(
      'Stop NUMBER workers of the running daemon (the youngest, gracefully); returns once gone.',
    )
    .argument('[number]', 'Number of workers to stop.', parsePositiveInt, 1)
    .option('-t, --timeout <seconds>', TIMEOUT_HELP, parseSeconds)
    .action(async (number: number, options: TimeoutOption, cmd: Command) => {
      const client = await daemonClientFor(loadProfile(cmd));
      await step(`Stopping ${plural(number, 'daemon worker')}`, () =>
        client.decreaseWorkers(number, { timeout: options.timeout }),
      );
    });
  withExamples(decr, ['aiida daemon decr', 'aiida daemon decr 2']);

  const logshow = group
    .command('logshow')
    .description(
      "Show the end of the daemon's log (the supervisor's, or a worker's with --worker); " +
        'with -f keep showing what is appended until Ctrl+C.',
    )
    .option('-f, --follow', 'Keep showing new lines until Ctrl+C.')
    .option(
      '--worker <index>',
      'Show the log of worker INDEX (as in `daemon status`).',
      parseNonNegativeInt,
    )
    .option('-n, --lines <count>', 'Number of lines to show first.', parsePositiveInt, 50)
    .option('--raw', 'Show JSON log lines (logging.format json) as stored, not as text lines.')
    .action(async (options: LogshowOptions, cmd: Command) => {
      const profile = loadProfile(cmd);
      const client = await daemonClientFor(profile);
      const file =
        options.worker === undefined
          ? client.supervisorLogFile
          : client.workerLogFile(options.worker);
      if (!existsSync(file)) {
        throw new CliError('log_not_found', `No log file at ${file}.`, {
          hint:
            options.worker === undefined
              ? `The daemon of profile '${profile.name}' has not run yet; start it with \`aiida daemon start\`.`
              : 'Worker indexes are shown by `aiida daemon status`.',
        });
      }
      echoReport(`${file}`);
      const render = options.raw ? (line: string) => line : renderLogLine;
      for (const line of tailLines(file, options.lines)) echo(render(line));
      if (!options.follow) return;
      const controller = new AbortController();
      const stopFollowing = () => controller.abort();
      process.once('SIGINT', stopFollowing);
      process.once('SIGTERM', stopFollowing);
      let partial = '';
      await followFile(
        file,
        (text) => {
          const lines = `${partial}${text}`.split('\n');
          partial = lines.pop() ?? '';
          for (const line of lines) process.stdout.write(`${render(line)}\n`);
        },
        controller.signal,
      );
    });
  withExamples(logshow, [
    'aiida daemon logshow',
    'aiida daemon logshow -f',
    'aiida daemon logshow --worker 0 -n 200',
    'aiida daemon logshow --raw | jq .msg',
  ]);

  const worker = group
    .command('worker')
    .description(
      'Run one worker in this terminal, outside the daemon, until Ctrl+C (for debugging). ' +
        'Exits with the worker’s exit code.',
    )
    .action(async (_options: unknown, cmd: Command) => {
      const profile = loadProfile(cmd);
      echoReport(
        `Running one worker of profile \`${profile.name}\` in the foreground (Ctrl+C to stop).`,
      );
      process.exitCode = await runForegroundWorker(profile);
    });
  withExamples(worker, ['aiida daemon worker', 'aiida -p work daemon worker']);
}

/** What `aiida daemon status --json` prints for one profile. */
export interface DaemonStatusResult {
  profile: string;
  running: boolean;
  /** The daemon's status when it runs, else null. */
  status: DaemonStatus | null;
  /** Why the status could not be read, else null. */
  error: { code: string; message: string } | null;
}

/** Reads the status of a profile's daemon; never throws. */
async function daemonStatusOf(
  profile: Profile,
  timeout: number | undefined,
): Promise<DaemonStatusResult> {
  try {
    const status = await (await daemonClientFor(profile)).getStatus({ timeout });
    return { profile: profile.name, running: true, status, error: null };
  } catch (error) {
    return {
      profile: profile.name,
      running: false,
      status: null,
      error: { code: codeOf(error) ?? 'daemon_error', message: describeError(error).message },
    };
  }
}

/**
 * `daemon status --all-hosts`: every host's workers of each profile from its store's registry, as
 * a table or JSON (`ClusterStatus`, an array with `--all`); exit code 3 when a profile has no
 * live worker on any host.
 */
async function printClusterStatus(profiles: Profile[], options: StatusOptions): Promise<void> {
  const clusters: ClusterStatus[] = [];
  for (const profile of profiles) {
    const cluster = await (await daemonClientFor(profile)).getClusterStatus();
    clusters.push(cluster);
    if (!options.json) {
      echo(`${paint('Profile:', ['blue', 'bold'])} ${paint(profile.name, 'bold')}`);
      echo(renderClusterStatus(cluster));
    }
  }
  if (options.json) echoJson(options.all ? clusters : clusters[0]);
  if (clusters.some((c) => c.workers === c.staleWorkers)) process.exitCode = ExitCodes.notRunning;
}

function printStatus(result: DaemonStatusResult): void {
  echo(`${paint('Profile:', ['blue', 'bold'])} ${paint(result.profile, 'bold')}`);
  if (result.status === null) {
    const report = describeError(
      Object.assign(new Error(result.error?.message), { code: result.error?.code }),
    );
    echoError(report.message, report.hint);
    return;
  }
  const view = renderDaemonStatus(result.status);
  echo(view.text);
  for (const warning of view.warnings) echoWarning(warning);
}

/**
 * Before a stop that waits: says what it waits for when processes are running (how many, on how
 * many workers, and the deadline after which the workers still running are killed), so that a
 * stop that takes up to `daemon.graceful_timeout` does not sit silent. Says nothing when the
 * daemon is idle or can't be asked (the stop itself reports that).
 */
async function announceStopWait(client: DaemonClient, profile: Profile): Promise<void> {
  if (!client.isDaemonRunning) return;
  let status: DaemonStatus;
  try {
    status = await client.getStatus({ timeout: 2 });
  } catch {
    return;
  }
  const { used } = slotUsage(status.workers);
  if (used === 0) return;
  const busy = status.workers.filter((w) => w.slotsUsed > 0).length;
  const graceful = status.gracefulTimeout ?? getOption('daemon.graceful_timeout', { profile });
  const deadline = new Date(Date.now() + graceful * 1000);
  echo(
    `Waiting for ${plural(used, 'running process', 'running processes')} on ${plural(busy, 'worker')} ` +
      `to finish or checkpoint, until ${formatLocalTime(deadline)} at the latest ` +
      `(daemon.graceful_timeout ${graceful} s); workers still running then are killed.`,
  );
}

function requireRunning(client: DaemonClient, profile: Profile): void {
  if (!client.isDaemonRunning) {
    throw new CliError('not_running', `The daemon of profile '${profile.name}' is not running.`, {
      hint: 'Start it with `aiida daemon start`.',
      exitCode: ExitCodes.notRunning,
    });
  }
}
