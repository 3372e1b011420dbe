import {
  describeStorage,
  getConfigDir,
  getConfigFilePath,
  getRedactedBrokerUrl,
  type Profile,
} from '@aiida/config';
import type { Command } from 'commander';
import { brokerFailureReason, checkBroker } from '../broker-check.js';
import { globalOptions, loadProfile } from '../context.js';
import { daemonClientFor } from '../daemon-access.js';
import { codeOf, describeError, ExitCodes } from '../errors.js';
import { plural } from '../format.js';
import { withExamples } from '../help.js';
import { echo, echoJson, echoReport, paint } from '../output.js';
import { parseSeconds } from '../parse.js';
import { checkStorage } from '../storage-check.js';
import { CLI_VERSION } from '../version.js';

/** How one service is. */
export type ServiceState = 'up' | 'warning' | 'error';

/** One line of `aiida status`. */
export interface ServiceCheck {
  service: string;
  state: ServiceState;
  message: string;
}

const SYMBOLS: Record<ServiceState, [string, 'green' | 'yellow' | 'red']> = {
  up: ['\u2714', 'green'],
  warning: ['\u23fa', 'yellow'],
  error: ['\u2718', 'red'],
};

/** `aiida status`: config, profile, storage, broker and daemon, each with a tick or a cross. */
export function registerStatusCommand(program: Command): void {
  const command = program
    .command('status')
    .summary('Check config, profile, storage, broker and daemon, with a tick or a cross each.')
    .description(
      'Check the services a profile needs: config, profile, storage, broker (its version and ' +
        'redacted URL; none for a core.store profile, whose store is the queue) and daemon, each with a tick or a cross and the reason. Exit code 0 ' +
        'unless a service is broken (a stopped daemon is a warning, not an error).',
    )
    .option(
      '-t, --timeout <seconds>',
      'How long to wait for the broker and the daemon.',
      parseSeconds,
      5,
    )
    .option('--json', 'Print the checks as JSON.')
    .action(async (options: { timeout: number; json?: boolean }, cmd: Command) => {
      const checks: ServiceCheck[] = [];
      const emit = (check: ServiceCheck) => {
        checks.push(check);
        if (!options.json) printCheck(check);
      };
      emit({ service: 'version', state: 'up', message: `aiida (TypeScript) v${CLI_VERSION}` });
      emit({ service: 'config', state: 'up', message: getConfigDir() });
      const profile = await checkProfile(cmd, emit);
      if (profile !== undefined) {
        emit(await storageCheck(profile));
        emit(await brokerCheck(profile, options.timeout));
        emit(await daemonCheck(profile, options.timeout));
      } else if (!options.json && checks.at(-1)?.state === 'warning') {
        echoReport(
          'Run `aiida presto` to set up a profile with all defaults, or `aiida profile setup` for more control.',
        );
      }
      if (options.json) echoJson({ ok: checks.every((c) => c.state !== 'error'), checks });
      if (checks.some((c) => c.state === 'error')) process.exitCode = ExitCodes.failure;
    });
  withExamples(command, ['aiida status', 'aiida -p work status --json']);
}

async function checkProfile(
  cmd: Command,
  emit: (check: ServiceCheck) => void,
): Promise<Profile | undefined> {
  try {
    const profile = loadProfile(cmd);
    emit({ service: 'profile', state: 'up', message: profile.name });
    return profile;
  } catch (error) {
    const named = globalOptions(cmd).profile !== undefined || !!process.env.AIIDA_PROFILE;
    if (codeOf(error) === 'profile_not_found' && !named) {
      emit({ service: 'profile', state: 'warning', message: 'no profile configured yet' });
    } else {
      emit({
        service: 'profile',
        state: 'error',
        message: `Unable to read the profile from ${getConfigFilePath()}: ${describeError(error).message}`,
      });
    }
    return undefined;
  }
}

async function storageCheck(profile: Profile): Promise<ServiceCheck> {
  try {
    const info = await checkStorage(profile);
    return { service: 'storage', state: 'up', message: info };
  } catch (error) {
    return {
      service: 'storage',
      state: 'error',
      message: `Unable to open the storage (${describeStorage(profile.storage)}): ${describeError(error).message}`,
    };
  }
}

async function brokerCheck(profile: Profile, timeout: number): Promise<ServiceCheck> {
  if (profile.broker.backend === 'core.store') {
    return {
      service: 'broker',
      state: 'up',
      message: 'none: process control core.store (the store is the queue)',
    };
  }
  const url = getRedactedBrokerUrl(profile);
  const check = await checkBroker(profile, timeout);
  if (check.ok) {
    return { service: 'broker', state: 'up', message: `${check.version ?? 'RabbitMQ'} @ ${url}` };
  }
  return {
    service: 'broker',
    state: 'error',
    message: `Unable to connect to the broker at ${url}: ${brokerFailureReason(check.error)}`,
  };
}

async function daemonCheck(profile: Profile, timeout: number): Promise<ServiceCheck> {
  try {
    const status = await (await daemonClientFor(profile)).getStatus({ timeout });
    const ready = status.workers.filter((w) => w.state === 'ready').length;
    const looping = status.workers.filter((w) => w.state === 'crash-looping').length;
    if (status.workers.length === 0) {
      // A daemon without workers runs nothing: submitted processes wait.
      return {
        service: 'daemon',
        state: 'warning',
        message:
          `Daemon is running with PID ${status.pid} but has no workers: submitted processes ` +
          'will not run. Add workers with `aiida daemon incr`.',
      };
    }
    return {
      service: 'daemon',
      state: looping > 0 || ready === 0 ? 'warning' : 'up',
      message:
        `Daemon is running with PID ${status.pid}, ${plural(ready, 'worker')} ready` +
        (looping > 0 ? `, ${looping} crash-looping (see \`aiida daemon status\`)` : ''),
    };
  } catch (error) {
    const code = codeOf(error);
    const message = describeError(error).message;
    if (code === 'not_running') {
      return {
        service: 'daemon',
        state: 'warning',
        message: `${message} Start it with \`aiida daemon start\`.`,
      };
    }
    return { service: 'daemon', state: 'error', message };
  }
}

function printCheck(check: ServiceCheck): void {
  const [symbol, colour] = SYMBOLS[check.state];
  const [first = '', ...rest] = check.message.split('\n');
  echo(` ${paint(symbol, colour)} ${`${check.service}:`.padEnd(12)} ${first}`);
  for (const line of rest) echo(`${' '.repeat(16)}${line}`);
}
