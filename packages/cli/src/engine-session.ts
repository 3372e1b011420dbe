import type { Profile } from '@aiida/config';

/** A process state, as in AiiDA. */
export type ProcessState = 'created' | 'waiting' | 'running' | 'finished' | 'excepted' | 'killed';

/** The fields of a process row that the commands show. */
export interface ProcessRecord {
  pk: number;
  uuid: string;
  type: string;
  state: ProcessState;
  paused: boolean;
  inputs: unknown;
  outputs: unknown;
  exitStatus: number | null;
  exitMessage: string | null;
  exception: string | null;
  processStatus: string | null;
  parentPk: number | null;
  owner: string | null;
  attempts: number;
  timeLimit: number | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

/** One line of a process's report log. */
export interface ProcessReport {
  pk: number;
  time: string;
  level: string;
  message: string;
}

/** The states a process never leaves. */
export const TERMINAL: readonly ProcessState[] = ['finished', 'excepted', 'killed'];
/** Every process state, in life order. */
export const ALL_STATES: readonly ProcessState[] = [
  'created',
  'waiting',
  'running',
  'finished',
  'excepted',
  'killed',
];

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
  listProcesses(filter: {
    states?: readonly ProcessState[];
    type?: string;
    limit?: number;
  }): Promise<ProcessRecord[]>;
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

/** Opens the engine of `profile` for the `process` commands. */
export async function openEngineSession(profile: Profile): Promise<EngineSession> {
  throw new Error(`the engine API is not available yet (profile ${profile.name})`);
}
