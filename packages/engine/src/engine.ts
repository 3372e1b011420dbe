import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import {
  PROCESS_STATES,
  PROTOCOL_VERSION,
  type ProcessState,
  type RpcRequest,
  TERMINAL_STATES,
} from '@aiida/ipc';
import type { Clock } from './clock.js';
import { describeError, EngineError, EngineErrorCodes } from './errors.js';
import { ProcessExecutor, type StateChange } from './executor.js';
import type { JsonValue } from './json.js';
import { type EngineLogger, stderrLogger } from './logger.js';
import type { ControlChannel, TaskDispatcher } from './ports.js';
import { killProcessGroup } from './process-group.js';
import type {
  ActivityBucket,
  ControlRequestOutcome,
  DeleteSelection,
  NewProcess,
  ProcessDurations,
  ProcessFilter,
  ProcessPage,
  ProcessQuery,
  ProcessRecord,
  ProcessReport,
  ProcessStore,
  ProcessSummary,
  TerminalEffects,
} from './process-store.js';
import type { ProcessRegistry } from './registry.js';
import { checkInputSize, DEFAULT_MAX_INPUT_BYTES, validateJson } from './validation.js';

/** Options of {@link Engine}. Durations in seconds. */
export interface EngineOptions {
  store: ProcessStore;
  registry: ProcessRegistry;
  /** Publishes `continue` tasks (a `RabbitBroker`). Without it, submitted rows wait for the reconciler. */
  dispatcher?: TaskDispatcher;
  /** RPC fast path for control (a `RabbitBroker`). Without it, owners find intents on renewal. */
  control?: ControlChannel;
  /** Lease of processes run by `run()`. @default 10 */
  leaseTimeout?: number;
  /** How often `run()` renews its leases. @default 1 */
  heartbeatInterval?: number;
  /** `engine.max_attempts`. @default 5 */
  maxAttempts?: number;
  /**
   * `engine.max_input_bytes`: largest inputs (as JSON) `submit` and `run` accept; a shell job's
   * stdin is one of its inputs. @default 4194304
   */
  maxInputBytes?: number;
  /** Grace of a forced kill in `run()`. @default 3 */
  killGrace?: number;
  /** How long a control RPC may take. @default 2 */
  rpcTimeout?: number;
  /** How long `submit` waits for the broker's confirm before leaving the row to the reconciler. @default 10 */
  dispatchTimeout?: number;
  logger?: EngineLogger;
  clock?: Clock;
  /** Closed by {@link Engine.close} after the store (e.g. the broker `openEngine` opened). */
  ownedResources?: ReadonlyArray<{ close(): Promise<void> }>;
}

/** Options of {@link Engine.submit} and {@link Engine.run}. */
export interface SubmitOptions {
  /** Seconds from submission after which the process is killed with that reason. */
  timeLimit?: number;
}

/** One process of {@link Engine.submitMany}. */
export interface SubmitItem extends SubmitOptions {
  type: string;
  inputs: unknown;
}

/** Result of a control request on one process. */
export interface ControlResult {
  pk: number;
  /**
   * `applied`: done in the store (no live owner). `requested`: written as an intent and sent to the
   * live owner, which applies it (pause at the next step boundary, kill at once).
   * `unchanged`: nothing to do. `terminal` / `not_found`: refused.
   */
  outcome: 'applied' | 'requested' | 'unchanged' | 'terminal' | 'not_found';
  /** The terminal state, for `terminal`. */
  state?: ProcessState;
  message: string;
}

/** Options of {@link Engine.killProcess}. */
export interface KillOptions {
  /** Reason, kept in the process status. @default 'killed by request' */
  message?: string;
  /** Make the kill final after a short grace, whatever the body does. @default false */
  force?: boolean;
}

/** Newest rows a state watcher reads per poll, for processes created and ended between polls. */
const NEW_ROWS_PER_POLL = 1000;

/** The states of a process that can still change. */
const ACTIVE_STATES: readonly ProcessState[] = PROCESS_STATES.filter(
  (state) => !TERMINAL_STATES.includes(state),
);

function isTerminal(state: ProcessState): boolean {
  return TERMINAL_STATES.includes(state);
}

function withTimeout<T>(promise: Promise<T>, seconds: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new EngineError(EngineErrorCodes.timeout, `${what} took longer than ${seconds} s`)),
      seconds * 1000,
    );
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The words of control outcomes: `process 23 paused`, not `pauseed`. */
const PAST_TENSE = { kill: 'killed', pause: 'paused', play: 'played', status: 'queried' } as const;

/**
 * The public face of the engine for users and the CLI: `run`, `submit`, queries and control of
 * processes in one profile's store. Workers use {@link ProcessExecutor} instead.
 */
export class Engine {
  readonly store: ProcessStore;
  readonly registry: ProcessRegistry;
  private readonly dispatcher: TaskDispatcher | undefined;
  private readonly control: ControlChannel | undefined;
  private readonly leaseTimeout: number;
  private readonly heartbeatInterval: number;
  private readonly maxAttempts: number;
  private readonly maxInputBytes: number;
  private readonly killGrace: number;
  private readonly rpcTimeout: number;
  private readonly dispatchTimeout: number;
  private readonly logger: EngineLogger;
  private readonly clock: Clock | undefined;
  private readonly ownedResources: ReadonlyArray<{ close(): Promise<void> }>;
  private runner: ProcessExecutor | undefined;
  private running = 0;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.registry = options.registry;
    this.dispatcher = options.dispatcher;
    this.control = options.control;
    this.leaseTimeout = options.leaseTimeout ?? 10;
    this.heartbeatInterval = options.heartbeatInterval ?? 1;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.maxInputBytes = options.maxInputBytes ?? DEFAULT_MAX_INPUT_BYTES;
    this.killGrace = options.killGrace ?? 3;
    this.rpcTimeout = options.rpcTimeout ?? 2;
    this.dispatchTimeout = options.dispatchTimeout ?? 10;
    this.logger = options.logger ?? stderrLogger;
    this.clock = options.clock;
    this.ownedResources = options.ownedResources ?? [];
  }

  /** Plugins that failed to load (their processes can't be submitted here). */
  get pluginErrors() {
    return this.registry.pluginErrors;
  }

  private validate(type: string, inputs: unknown, options: SubmitOptions): NewProcess {
    const definition = this.registry.require(type);
    const json = validateJson(definition.inputs, inputs, { kind: 'inputs', type });
    checkInputSize(type, json, this.maxInputBytes);
    const { timeLimit } = options;
    if (
      timeLimit !== undefined &&
      !(typeof timeLimit === 'number' && timeLimit > 0 && Number.isFinite(timeLimit))
    ) {
      throw new EngineError(
        EngineErrorCodes.inputsInvalid,
        `invalid options for ${type}: timeLimit must be a positive number of seconds, got ${String(timeLimit)}`,
        {
          details: { type, issues: [{ path: 'timeLimit', message: 'must be a positive number' }] },
        },
      );
    }
    return { type, inputs: json, timeLimit: timeLimit ?? null };
  }

  // --- run ------------------------------------------------------------------------------------

  private getRunner(): ProcessExecutor {
    this.runner ??= new ProcessExecutor({
      store: this.store,
      registry: this.registry,
      ownerId: `run:${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      dispatcher: this.dispatcher,
      control: this.control,
      leaseTimeout: this.leaseTimeout,
      maxAttempts: this.maxAttempts,
      maxInputBytes: this.maxInputBytes,
      killGrace: this.killGrace,
      rpcTimeout: this.rpcTimeout,
      mode: 'local',
      logger: this.logger,
      clock: this.clock,
    });
    return this.runner;
  }

  /**
   * Runs a process in the calling process and returns its final row and outputs; no daemon or
   * broker needed. The caller owns the lease and renews it, so no worker takes the process over
   * while the caller lives; children of a workflow run here too.
   */
  async runGetProcess(
    type: string,
    inputs: unknown,
    options: SubmitOptions = {},
  ): Promise<{ outputs: JsonValue | null; process: ProcessRecord }> {
    const process = this.validate(type, inputs, options);
    const runner = this.getRunner();
    const { record, lease } = await this.store.createClaimedProcess(
      process,
      runner.ownerId,
      this.leaseTimeout,
    );
    if (this.running++ === 0) runner.startHeartbeat(this.heartbeatInterval);
    try {
      await runner.runClaimed(lease, record);
    } finally {
      if (--this.running === 0) runner.stopHeartbeat();
    }
    const final = await this.getProcess(record.pk);
    return { outputs: final.outputs, process: final };
  }

  /**
   * Runs a process in the calling process (see {@link Engine.runGetProcess}) and returns its
   * outputs. Throws `EngineError('process_failed')` when it ends `excepted` or `killed` (the
   * error's `details` carry pk and state; the row keeps the exception), and `inputs_invalid` /
   * `unknown_process_type` before storing anything.
   */
  async run<T = Record<string, JsonValue>>(
    type: string,
    inputs: unknown,
    options: SubmitOptions = {},
  ): Promise<T> {
    const { process } = await this.runGetProcess(type, inputs, options);
    if (process.state !== 'finished') {
      const why =
        process.state === 'excepted'
          ? (process.exception?.split('\n')[0] ?? 'no exception recorded')
          : (process.processStatus ?? process.state);
      throw new EngineError(
        EngineErrorCodes.processFailed,
        `process ${process.pk} (${type}) ended ${process.state}${process.state === 'excepted' || process.state === 'killed' ? `: ${why}` : ''}`,
        { details: { pk: process.pk, state: process.state } },
      );
    }
    return (process.outputs ?? {}) as T;
  }

  // --- submit ---------------------------------------------------------------------------------

  /**
   * Validates the inputs, commits the process (state `created`), then publishes its task and, on
   * the broker's confirm, records `dispatched_at`. Bad inputs throw `inputs_invalid` naming the
   * input, an unknown type `unknown_process_type`; nothing is stored then. A broker that is down
   * doesn't fail the submit: the reconciler dispatches the row later.
   */
  async submit(
    type: string,
    inputs: unknown,
    options: SubmitOptions = {},
  ): Promise<{ pk: number; uuid: string }> {
    const [result] = await this.submitMany([{ type, inputs, ...options }]);
    return result!;
  }

  /**
   * Submits several processes: all are validated first (one bad item stores nothing), committed in
   * one transaction, then published with pipelined confirms.
   */
  async submitMany(items: readonly SubmitItem[]): Promise<{ pk: number; uuid: string }[]> {
    const processes = items.map((item, index) => {
      try {
        return this.validate(item.type, item.inputs, item);
      } catch (error) {
        if (items.length > 1 && error instanceof EngineError) {
          throw new EngineError(error.code, `item ${index}: ${error.message}`, {
            cause: error,
            details: { ...error.details, index },
          });
        }
        throw error;
      }
    });
    if (processes.length === 0) return [];
    const records = await this.store.createProcesses(processes);
    await this.dispatchNew(records.map((r) => r.pk));
    return records.map((r) => ({ pk: r.pk, uuid: r.uuid }));
  }

  private async dispatchNew(pks: number[]): Promise<void> {
    if (!this.dispatcher || pks.length === 0) return;
    try {
      const publish =
        pks.length === 1
          ? this.dispatcher.publishContinue(pks[0]!)
          : this.dispatcher.publishContinueMany(pks);
      await withTimeout(publish, this.dispatchTimeout, 'publishing the task');
      await this.store.markDispatched(pks);
    } catch (error) {
      this.logger.warn(
        `submitted process${pks.length === 1 ? '' : 'es'} ${pks.length <= 10 ? pks.join(', ') : `${pks[0]}..${pks[pks.length - 1]}`} ` +
          `not dispatched yet (${describeError(error).message}); the daemon's reconciler will dispatch ${pks.length === 1 ? 'it' : 'them'}`,
      );
    }
  }

  // --- queries --------------------------------------------------------------------------------

  /** The process `pk`; throws `process_not_found`. */
  async getProcess(pk: number): Promise<ProcessRecord> {
    const record = await this.store.getProcess(pk);
    if (!record) {
      throw new EngineError(
        EngineErrorCodes.processNotFound,
        `no process with pk ${pk} in ${this.store.location}`,
        {
          details: { pk },
        },
      );
    }
    return record;
  }

  /** Processes matching `filter`, newest first by default. */
  listProcesses(filter: ProcessFilter = {}): Promise<ProcessRecord[]> {
    return this.store.listProcesses(filter);
  }

  /** A filtered page of processes, sorted and paged in the store, with the number of matches. */
  queryProcesses(query: ProcessQuery = {}): Promise<ProcessPage> {
    return this.store.queryProcesses(query);
  }

  /** Counts by state and type, claims and owner losses over the whole store. */
  summarizeProcesses(): Promise<ProcessSummary> {
    return this.store.summarizeProcesses();
  }

  /** Histograms (seconds) of the time from submission to start and from start to end. */
  processDurations(bounds: readonly number[]): Promise<ProcessDurations> {
    return this.store.processDurations(bounds);
  }

  /** A cheap opaque value that changes whenever a process row may have changed (for polling). */
  changeToken(): Promise<string> {
    return this.store.changeToken();
  }

  /** Processes that ended per `interval` seconds since `since` (ISO 8601), oldest first. */
  processActivity(options: { since: string; interval: number }): Promise<ActivityBucket[]> {
    return this.store.processActivity(options);
  }

  /** The report log of a process. */
  getReports(pk: number): Promise<ProcessReport[]> {
    return this.store.getReports(pk);
  }

  /**
   * Polls the store until `pk` is terminal and returns its row. Throws `timeout` after
   * `timeout` seconds (default: wait forever), `process_not_found` if it doesn't exist.
   */
  async waitForProcess(
    pk: number,
    options: { timeout?: number; interval?: number } = {},
  ): Promise<ProcessRecord> {
    const interval = (options.interval ?? 0.1) * 1000;
    const deadline =
      options.timeout === undefined
        ? Number.POSITIVE_INFINITY
        : Date.now() + options.timeout * 1000;
    for (;;) {
      const record = await this.getProcess(pk);
      if (isTerminal(record.state)) return record;
      if (Date.now() >= deadline) {
        throw new EngineError(
          EngineErrorCodes.timeout,
          `process ${pk} is still ${record.state}${record.paused ? ' (paused)' : ''} after ${options.timeout} s`,
          { details: { pk, state: record.state } },
        );
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(interval, Math.max(0, deadline - Date.now()))),
      );
    }
  }

  /**
   * Calls `handler` with each state change of a process (of `pk` only, when given), as the store
   * shows it: a poll of the store's change token every `interval` seconds, and a read of the
   * active rows when it moved. Works with every transport (with RabbitMQ, the workers'
   * `state_changed` broadcasts are a faster alternative); changes between two polls merge into
   * one (`created` → `finished` for a quick process; of more than 1,000 processes created between
   * two polls, the oldest that also ended then are missed). Resolves once the first snapshot is taken;
   * `close()` stops it. A handler that throws is not called again for that change.
   */
  async watchStateChanges(
    handler: (change: StateChange) => void,
    options: { pk?: number; interval?: number } = {},
  ): Promise<{ close(): Promise<void> }> {
    const interval = Math.max(0.01, options.interval ?? 0.2) * 1000;
    const read = async (): Promise<ProcessRecord[]> =>
      options.pk === undefined
        ? this.store.listProcesses({ states: ACTIVE_STATES })
        : this.store.getProcesses([options.pk]);
    let token = await this.store.changeToken();
    const first = await read();
    let known = new Map(first.map((r) => [r.pk, r.state] as const));
    // Newest pk seen: a process created and ended between two polls is found among the newer.
    let newest =
      options.pk === undefined
        ? ((await this.store.listProcesses({ limit: 1 }))[0]?.pk ?? 0)
        : Number.POSITIVE_INFINITY;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;
    let ticking: Promise<void> | undefined;
    const tick = async () => {
      const now = await this.store.changeToken();
      if (now === token) return;
      token = now;
      const seen = new Map((await read()).map((r) => [r.pk, r.state] as const));
      if (options.pk === undefined) {
        const recent = await this.store.listProcesses({ limit: NEW_ROWS_PER_POLL });
        for (const r of recent) if (r.pk > newest && !seen.has(r.pk)) seen.set(r.pk, r.state);
        newest = Math.max(newest, recent[0]?.pk ?? 0);
      }
      const gone = [...known.keys()].filter((pk) => !seen.has(pk));
      if (gone.length > 0) {
        for (const r of await this.store.getProcesses(gone)) seen.set(r.pk, r.state);
      }
      for (const [pk, state] of seen) {
        const before = known.get(pk) ?? 'created';
        if (before !== state) {
          try {
            handler({ pk, from: before, to: state });
          } catch (error) {
            this.logger.warn(`state-change handler failed: ${describeError(error).message}`);
          }
        }
      }
      known = new Map([...seen].filter(([, state]) => !isTerminal(state)));
    };
    const schedule = () => {
      if (closed) return;
      timer = setTimeout(() => {
        ticking = tick()
          .catch((error: unknown) => {
            this.logger.debug(`watching state changes: ${describeError(error).message}`);
          })
          .finally(() => {
            ticking = undefined;
            schedule();
          });
      }, interval);
    };
    schedule();
    return {
      close: async () => {
        closed = true;
        if (timer) clearTimeout(timer);
        await ticking;
      },
    };
  }

  /**
   * Deletes terminal processes with their descendants and logs: by pks, or those ended more than
   * `olderThan` seconds ago (in `states`). With pks, any active one (or an active parent/child)
   * refuses the whole call with `process_active` and deletes nothing. Returns the deleted pks.
   */
  deleteProcesses(selection: DeleteSelection): Promise<number[]> {
    return this.store.deleteProcesses(selection);
  }

  // --- control --------------------------------------------------------------------------------

  /** Pauses a process (see {@link Engine.pauseProcesses}); throws for a missing or terminal one. */
  async pauseProcess(pk: number, options: { message?: string } = {}): Promise<ControlResult> {
    return this.single(await this.pauseProcesses([pk], options));
  }

  /**
   * Pauses processes: the row is flagged `paused` at once, so no worker starts or continues it. A
   * running one stops at its next step boundary and releases its lease (a calculation runs to its
   * end).
   */
  async pauseProcesses(
    pks: readonly number[],
    options: { message?: string } = {},
  ): Promise<ControlResult[]> {
    const results: ControlResult[] = [];
    for (const pk of pks) {
      const outcome = await this.store.requestPause(pk, options.message ?? null);
      results.push(
        await this.carryOut(outcome, {
          v: PROTOCOL_VERSION,
          intent: 'pause',
          pk,
          message: options.message,
        }),
      );
    }
    return results;
  }

  /** Plays a paused process (see {@link Engine.playProcesses}); throws for a missing or terminal one. */
  async playProcess(pk: number): Promise<ControlResult> {
    return this.single(await this.playProcesses([pk]));
  }

  /** Clears the paused flag; an unowned runnable process is dispatched again. */
  async playProcesses(pks: readonly number[]): Promise<ControlResult[]> {
    const results: ControlResult[] = [];
    for (const pk of pks) {
      const outcome = await this.store.requestPlay(pk);
      results.push(await this.carryOut(outcome, { v: PROTOCOL_VERSION, intent: 'play', pk }));
    }
    return results;
  }

  /** Kills a process (see {@link Engine.killProcesses}); throws for a missing or terminal one. */
  async killProcess(pk: number, options: KillOptions = {}): Promise<ControlResult> {
    return this.single(await this.killProcesses([pk], options));
  }

  /**
   * Kills processes. One that no live worker holds becomes `killed` in the store at once (and its
   * recorded process group is terminated). One that is held gets a kill intent and an RPC: its
   * owner aborts the body and commits `killed` (with `force`, after a short grace whatever the
   * body does). A workflow's live children are killed with it.
   */
  async killProcesses(pks: readonly number[], options: KillOptions = {}): Promise<ControlResult[]> {
    const results: ControlResult[] = [];
    const message = options.message ?? 'killed by request';
    for (const pk of pks) {
      const outcome = await this.store.requestKill(pk, message, options.force ?? false);
      results.push(
        await this.carryOut(outcome, {
          v: PROTOCOL_VERSION,
          intent: 'kill',
          pk,
          message,
          force: options.force ?? false,
        }),
      );
    }
    return results;
  }

  private single(results: ControlResult[]): ControlResult {
    const result = results[0]!;
    if (result.outcome === 'not_found') {
      throw new EngineError(EngineErrorCodes.processNotFound, result.message, {
        details: { pk: result.pk },
      });
    }
    if (result.outcome === 'terminal') {
      throw new EngineError(EngineErrorCodes.processTerminal, result.message, {
        details: { pk: result.pk, state: result.state },
      });
    }
    return result;
  }

  private async carryOut(
    outcome: ControlRequestOutcome,
    request: RpcRequest,
  ): Promise<ControlResult> {
    const { pk } = outcome;
    const verb = request.intent;
    switch (outcome.status) {
      case 'not_found':
        return { pk, outcome: 'not_found', message: `no process with pk ${pk}` };
      case 'terminal':
        return {
          pk,
          outcome: 'terminal',
          state: outcome.state,
          message: `process ${pk} is already ${outcome.state}; a terminal process can't be ${PAST_TENSE[verb]}`,
        };
      case 'unchanged':
        return {
          pk,
          outcome: 'unchanged',
          message:
            verb === 'pause' ? `process ${pk} is already paused` : `process ${pk} is not paused`,
        };
      case 'requested':
        if (this.runner && outcome.owner === this.runner.ownerId) {
          // Held by this engine's own run(): apply without the broker.
          if (request.intent === 'kill')
            this.runner.kill(pk, { message: request.message, force: request.force });
          else if (request.intent === 'pause') this.runner.pause(pk);
          else if (request.intent === 'play') this.runner.play(pk);
        } else {
          await this.sendRpc(pk, request);
        }
        return {
          pk,
          outcome: 'requested',
          message: `${verb} of process ${pk} requested from its owner ${outcome.owner}`,
        };
      case 'applied':
        if (outcome.effects) await this.carryOutEffects(outcome.effects);
        if (outcome.dispatch) await this.dispatchNew([pk]);
        return {
          pk,
          outcome: 'applied',
          message: `process ${pk} ${PAST_TENSE[verb]}`,
        };
    }
  }

  private async sendRpc(pk: number, request: RpcRequest): Promise<void> {
    if (!this.control) return;
    try {
      await withTimeout(
        this.control.callRpc(pk, request, { timeout: this.rpcTimeout }),
        this.rpcTimeout + 1,
        'control RPC',
      );
    } catch (error) {
      // Fast path only: the owner polls intents on every lease renewal.
      this.logger.debug?.(
        `RPC ${request.intent} to process ${pk} failed: ${describeError(error).message}`,
        { pk },
      );
    }
  }

  private async carryOutEffects(effects: TerminalEffects): Promise<void> {
    await Promise.all(effects.orphanedGroups.map((g) => killProcessGroup(g).catch(() => false)));
    if (effects.parentsToDispatch.length > 0) await this.dispatchNew(effects.parentsToDispatch);
    await Promise.all(
      effects.killRequested.map(({ pk, message }) =>
        this.sendRpc(pk, {
          v: PROTOCOL_VERSION,
          intent: 'kill',
          pk,
          message,
          force: false,
        }),
      ),
    );
  }

  /** Stops `run()`'s heartbeat and closes the store. */
  async close(): Promise<void> {
    this.runner?.stopHeartbeat();
    await this.store.close();
    for (const resource of this.ownedResources) await resource.close();
  }
}
