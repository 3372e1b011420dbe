import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { deleteBrokerTopology } from '../broker-check.js';
import { daemonClientFor } from '../daemon-access.js';
import { openEngineSession, type ProcessRecord } from '../engine-session.js';
import { CliError, describeError, ExitCodes } from '../errors.js';
import { formatDuration, plural } from '../format.js';
import { withExamples } from '../help.js';
import { echo, echoError, echoReport, echoSuccess, paint } from '../output.js';
import { parsePositiveInt, parseSeconds } from '../parse.js';
import { countStates, describeProgress, finishedOk, waitForAll } from '../process-wait.js';
import { ProgressLine } from '../progress.js';
import { step } from '../step.js';
import { formatTable } from '../table.js';
import { presto } from './presto.js';

interface DemoOptions {
  calculations: number;
  workflows: number;
  workers: number;
  sleep: number;
  aiidaPath?: string;
  keep?: boolean;
  timeout: number;
}

const ADD = 'core.arithmetic.add';
const MULTIPLY_ADD = 'core.arithmetic.multiply_add';

/** `aiida demo`: the project's main job, end to end, in a throwaway profile. */
export function registerDemoCommand(program: Command): void {
  const command = program
    .command('demo')
    .summary('Run the main job: a fresh profile, a daemon, a batch of processes, a summary.')
    .description(
      'Run the main job end to end in a fresh profile: create it (as `aiida presto`), start a ' +
        'daemon, submit a batch of calculations (core.arithmetic.add) and workflows ' +
        '(core.arithmetic.multiply_add), show them finishing live, check every result, print a ' +
        'summary and stop the daemon. Exit code 0 only if every process finished with the ' +
        'right result. Uses RabbitMQ when it answers (AIIDA_BROKER_* variables as for presto), ' +
        'else core.store (the store is the queue: nothing to install), and says which first.',
    )
    .option('-c, --calculations <number>', 'Number of calculations.', parsePositiveInt, 100)
    .option(
      '-w, --workflows <number>',
      'Number of workflows (each submits a calculation).',
      parsePositiveInt,
      20,
    )
    .option('--workers <number>', 'Number of daemon workers.', parsePositiveInt, 2)
    .option(
      '--sleep <seconds>',
      'Calculations take from 0 up to this long (the `sleep` input), so progress can be watched.',
      parseSeconds,
      2,
    )
    .option(
      '--aiida-path <dir>',
      'Use this AIIDA_PATH instead of a fresh temporary folder (a new profile is added and made the default).',
    )
    .option('--keep', 'Keep the temporary AIIDA_PATH afterwards (it is kept anyway on failure).')
    .option(
      '-t, --timeout <seconds>',
      'Give up waiting for the processes after this long.',
      parsePositiveInt,
      300,
    )
    .action(async (options: DemoOptions) => {
      await runDemo(options);
    });
  withExamples(command, [
    'aiida demo',
    'aiida demo --calculations 200 --workflows 50 --workers 2',
    'aiida demo --aiida-path ./demo-home --keep',
  ]);
}

async function runDemo(options: DemoOptions): Promise<void> {
  const fresh = options.aiidaPath === undefined;
  const aiidaPath = fresh
    ? mkdtempSync(join(tmpdir(), 'aiida-demo-'))
    : resolve(options.aiidaPath as string);
  mkdirSync(aiidaPath, { recursive: true });
  // Everything below (config, daemon, workers) reads AIIDA_PATH.
  process.env.AIIDA_PATH = aiidaPath;
  delete process.env.AIIDA_PROFILE;
  echoReport(`AIIDA_PATH=${aiidaPath}${fresh ? ' (fresh, temporary)' : ''}`);

  const started = Date.now();
  let succeeded = false;
  const interrupt = new AbortController();
  const onSignal = () => interrupt.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const profile = await presto(fresh ? 'demo' : undefined, { timeout: 5 });
  const client = await daemonClientFor(profile);
  let daemonStarted = false;
  const session = await openEngineSession(profile);
  try {
    await step(`Starting the daemon with ${plural(options.workers, 'worker')}`, () =>
      client.startDaemon({ numberWorkers: options.workers }),
    );
    daemonStarted = true;

    // Spread the calculations' durations over [0, sleep) in a fixed pattern.
    const calcInputs = Array.from({ length: options.calculations }, (_, i) => ({
      x: i,
      y: 2 * i + 1,
      ...(options.sleep > 0 ? { sleep: (options.sleep * ((i * 7) % 10)) / 10 } : {}),
    }));
    const workflowInputs = Array.from({ length: options.workflows }, (_, i) => ({
      x: i + 1,
      y: 3,
      z: i,
    }));
    const submitStart = Date.now();
    const calcs = await session.submit(ADD, calcInputs);
    const flows = await session.submit(MULTIPLY_ADD, workflowInputs);
    const submitSeconds = (Date.now() - submitStart) / 1000;
    echoReport(
      `Submitted ${plural(calcs.length, 'calculation')} (${ADD}) and ` +
        `${plural(flows.length, 'workflow')} (${MULTIPLY_ADD}) in ${formatDuration(submitSeconds)}.`,
    );

    const pks = [...calcs, ...flows].map((p) => p.pk);
    const progress = new ProgressLine({ interval: 1 });
    let line = '';
    const records = await waitForAll(session, pks, {
      timeout: options.timeout,
      signal: interrupt.signal,
      onProgress: (rows) => {
        line = describeProgress(countStates(rows), pks.length, (Date.now() - submitStart) / 1000);
        progress.update(line);
      },
    });
    progress.done(line);
    const elapsed = (Date.now() - submitStart) / 1000;

    // Children that the workflows submitted are processes too: count them in the summary.
    const children = (await session.listProcesses({})).filter(
      (r) => r.parentPk !== null && pks.includes(r.parentPk),
    );
    const wrong = checkResults(records, [...calcInputs, ...workflowInputs]);
    printSummary(records, children, elapsed, wrong);
    succeeded = wrong.length === 0 && records.every(finishedOk);
  } catch (error) {
    const report = describeError(error);
    echoError(report.message);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await session.close().catch(() => {});
    if (daemonStarted || client.isDaemonRunning) {
      await step('Stopping the daemon', () => client.stopDaemon({ wait: true })).catch((error) => {
        echoError(`Could not stop the daemon: ${(error as Error).message}`);
      });
    }
  }
  const total = (Date.now() - started) / 1000;
  // A throwaway profile's queues go with it; in a folder the user gave, they stay with the profile.
  if (fresh && profile.broker.backend === 'core.rabbitmq') await deleteBrokerTopology(profile);
  if (!succeeded) {
    throw new CliError('demo_failed', `The demo failed after ${formatDuration(total)}.`, {
      hint: `Its files, with the daemon's logs, are kept in ${aiidaPath} (\`AIIDA_PATH=${aiidaPath} aiida daemon logshow\`).`,
      exitCode: ExitCodes.failure,
    });
  }
  echoSuccess(`The demo passed in ${formatDuration(total)}.`);
  if (fresh && !options.keep) rmSync(aiidaPath, { recursive: true, force: true });
  else echoReport(`Its files stay in ${aiidaPath}.`);
}

/** Pks whose outputs are not what the inputs say they must be. */
function checkResults(records: ProcessRecord[], inputs: Record<string, number>[]): number[] {
  const wrong: number[] = [];
  records.forEach((record, i) => {
    const input = inputs[i] as Record<string, number>;
    if (record.state !== 'finished') return;
    const outputs = (record.outputs ?? {}) as Record<string, unknown>;
    const expected =
      record.type === ADD
        ? (input.x as number) + (input.y as number)
        : (input.x as number) * (input.y as number) + (input.z as number);
    const value = record.type === ADD ? outputs.sum : (outputs.result ?? outputs.sum);
    if (value !== expected) wrong.push(record.pk);
  });
  return wrong;
}

function printSummary(
  records: ProcessRecord[],
  children: ProcessRecord[],
  elapsed: number,
  wrong: number[],
): void {
  const all = [...records, ...children];
  const types = [ADD, MULTIPLY_ADD];
  const rows = types.map((type) => {
    const top = records.filter((r) => r.type === type);
    const counts = countStates(top);
    return [
      type,
      top.length,
      counts.finished,
      counts.excepted,
      counts.killed,
      top.length - counts.finished - counts.excepted - counts.killed,
    ];
  });
  echo('');
  echo(paint('Summary', 'bold'));
  echo(formatTable(['type', 'submitted', 'finished', 'excepted', 'killed', 'other'], rows));
  echo('');
  echo(
    `Processes run:   ${all.length} (${records.length} submitted + ${children.length} submitted by workflows)`,
  );
  echo(`Time:            ${formatDuration(elapsed)} from first submit to last result`);
  echo(
    `Rate:            ${(all.length / Math.max(elapsed, 0.001)).toFixed(1)} processes per second`,
  );
  echo(
    `Results checked: ${records.length - wrong.length} of ${records.length} correct` +
      (wrong.length > 0 ? paint(` (wrong: pk ${wrong.slice(0, 10).join(', ')})`, 'red') : ''),
  );
  echo('');
}
