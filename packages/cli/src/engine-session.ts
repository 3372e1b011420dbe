import type { Profile } from '@aiida/config';
import type {
  Engine,
  EngineLogger,
  ProcessFilter,
  ProcessRecord,
  ProcessReport,
  ProcessState,
} from '@aiida/engine';
import { PROCESS_STATES, TERMINAL_STATES } from '@aiida/ipc';
import { echoWarning } from './output.js';

/** The engine's process types, as the commands use them. */
export type { ProcessFilter, ProcessRecord, ProcessReport, ProcessState };

/** The states a process never leaves. */
export const TERMINAL = TERMINAL_STATES;
/** Every process state, in life order. */
export const ALL_STATES = PROCESS_STATES;

/** Outcome of a pause, play or kill request on one process. */
export interface ControlOutcome {
  pk: number;
  /** `applied` (done in the store), `requested` (sent to its worker), or why nothing happened. */
  status: 'applied' | 'requested' | 'unchanged' | 'terminal' | 'not_found';
  state?: ProcessState;
}

/**
 * What the `process` commands need from the engine, for one profile. It keeps the command code
 * independent of how the engine spells its API, and owns the engine's resources (store handle,
 * broker connection) until {@link EngineSession.close}.
 */
export interface EngineSession {
  /** Validates and submits one process per inputs object; resolves with their pks in order. */
  submit(
    type: string,
    inputs: Record<string, unknown>[],
    options?: { timeLimit?: number },
  ): Promise<{ pk: number; uuid: string }[]>;
  /** Runs a process in this process (no daemon) and resolves with its final row. */
  run(type: string, inputs: Record<string, unknown>): Promise<ProcessRecord>;
  getProcess(pk: number): Promise<ProcessRecord | undefined>;
  getProcesses(pks: number[]): Promise<ProcessRecord[]>;
  /** Filtered, sorted and limited in the store query. */
  listProcesses(filter: ProcessFilter): Promise<ProcessRecord[]>;
  getReports(pk: number): Promise<ProcessReport[]>;
  pause(pks: number[], options: { message?: string; timeout?: number }): Promise<ControlOutcome[]>;
  play(pks: number[], options: { timeout?: number }): Promise<ControlOutcome[]>;
  kill(
    pks: number[],
    options: { message?: string; force?: boolean; timeout?: number },
  ): Promise<ControlOutcome[]>;
  /** Deletes terminal processes; refuses active ones (`process_active`). Resolves with the pks. */
  deleteProcesses(
    selection: { pks: number[] } | { olderThan: number; states?: readonly ProcessState[] },
  ): Promise<number[]>;
  close(): Promise<void>;
}

/** Engine warnings as the command line's warning lines; the rest is for the daemon's logs. */
const cliLogger: EngineLogger = {
  debug: () => {},
  info: () => {},
  warn: (message) => echoWarning(message),
  error: (message) => echoWarning(message),
};

const OUTCOME_STATUS = {
  applied: 'applied',
  requested: 'requested',
  unchanged: 'unchanged',
  terminal: 'terminal',
  not_found: 'not_found',
} as const;

/** Opens the engine of `profile` (its store, plugins and its lazily connected broker). */
export async function openEngineSession(profile: Profile): Promise<EngineSession> {
  // The engine's default broker connects on first use only: listing or showing processes needs
  // none, and a broker that is down does not fail a submit (the reconciler dispatches it later).
  // Imported here, not at the top: the engine loads the store drivers and the broker client,
  // which commands that don't open a session (`daemon status`, `config`, ...) must not pay for.
  const { openEngine } = await import('@aiida/engine');
  const engine = await openEngine(profile, { logger: cliLogger });
  const toOutcomes = (results: Awaited<ReturnType<Engine['killProcesses']>>): ControlOutcome[] =>
    results.map((r) => ({ pk: r.pk, status: OUTCOME_STATUS[r.outcome], state: r.state }));
  return {
    submit: (type, inputsList, options = {}) =>
      engine.submitMany(inputsList.map((inputs) => ({ type, inputs, ...options }))),
    run: async (type, inputs) => (await engine.runGetProcess(type, inputs)).process,
    getProcess: (pk) => engine.store.getProcess(pk),
    getProcesses: (pks) => engine.store.getProcesses(pks),
    listProcesses: (filter) => engine.listProcesses(filter),
    getReports: (pk) => engine.getReports(pk),
    pause: async (pks, options) =>
      toOutcomes(await engine.pauseProcesses(pks, { message: options.message })),
    play: async (pks) => toOutcomes(await engine.playProcesses(pks)),
    kill: async (pks, options) =>
      toOutcomes(
        await engine.killProcesses(pks, { message: options.message, force: options.force }),
      ),
    deleteProcesses: (selection) => engine.deleteProcesses(selection),
    close: () => engine.close(),
  };
}
