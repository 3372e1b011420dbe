import {
  ALL_STATES,
  type EngineSession,
  type ProcessRecord,
  type ProcessState,
  TERMINAL,
} from './engine-session.js';
import { CliError } from './errors.js';
import { formatDuration } from './format.js';
import { bar } from './progress.js';

/**
 * Counts of processes per state, and `failed`: those that ended but not well (excepted, killed,
 * or finished with a non-zero exit status).
 */
export type StateCounts = Record<ProcessState, number> & { failed: number };

/** How many of `records` are in each state, and how many ended but not well. */
export function countStates(records: readonly ProcessRecord[]): StateCounts {
  const counts: StateCounts = {
    created: 0,
    waiting: 0,
    running: 0,
    finished: 0,
    excepted: 0,
    killed: 0,
    failed: 0,
  };
  for (const record of records) {
    counts[record.state] += 1;
    if (TERMINAL.includes(record.state) && !finishedOk(record)) counts.failed += 1;
  }
  return counts;
}

/** True when the process ended well: `finished` with exit status 0 (or none). */
export function finishedOk(record: ProcessRecord): boolean {
  return record.state === 'finished' && (record.exitStatus ?? 0) === 0;
}

/** `37/50 done [###...] 12 running, 1 waiting, 0 failed` for a progress line. */
export function describeProgress(counts: StateCounts, total: number, elapsed: number): string {
  const done = TERMINAL.reduce((sum, s) => sum + counts[s], 0);
  const active = ALL_STATES.filter((s) => !TERMINAL.includes(s) && counts[s] > 0)
    .map((s) => `${counts[s]} ${s}`)
    .join(', ');
  return (
    `${done}/${total} done ${bar(total === 0 ? 1 : done / total)} ` +
    `${active === '' ? '' : `${active}, `}${counts.failed} failed, ${formatDuration(elapsed)}`
  );
}

/**
 * Polls the store until every process of `pks` is terminal, calling `onProgress` with the latest
 * rows on each poll. Fails with a `timeout` error naming what is still active after `timeout`
 * seconds (none: wait for ever).
 */
export async function waitForAll(
  session: EngineSession,
  pks: readonly number[],
  options: {
    timeout?: number;
    interval?: number;
    onProgress?: (records: ProcessRecord[]) => void;
    /** Stops the wait (with an `interrupted` error), e.g. on Ctrl+C. */
    signal?: AbortSignal;
    /** When a process counts as done. @default it is terminal */
    done?: (record: ProcessRecord) => boolean;
  } = {},
): Promise<ProcessRecord[]> {
  const deadline = options.timeout === undefined ? Infinity : Date.now() + options.timeout * 1000;
  const interval = (options.interval ?? 0.25) * 1000;
  const latest = new Map<number, ProcessRecord>();
  let pending = [...pks];
  for (;;) {
    // Done rows are not asked for again (terminal rows never change).
    for (let i = 0; i < pending.length; i += 500) {
      for (const record of await session.getProcesses(pending.slice(i, i + 500))) {
        latest.set(record.pk, record);
      }
    }
    const done = options.done ?? ((record: ProcessRecord) => TERMINAL.includes(record.state));
    pending = pending.filter((pk) => {
      const record = latest.get(pk);
      return record === undefined || !done(record);
    });
    const records = pks.map((pk) => latest.get(pk)).filter((r) => r !== undefined);
    options.onProgress?.(records);
    if (pending.length === 0) return records;
    if (options.signal?.aborted) {
      throw new CliError(
        'interrupted',
        `Interrupted while ${pending.length} processes were active.`,
      );
    }
    if (Date.now() > deadline) {
      const shown = pending.slice(0, 10).join(', ');
      throw new CliError(
        'timeout',
        `${pending.length} of ${pks.length} processes were still active after ${options.timeout} s (pk ${shown}${pending.length > 10 ? ', ...' : ''}).`,
        { hint: 'Is the daemon running (`aiida daemon status`)? Raise --timeout to wait longer.' },
      );
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}
