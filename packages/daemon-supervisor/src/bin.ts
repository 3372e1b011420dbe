#!/usr/bin/env node
/**
 * The daemon's program: `aiida-daemon-supervisor --profile <name> --workers <n> [--report-fd 3]`.
 * With `--report-fd`, exactly one NDJSON line is written to that descriptor once the start is
 * settled (`{"v":1,"ok":true,"pid":…,"socketPath":…}` or `{"v":1,"ok":false,"error":{…}}`),
 * then it is closed. Exit status: 0 after a stop request, 1 when the start failed, 2 for bad
 * arguments; after SIGTERM/SIGINT the signal is raised again, so the status names it.
 */
import { closeSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { getOption, getProfile } from '@aiida/config';
import { ErrorCodes, encodeNdjson, PROTOCOL_VERSION, type SupervisorStartReport } from '@aiida/ipc';
import { errorMessage } from './errors.js';
import { runSupervisor } from './supervisor.js';

const USAGE = 'usage: aiida-daemon-supervisor --profile <name> --workers <n> [--report-fd <fd>]';

function report(fd: number | undefined, message: SupervisorStartReport): void {
  if (fd === undefined) return;
  try {
    writeSync(fd, encodeNdjson(message));
  } catch {
    // EPIPE and friends: whoever started us is gone; nothing to tell.
  }
  try {
    closeSync(fd);
  } catch {}
}

async function main(): Promise<void> {
  let values: { profile?: string; workers?: string; 'report-fd'?: string };
  try {
    ({ values } = parseArgs({
      options: {
        profile: { type: 'string' },
        workers: { type: 'string' },
        'report-fd': { type: 'string' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`${errorMessage(error)}\n${USAGE}\n`);
    process.exit(2);
  }
  const reportFd = values['report-fd'] === undefined ? undefined : Number(values['report-fd']);
  const numberWorkers = values.workers === undefined ? undefined : Number(values.workers);
  if (
    (reportFd !== undefined && !(Number.isInteger(reportFd) && reportFd >= 3)) ||
    (numberWorkers !== undefined && !(Number.isInteger(numberWorkers) && numberWorkers >= 0))
  ) {
    const message = `invalid arguments: ${process.argv.slice(2).join(' ')}\n${USAGE}`;
    process.stderr.write(`${message}\n`);
    report(reportFd, {
      v: PROTOCOL_VERSION,
      ok: false,
      error: { code: ErrorCodes.invalidRequest, message },
    });
    process.exit(2);
  }

  let exitCode: number;
  try {
    const profile = getProfile(values.profile);
    const supervisor = await runSupervisor({
      profile,
      numberWorkers: numberWorkers ?? getOption('daemon.default_workers', { profile }),
      handleSignals: true,
      onStarted: (info) => report(reportFd, { v: PROTOCOL_VERSION, ok: true, ...info }),
    });
    exitCode = await supervisor.done;
  } catch (error) {
    // Config errors (e.g. profile_not_found) carry their own code; keep it.
    const code = hasCode(error) ? error.code : ErrorCodes.daemonError;
    const message = errorMessage(error);
    process.stderr.write(`${new Date().toISOString()} supervisor start failed: ${message}\n`);
    report(reportFd, { v: PROTOCOL_VERSION, ok: false, error: { code, message } });
    exitCode = 1;
  }
  if (lastSignal) {
    const signal = lastSignal;
    // Re-raise, so that whoever waits on us sees which signal ended the daemon.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(exitCode), 1000).unref();
    return;
  }
  process.exit(exitCode);
}

let lastSignal: NodeJS.Signals | undefined;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  // Remembers the signal for the exit status; the supervisor's own handlers do the stopping.
  process.on(signal, () => {
    lastSignal = signal;
    if (process.listenerCount(signal) === 1) {
      // The supervisor has not taken over signals yet (or gave them back): die of it now.
      process.removeAllListeners(signal);
      process.kill(process.pid, signal);
    }
  });
}

function hasCode(error: unknown): error is { code: string } {
  return (
    typeof error === 'object' &&
    error !== null &&
    typeof (error as { code?: unknown }).code === 'string'
  );
}

process.on('uncaughtException', (error) => {
  process.stderr.write(
    `${new Date().toISOString()} supervisor crashed: ${error.stack ?? error.message}\n`,
  );
  process.exit(70);
});

void main();
