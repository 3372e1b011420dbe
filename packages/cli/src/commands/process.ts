import { readFileSync } from 'node:fs';
import { getOption, type Profile } from '@aiida/config';
import type { Command } from 'commander';
import {
  callTree,
  collectReports,
  formatCallTree,
  formatReports,
  REPORT_LEVELS,
  type ReportLevelName,
} from '../call-tree.js';
import { confirm } from '../confirm.js';
import { loadProfile } from '../context.js';
import { daemonClientFor, isDaemonRunning } from '../daemon-access.js';
import { slotUsage, slotWarning } from '../daemon-status-view.js';
import {
  ALL_STATES,
  type ControlOutcome,
  type EngineSession,
  openEngineSession,
  type ProcessFilter,
  type ProcessRecord,
  type ProcessState,
  TERMINAL,
} from '../engine-session.js';
import { CliError, ExitCodes } from '../errors.js';
import { formatAge, formatDuration, formatLocalTime, formatValue, plural } from '../format.js';
import { withExamples } from '../help.js';
import { echo, echoJson, echoReport, echoSuccess, echoWarning, paint } from '../output.js';
import {
  parseChoice,
  parseDays,
  parseKeyValue,
  parseNonNegativeInt,
  parsePk,
  parsePositiveInt,
  parseSeconds,
} from '../parse.js';
import { countStates, describeProgress, finishedOk, waitForAll } from '../process-wait.js';
import { ProgressLine } from '../progress.js';
import { formatTable } from '../table.js';

const parseState = parseChoice(ALL_STATES);

function collectStates(value: string, previous: ProcessState[] = []): ProcessState[] {
  return [...previous, parseState(value)];
}

/** Opens the engine for the command's profile, runs `work`, and always closes it again. */
async function withEngine<T>(
  cmd: Command,
  work: (session: EngineSession, profile: Profile) => Promise<T>,
): Promise<T> {
  const profile = loadProfile(cmd);
  const session = await openEngineSession(profile);
  try {
    return await work(session, profile);
  } finally {
    await session.close();
  }
}

/** `aiida process submit|run|list|show|report|pause|play|kill|watch|delete`. */
export function registerProcessCommands(program: Command): void {
  const group = program
    .command('process')
    .summary('Submit, inspect and control processes (calculations and workflows).')
    .description(
      'Submit processes to the daemon or run them here, list and inspect them, and pause, play, ' +
        'kill or delete them.',
    );
  withExamples(group, [
    'aiida process submit core.arithmetic.add -i x=1 -i y=2 --wait',
    'aiida process list -a',
    'aiida process show 12',
    'aiida process kill 12',
  ]);

  const submit = group
    .command('submit')
    .description(
      'Submit processes of TYPE to the daemon. Inputs come from -i key=value (the value parses ' +
        'as JSON, else it is a string) and/or --inputs-file (a JSON object, or an array of ' +
        'objects: one process each). Exit code with --wait: 0 only if all finished well.',
    )
    .argument('<type>', 'Process type, e.g. core.arithmetic.add or core.arithmetic.multiply_add.')
    .option('-i, --input <key=value>', 'One input (repeatable).', parseKeyValue)
    .option('--inputs-file <file>', 'A JSON file with the inputs (an object, or an array of them).')
    .option(
      '-n, --count <number>',
      'Submit this many processes with the same inputs.',
      parsePositiveInt,
      1,
    )
    .option('--time-limit <seconds>', 'Kill a process still running after this long.', parseSeconds)
    .option('-w, --wait', 'Wait until all are done, showing progress.')
    .option('-t, --timeout <seconds>', 'With --wait: give up after this long.', parseSeconds)
    .option('--json', 'Print the submitted processes (with --wait: their final rows) as JSON.')
    .action(async (type: string, options: SubmitOptions, cmd: Command) => {
      const inputsList = collectInputs(options);
      await withEngine(cmd, async (session, profile) => {
        const started = Date.now();
        const submitted = await submitWithProgress(session, type, inputsList, options);
        if (!options.json) {
          if (submitted.length === 1) {
            echoSuccess(`Submitted ${type}<${submitted[0]?.pk}> to the daemon.`);
          } else {
            echoSuccess(
              `Submitted ${submitted.length} processes of ${type} (pk ${submitted[0]?.pk} to ${submitted.at(-1)?.pk}).`,
            );
          }
        }
        if (!(await isDaemonRunning(profile))) {
          echoWarning(
            `the daemon of profile '${profile.name}' is not running: the processes wait until ` +
              '`aiida daemon start`.',
          );
        }
        if (!options.wait) {
          if (options.json) echoJson(submitted);
          return;
        }
        const records = await waitWithProgress(
          session,
          submitted.map((s) => s.pk),
          options.timeout,
          !!options.json,
        );
        if (options.json) echoJson(records);
        else if (records.length === 1 && records[0]) printOutcome(records[0]);
        reportBatchOutcome(records, (Date.now() - started) / 1000, !!options.json);
      });
    });
  withExamples(submit, [
    'aiida process submit core.arithmetic.add -i x=1 -i y=2',
    'aiida process submit core.arithmetic.add -i x=1 -i y=2 --count 50 --wait',
    'aiida process submit core.arithmetic.multiply_add -i x=2 -i y=3 -i z=4 --wait',
    `aiida process submit core.shell -i command=echo -i 'args=["hi"]' --wait`,
    'aiida process submit core.arithmetic.add --inputs-file inputs.json --json',
  ]);

  const run = group
    .command('run')
    .description(
      'Run a process of TYPE in this terminal (no daemon needed) and print its outputs. Exit ' +
        'code 0 if it finished well.',
    )
    .argument('<type>', 'Process type, e.g. core.arithmetic.add.')
    .option('-i, --input <key=value>', 'One input (repeatable).', parseKeyValue)
    .option('--inputs-file <file>', 'A JSON file with the inputs (an object).')
    .option('--json', 'Print the final process row as JSON.')
    .action(async (type: string, options: SubmitOptions, cmd: Command) => {
      const [inputs = {}] = collectInputs({ ...options, count: 1 });
      await withEngine(cmd, async (session) => {
        const record = await session.run(type, inputs);
        if (options.json) echoJson(record);
        else printOutcome(record);
        if (!finishedOk(record)) process.exitCode = ExitCodes.failure;
      });
    });
  withExamples(run, [
    'aiida process run core.arithmetic.add -i x=1 -i y=2',
    'aiida process run core.arithmetic.multiply_add -i x=2 -i y=3 -i z=4 --json',
  ]);

  const list = group
    .command('list')
    .description(
      'List processes, as verdi does: by default the active ones (created, waiting, running), ' +
        'oldest first; filtering, sorting and the limit happen in the store. The footer shows ' +
        'how many daemon worker slots are in use. The profile goes before the subcommand here ' +
        '(`aiida -p NAME process list -p 1`): -p is --past-days, as in verdi.',
    )
    .option('-a, --all', 'Show every process, whatever its state.')
    .option(
      '-S, --process-state <state>',
      `Only this state (repeatable): ${ALL_STATES.join(', ')}.`,
      collectStates,
    )
    .option(
      '-E, --exit-status <number>',
      'Only processes that finished with this exit status.',
      parseNonNegativeInt,
    )
    .option('-X, --failed', 'Only processes that finished with a non-zero exit status.')
    .option('--paused', 'Only paused processes.')
    .option('-p, --past-days <days>', 'Only processes created in the past DAYS days.', parseDays)
    .option('-T, --type <type>', 'Only processes of this type.')
    .option(
      '-O, --order-by <key>',
      `Sort by: ${ORDER_KEYS.join(', ')}.`,
      parseChoice(ORDER_KEYS),
      'ctime',
    )
    .option('-D, --order-dir <dir>', 'Sort direction: asc or desc.', parseChoice(ORDER_DIRS), 'asc')
    .option(
      '-l, --limit <number>',
      'At most this many (the first in that order).',
      parsePositiveInt,
    )
    .option(
      '-P, --project <columns...>',
      `The columns to show: ${Object.keys(PROJECTIONS).join(', ')}.`,
      collectProjections,
    )
    .option('-r, --raw', 'Only the rows: no header, no footer (for scripts).')
    .option('--json', 'Print the processes as JSON.')
    .action(async (options: ListOptions, cmd: Command) => {
      await withEngine(cmd, async (session, profile) => {
        const records = await session.listProcesses(listFilter(options));
        if (options.json) {
          echoJson(records);
          return;
        }
        const columns = options.project ?? DEFAULT_PROJECTION;
        const now = Date.now();
        const rows = records.map((r) => columns.map((c) => PROJECTIONS[c].cell(r, now)));
        if (options.raw) {
          for (const row of rows) echo(row.join('\t'));
          return;
        }
        echo(
          formatTable(
            columns.map((c) => PROJECTIONS[c].header),
            rows,
          ),
        );
        echo('');
        echo(`Total results: ${records.length}`);
        echo('');
        await reportSlots(profile);
      });
    });
  withExamples(list, [
    'aiida process list',
    'aiida process list -a -p 1               # everything created in the past day',
    'aiida process list -S excepted -S killed',
    'aiida process list -X                    # finished with a non-zero exit status',
    'aiida process list -a -O ctime -D desc -l 20',
    'aiida process list -a -P pk exit_status -r',
    'aiida -p other process list -p 7         # profile before, past days after',
  ]);

  const show = group
    .command('show')
    .description(
      'Show everything about processes: state, inputs, outputs, errors, times, and the ' +
        'processes a workflow called.',
    )
    .argument('<pk...>', 'Process pks.', parsePk)
    .option('--json', 'Print the process rows as JSON.')
    .action(async (pks: number[], options: { json?: boolean }, cmd: Command) => {
      await withEngine(cmd, async (session) => {
        const records = await requireProcesses(session, pks);
        if (options.json) {
          echoJson(records.length === 1 ? records[0] : records);
          return;
        }
        for (const [i, record] of records.entries()) {
          if (i > 0) echo('');
          printProcess(record);
          const called = await session.listProcesses({ parentPk: record.pk, order: 'asc' });
          if (called.length > 0) {
            echo('\nCalled:');
            echo(
              formatTable(
                ['PK', 'Type', 'State'],
                called.map((c) => [c.pk, c.type, stateText(c)]),
                { indent: '  ' },
              ),
            );
          }
        }
      });
    });
  withExamples(show, ['aiida process show 12', 'aiida process show 12 13 --json']);

  const report = group
    .command('report')
    .description(
      'Show the log of reports that processes wrote while they ran, as verdi does: for a ' +
        "workflow, its called processes' reports too, indented by depth, all in time order.",
    )
    .argument('<pk...>', 'Process pks.', parsePk)
    .option(
      '-l, --levelname <level>',
      `Only reports of this level or above: ${REPORT_LEVELS.join(', ')}.`,
      parseLevel,
      'REPORT',
    )
    .option(
      '-m, --max-depth <number>',
      'Only this many levels of the call tree (1: the process itself).',
      parsePositiveInt,
    )
    .option('-i, --indent-size <number>', 'Spaces per level of depth.', parseNonNegativeInt, 2)
    .option('--json', 'Print the reports as JSON (with their depth).')
    .action(async (pks: number[], options: ReportOptions, cmd: Command) => {
      await withEngine(cmd, async (session) => {
        const records = await requireProcesses(session, pks);
        const all = [];
        for (const [i, record] of records.entries()) {
          const { pk } = record;
          const entries = await collectReports(session, record, options);
          all.push(...entries);
          if (options.json) continue;
          if (i > 0) echo('');
          if (entries.length === 0) {
            echo(`No log messages recorded for process ${pk}.`);
            continue;
          }
          for (const line of formatReports(entries, options.indentSize)) echo(line);
        }
        if (options.json) echoJson(all);
      });
    });
  withExamples(report, [
    'aiida process report 12',
    'aiida process report 12 --levelname WARNING',
    'aiida process report 12 --max-depth 1      # the workflow only, not what it called',
  ]);

  const status = group
    .command('status')
    .description(
      'Show the call tree of processes with their states, as verdi does: ' +
        '`type<pk> State`, the processes each workflow called below it.',
    )
    .argument('<pk...>', 'Process pks.', parsePk)
    .option(
      '-m, --max-depth <number>',
      'Only this many levels below each process.',
      parseNonNegativeInt,
    )
    .action(async (pks: number[], options: { maxDepth?: number }, cmd: Command) => {
      await withEngine(cmd, async (session) => {
        const records = await requireProcesses(session, pks);
        for (const record of records) {
          const tree = await callTree(session, record, options.maxDepth);
          echo(formatCallTree(tree));
        }
      });
    });
  withExamples(status, ['aiida process status 12', 'aiida process status 12 --max-depth 1']);

  const callRoot = group
    .command('call-root')
    .description('Show the root of the call tree of processes: the workflow that started it all.')
    .argument('<pk...>', 'Process pks.', parsePk)
    .action(async (pks: number[], _options: unknown, cmd: Command) => {
      await withEngine(cmd, async (session) => {
        for (const record of await requireProcesses(session, pks)) {
          if (record.parentPk === null) {
            echo(`No callers found for Process<${record.pk}>`);
            continue;
          }
          let root = record;
          while (root.parentPk !== null) {
            const parent = await session.getProcess(root.parentPk);
            if (parent === undefined) break;
            root = parent;
          }
          echo(String(root.pk));
        }
      });
    });
  withExamples(callRoot, ['aiida process call-root 14']);

  registerControlCommand(
    group,
    'pause',
    'Pause processes: they keep their state and no step starts until played.',
  );
  registerControlCommand(group, 'play', 'Play paused processes: they continue where they were.');
  registerControlCommand(
    group,
    'kill',
    'Kill processes: a running body gets its abort signal; with --force the kill is final after a short grace. Killing a workflow kills its live children.',
  );

  const watch = group
    .command('watch')
    .description(
      'Show the state of a process live until it ends. Exit code 0 if it finished well, 1 if it ended otherwise.',
    )
    .argument('<pk>', 'Process pk.', (v: string) => parsePk(v)[0] as number)
    .option('-t, --timeout <seconds>', 'Give up after this long.', parseSeconds)
    .action(async (pk: number, options: { timeout?: number }, cmd: Command) => {
      await withEngine(cmd, async (session) => {
        const [first] = await requireProcesses(session, [pk]);
        if (first === undefined) return;
        let last = '';
        const printChange = (record: ProcessRecord) => {
          const text = `${stateText(record)}${record.processStatus ? ` (${record.processStatus})` : ''}`;
          if (text === last) return;
          last = text;
          echo(`${formatLocalTime(new Date())}  ${record.type}<${record.pk}>  ${text}`);
        };
        printChange(first);
        const [final] = await waitForAll(session, [pk], {
          timeout: options.timeout,
          onProgress: (records) => {
            if (records[0]) printChange(records[0]);
          },
        });
        if (final === undefined) return;
        printChange(final);
        if (!finishedOk(final)) process.exitCode = ExitCodes.failure;
      });
    });
  withExamples(watch, ['aiida process watch 12']);

  const del = group
    .command('delete')
    .description(
      'Delete ended processes (with their reports and descendants), by pk or by age. Active ' +
        'processes are refused: kill them first.',
    )
    .argument('[pk...]', 'Process pks.', parsePk)
    .option(
      '--older-than <days>',
      'Delete every ended process that ended more than DAYS ago.',
      parseDays,
    )
    .option(
      '-S, --state <state>',
      'With --older-than: only this state (repeatable).',
      collectStates,
    )
    .option('-y, --yes', 'Do not ask for confirmation.')
    .option('--json', 'Print the deleted pks as JSON.')
    .action(
      async (
        pks: number[] | undefined,
        options: { olderThan?: number; state?: ProcessState[]; yes?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        const byPk = pks !== undefined && pks.length > 0;
        if (byPk === (options.olderThan !== undefined)) {
          throw new CliError(
            'usage',
            byPk
              ? 'Give either process pks or --older-than DAYS, not both.'
              : 'Give the pks of the processes to delete, or --older-than DAYS.',
            {
              hint: 'Run `aiida process delete --help` for usage and examples.',
              exitCode: ExitCodes.usage,
            },
          );
        }
        await withEngine(cmd, async (session) => {
          if (byPk) await requireProcesses(session, pks);
          const what = byPk
            ? `Delete ${plural(pks.length, 'process', 'processes')} (${pks.join(', ')})?`
            : `Delete every ended process older than ${options.olderThan} days?`;
          if (!(await confirm(what, !!options.yes))) {
            echoReport('Nothing was deleted.');
            return;
          }
          const deleted = await session.deleteProcesses(
            byPk
              ? { pks }
              : { olderThan: (options.olderThan as number) * 86_400, states: options.state },
          );
          if (options.json) echoJson(deleted);
          else echoSuccess(`Deleted ${plural(deleted.length, 'process', 'processes')}.`);
        });
      },
    );
  withExamples(del, ['aiida process delete 12 13 -y', 'aiida process delete --older-than 30 -y']);
}

interface SubmitOptions {
  input?: Record<string, unknown>;
  inputsFile?: string;
  count: number;
  timeLimit?: number;
  wait?: boolean;
  timeout?: number;
  json?: boolean;
}

interface ReportOptions {
  levelname: ReportLevelName;
  maxDepth?: number;
  indentSize: number;
  json?: boolean;
}

const parseReportLevel = parseChoice(REPORT_LEVELS);

/** A `--levelname`, in any case (`warning` or `WARNING`). */
function parseLevel(value: string): ReportLevelName {
  return parseReportLevel(value.toUpperCase());
}

/** Options of `process list`. */
export interface ListOptions {
  all?: boolean;
  processState?: ProcessState[];
  exitStatus?: number;
  failed?: boolean;
  paused?: boolean;
  pastDays?: number;
  type?: string;
  orderBy: (typeof ORDER_KEYS)[number];
  orderDir: (typeof ORDER_DIRS)[number];
  limit?: number;
  project?: Projection[];
  raw?: boolean;
  json?: boolean;
}

const ORDER_KEYS = ['ctime', 'pk', 'id'] as const;
const ORDER_DIRS = ['asc', 'desc'] as const;

/** The columns of `process list -P`, named as in verdi. */
const PROJECTIONS = {
  pk: { header: 'PK', cell: (r: ProcessRecord) => r.pk },
  uuid: { header: 'UUID', cell: (r: ProcessRecord) => r.uuid },
  ctime: {
    header: 'Created',
    cell: (r: ProcessRecord, now: number) => formatAge(r.createdAt, now),
  },
  mtime: {
    header: 'Modified',
    cell: (r: ProcessRecord, now: number) => formatAge(r.modifiedAt, now),
  },
  process_label: { header: 'Type', cell: (r: ProcessRecord) => r.type },
  process_state: { header: 'State', cell: (r: ProcessRecord) => stateText(r) },
  process_status: { header: 'Process status', cell: (r: ProcessRecord) => r.processStatus ?? '' },
  exit_status: { header: 'Exit status', cell: (r: ProcessRecord) => r.exitStatus ?? '' },
  exit_message: { header: 'Exit message', cell: (r: ProcessRecord) => r.exitMessage ?? '' },
  paused: { header: 'Paused', cell: (r: ProcessRecord) => (r.paused ? 'yes' : 'no') },
  caller: { header: 'Caller', cell: (r: ProcessRecord) => r.parentPk ?? '' },
  exception: {
    header: 'Exception',
    cell: (r: ProcessRecord) => r.exception?.split('\n')[0] ?? '',
  },
} as const;
type Projection = keyof typeof PROJECTIONS;
const DEFAULT_PROJECTION: Projection[] = [
  'pk',
  'ctime',
  'process_label',
  'process_state',
  'process_status',
];
const parseProjection = parseChoice(Object.keys(PROJECTIONS) as Projection[]);

function collectProjections(value: string, previous: Projection[] = []): Projection[] {
  return [...previous, parseProjection(value)];
}

/**
 * The store query of `process list`, as verdi builds it: `-X` and `-E` mean finished processes
 * (with a non-zero, or that, exit status); else `-a` shows every state, `-S` the states given,
 * and by default the active ones.
 */
export function listFilter(options: ListOptions): ProcessFilter {
  const exitFilter = options.failed || options.exitStatus !== undefined;
  const states = exitFilter
    ? undefined
    : options.all
      ? undefined
      : (options.processState ?? ALL_STATES.filter((s) => !TERMINAL.includes(s)));
  return {
    states,
    type: options.type,
    exitStatus: options.exitStatus,
    failed: options.failed || undefined,
    paused: options.paused || undefined,
    createdAfter:
      options.pastDays === undefined
        ? undefined
        : new Date(Date.now() - options.pastDays * 86_400_000),
    orderBy: options.orderBy === 'ctime' ? 'createdAt' : 'pk',
    order: options.orderDir,
    limit: options.limit,
  };
}

/** The inputs of each process to submit: the file's (one per array element), then `-i`s. */
function collectInputs(options: SubmitOptions): Record<string, unknown>[] {
  let base: Record<string, unknown>[] = [{}];
  if (options.inputsFile !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(options.inputsFile, 'utf8'));
    } catch (error) {
      throw new CliError(
        'inputs_invalid',
        `Could not read --inputs-file ${options.inputsFile}: ${(error as Error).message}`,
        {
          hint: 'Give a JSON object (or an array of objects) of inputs.',
          exitCode: ExitCodes.usage,
        },
      );
    }
    const list = Array.isArray(parsed) ? parsed : [parsed];
    if (
      list.length === 0 ||
      list.some((x) => typeof x !== 'object' || x === null || Array.isArray(x))
    ) {
      throw new CliError(
        'inputs_invalid',
        `--inputs-file ${options.inputsFile} must hold a JSON object of inputs, or a non-empty array of them.`,
        { exitCode: ExitCodes.usage },
      );
    }
    base = list as Record<string, unknown>[];
  }
  const merged = base.map((inputs) => ({ ...inputs, ...options.input }));
  if (options.count > 1 && merged.length > 1) {
    throw new CliError('usage', '--count can not be combined with an array in --inputs-file.', {
      exitCode: ExitCodes.usage,
    });
  }
  return options.count > 1
    ? Array.from({ length: options.count }, () => ({ ...merged[0] }))
    : merged;
}

async function submitWithProgress(
  session: EngineSession,
  type: string,
  inputsList: Record<string, unknown>[],
  options: SubmitOptions,
): Promise<{ pk: number; uuid: string }[]> {
  if (inputsList.length <= 100) {
    return session.submit(type, inputsList, { timeLimit: options.timeLimit });
  }
  const progress = new ProgressLine({ stream: options.json ? process.stderr : process.stdout });
  const submitted: { pk: number; uuid: string }[] = [];
  for (let i = 0; i < inputsList.length; i += 100) {
    submitted.push(
      ...(await session.submit(type, inputsList.slice(i, i + 100), {
        timeLimit: options.timeLimit,
      })),
    );
    progress.update(`Submitting: ${submitted.length}/${inputsList.length}`);
  }
  progress.done(`Submitting: ${submitted.length}/${inputsList.length}`);
  return submitted;
}

/** Waits for `pks` with a live progress line (on standard error with --json). */
async function waitWithProgress(
  session: EngineSession,
  pks: number[],
  timeout: number | undefined,
  quiet: boolean,
): Promise<ProcessRecord[]> {
  const started = Date.now();
  const progress = new ProgressLine({ stream: quiet ? process.stderr : process.stdout });
  let last = '';
  const records = await waitForAll(session, pks, {
    timeout,
    onProgress: (rows) => {
      last = describeProgress(countStates(rows), pks.length, (Date.now() - started) / 1000);
      progress.update(last);
    },
  });
  progress.done(last);
  return records;
}

/** After a `--wait`: success line, or an error naming what did not finish well. */
function reportBatchOutcome(records: ProcessRecord[], elapsed: number, quiet: boolean): void {
  const bad = records.filter((r) => !finishedOk(r));
  if (bad.length === 0) {
    if (!quiet) {
      echoSuccess(
        `${records.length} of ${records.length} processes finished in ${formatDuration(elapsed)}` +
          ` (${(records.length / Math.max(elapsed, 0.001)).toFixed(1)} per second).`,
      );
    }
    return;
  }
  const byState = new Map<string, number[]>();
  for (const r of bad) {
    const key = r.state === 'finished' ? `finished with exit status ${r.exitStatus}` : r.state;
    byState.set(key, [...(byState.get(key) ?? []), r.pk]);
  }
  const parts = [...byState].map(
    ([state, pks]) =>
      `${pks.length} ${state} (pk ${pks.slice(0, 5).join(', ')}${pks.length > 5 ? ', ...' : ''})`,
  );
  throw new CliError(
    'processes_failed',
    `${bad.length} of ${records.length} processes did not finish well: ${parts.join('; ')}.`,
    { hint: 'See why with `aiida process show PK` and `aiida process report PK`.' },
  );
}

function registerControlCommand(
  group: Command,
  intent: 'pause' | 'play' | 'kill',
  description: string,
): void {
  const command = group
    .command(intent)
    .description(description)
    .argument('[pk...]', 'Process pks.', parsePk)
    .option(
      '--all',
      `${intent === 'play' ? 'Play every paused' : `${intent === 'kill' ? 'Kill' : 'Pause'} every active`} process.`,
    )
    .option(
      '-t, --timeout <seconds>',
      'How long to wait for the outcome (default: the option daemon.timeout).',
      parseSeconds,
    )
    .option(
      '--no-wait',
      'Do not wait for the worker holding a process to apply the request; return once it is sent.',
    )
    .option('-y, --yes', 'Do not ask for confirmation (with --all).');
  if (intent !== 'play') command.option('-m, --message <text>', 'Why (recorded on the process).');
  if (intent === 'kill')
    command.option(
      '-F, --force',
      'Make the kill final after a short grace, whatever the body does.',
    );
  command.action(
    async (
      pks: number[] | undefined,
      options: {
        all?: boolean;
        timeout?: number;
        wait: boolean;
        yes?: boolean;
        message?: string;
        force?: boolean;
      },
      cmd: Command,
    ) => {
      const byPk = pks !== undefined && pks.length > 0;
      if (byPk === !!options.all) {
        throw new CliError(
          'usage',
          byPk
            ? 'Give either process pks or --all, not both.'
            : `Give the pks of the processes to ${intent}, or --all.`,
          {
            hint: `Run \`aiida process ${intent} --help\` for usage and examples.`,
            exitCode: ExitCodes.usage,
          },
        );
      }
      await withEngine(cmd, async (session, profile) => {
        let targets = pks ?? [];
        if (options.all) {
          const active = await session.listProcesses({
            states: ALL_STATES.filter((s) => !TERMINAL.includes(s)),
          });
          targets = active
            .filter((r) => (intent === 'play' ? r.paused : intent === 'pause' ? !r.paused : true))
            .map((r) => r.pk);
          if (targets.length === 0) {
            echoReport(`No process to ${intent}.`);
            return;
          }
          const ok = await confirm(
            `${capitalise(intent)} ${plural(targets.length, 'process', 'processes')}?`,
            !!options.yes,
          );
          if (!ok) {
            echoReport(
              `Nothing was ${intent === 'play' ? 'played' : intent === 'kill' ? 'killed' : 'paused'}.`,
            );
            return;
          }
        }
        const outcomes =
          intent === 'pause'
            ? await session.pause(targets, { message: options.message, timeout: options.timeout })
            : intent === 'play'
              ? await session.play(targets, { timeout: options.timeout })
              : await session.kill(targets, {
                  message: options.message,
                  force: options.force,
                  timeout: options.timeout,
                });
        const requested = outcomes.filter((o) => o.status === 'requested').map((o) => o.pk);
        // As verdi: wait for the outcome of what a worker has to apply, then say it per pk.
        const waited =
          options.wait && requested.length > 0
            ? await awaitControl(
                session,
                intent,
                requested,
                options.timeout ?? getOption('daemon.timeout', { profile }),
              )
            : new Map<number, boolean>();
        let failed = false;
        for (const outcome of outcomes) {
          const applied = waited.get(outcome.pk);
          if (applied !== undefined) failed = !applied || failed;
          else failed = printControlOutcome(intent, outcome) || failed;
        }
        if (failed) process.exitCode = ExitCodes.failure;
      });
    },
  );
  withExamples(command, [
    `aiida process ${intent} 12`,
    `aiida process ${intent} 12 13 14`,
    ...(intent === 'kill' ? ['aiida process kill 12 --force -m "wrong inputs"'] : []),
    `aiida process ${intent} --all -y`,
  ]);
}

/**
 * Waits until the workers holding `pks` applied the request (killed: the process is terminal;
 * paused: its worker let go of it; played: it is no longer paused) and says so per pk; the map
 * tells which did in time.
 */
async function awaitControl(
  session: EngineSession,
  intent: 'pause' | 'play' | 'kill',
  pks: number[],
  timeout: number,
): Promise<Map<number, boolean>> {
  const applied = (r: ProcessRecord) =>
    TERMINAL.includes(r.state) ||
    (intent === 'pause' && r.paused && r.owner === null) ||
    (intent === 'play' && !r.paused);
  let records: ProcessRecord[];
  try {
    records = await waitForAll(session, pks, { timeout, done: applied });
  } catch (error) {
    if ((error as { code?: string }).code !== 'timeout') throw error;
    records = await session.getProcesses(pks);
  }
  const outcome = new Map<number, boolean>();
  for (const record of records) {
    const name = `Process<${record.pk}>`;
    if (!applied(record)) {
      outcome.set(record.pk, false);
      process.stderr.write(
        `${paint('Error:', ['red', 'bold'], process.stderr)} ${name} was not ${PAST_TENSE[intent]} within ${timeout} s (it is ${record.state}${record.paused ? ', paused' : ''}); the request stays recorded and its worker applies it ${intent === 'pause' ? 'at the end of its current step' : 'when it can'}.\n`,
      );
    } else if (
      TERMINAL.includes(record.state) &&
      !(intent === 'kill' && record.state === 'killed')
    ) {
      outcome.set(record.pk, intent === 'kill');
      echoWarning(`${name} ended ${record.state} before the ${intent} took effect.`);
    } else {
      outcome.set(record.pk, true);
      echoSuccess(`${name} ${PAST_TENSE[intent]}.`);
    }
  }
  return outcome;
}

const PAST_TENSE = { kill: 'killed', pause: 'paused', play: 'played' } as const;

/** Prints one control outcome; true when it failed. */
function printControlOutcome(intent: 'pause' | 'play' | 'kill', outcome: ControlOutcome): boolean {
  const name = `Process<${outcome.pk}>`;
  const done = PAST_TENSE[intent];
  switch (outcome.status) {
    case 'applied':
      echoSuccess(`${name} ${done}.`);
      return false;
    case 'requested':
      echoSuccess(`sent the ${intent} request to ${name}.`);
      return false;
    case 'unchanged':
      echoReport(`${name} is already ${intent === 'play' ? 'playing' : done}.`);
      return false;
    case 'terminal':
      echoWarning(
        `${name} has already ended (${outcome.state ?? 'terminal'}); nothing to ${intent}.`,
      );
      return intent !== 'kill';
    case 'not_found':
      process.stderr.write(
        `${paint('Error:', ['red', 'bold'], process.stderr)} ${name} does not exist.\n`,
      );
      return true;
  }
}

async function requireProcesses(session: EngineSession, pks: number[]): Promise<ProcessRecord[]> {
  const records = await session.getProcesses(pks);
  const found = new Set(records.map((r) => r.pk));
  const missing = pks.filter((pk) => !found.has(pk));
  if (missing.length > 0) {
    throw new CliError(
      'process_not_found',
      `No process with pk ${missing.join(', ')} in this profile.`,
      { hint: 'See `aiida process list -a` for the processes that exist.' },
    );
  }
  return pks.map((pk) => records.find((r) => r.pk === pk) as ProcessRecord);
}

/** The footer of `process list`: slot use of the daemon, or that it is not running. */
async function reportSlots(profile: Profile): Promise<void> {
  const client = await daemonClientFor(profile);
  if (!client.isDaemonRunning) {
    echoWarning('the daemon is not running: submitted processes wait until `aiida daemon start`.');
    return;
  }
  try {
    const status = await client.getStatus();
    const { used, total, fraction } = slotUsage(status.workers);
    echoReport(
      `Using ${used} of ${total} daemon worker slots (${Math.round(fraction * 100)}%), ` +
        `${plural(status.workers.length, 'worker')}.`,
    );
    const warning = slotWarning(status.workers);
    if (warning) echoWarning(warning);
  } catch (error) {
    echoWarning(`could not read the daemon's slot use: ${(error as Error).message}`);
  }
}

function stateText(record: ProcessRecord): string {
  let text: string = record.state;
  if (record.state === 'finished' && record.exitStatus !== null)
    text = `${text} [${record.exitStatus}]`;
  const colour =
    record.state === 'finished'
      ? (record.exitStatus ?? 0) === 0
        ? 'green'
        : 'yellow'
      : record.state === 'excepted' || record.state === 'killed'
        ? 'red'
        : 'blue';
  const painted = paint(text, colour);
  return record.paused ? `${painted} ${paint('(paused)', 'yellow')}` : painted;
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function printOutcome(record: ProcessRecord): void {
  echo(`${record.type}<${record.pk}> ${stateText(record)}`);
  if (
    record.outputs !== null &&
    typeof record.outputs === 'object' &&
    !Array.isArray(record.outputs)
  ) {
    for (const [key, value] of Object.entries(record.outputs))
      echo(`  ${key}: ${formatValue(value)}`);
  } else if (record.outputs !== null) {
    echo(`  outputs: ${formatValue(record.outputs)}`);
  }
  if (record.exception) echo(paint(record.exception.split('\n')[0] ?? '', 'red'));
}

function printProcess(r: ProcessRecord): void {
  const rows: [string, string][] = [
    ['type', r.type],
    ['state', stateText(r)],
    ['pk', String(r.pk)],
    ['uuid', r.uuid],
    ['process status', r.processStatus ?? ''],
    [
      'exit status',
      r.exitStatus === null ? '' : `${r.exitStatus}${r.exitMessage ? ` (${r.exitMessage})` : ''}`,
    ],
    ['created', `${formatLocalTime(r.createdAt)} (${formatAge(r.createdAt)})`],
    ['started', r.startedAt ? formatLocalTime(r.startedAt) : ''],
    ['ended', r.finishedAt ? formatLocalTime(r.finishedAt) : ''],
    ['parent', r.parentPk === null ? '' : String(r.parentPk)],
    ['owner', r.owner ?? ''],
    ['attempts', String(r.attempts)],
    ['time limit', r.timeLimit === null ? '' : `${r.timeLimit} s`],
  ];
  echo(
    formatTable(
      ['Property', 'Value'],
      rows.filter(([, v]) => v !== ''),
    ),
  );
  printMapping('Inputs', r.inputs);
  printMapping('Outputs', r.outputs);
  if (r.exception) {
    echo(`\n${paint('Exception:', ['red', 'bold'])}`);
    echo(r.exception);
  }
}

function printMapping(title: string, value: unknown): void {
  if (value === null || value === undefined) return;
  echo(`\n${title}:`);
  if (typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.entries(value as Record<string, unknown>);
    if (entries.length === 0) echo('  (none)');
    for (const [k, v] of entries) echo(`  ${k}: ${formatValue(v)}`);
  } else {
    echo(`  ${formatValue(value)}`);
  }
}
