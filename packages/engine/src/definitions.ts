import { createHash } from 'node:crypto';
import type { ProcessState } from '@aiida/ipc';
import type { z } from 'zod';
import type { JsonObject, JsonValue } from './json.js';
import type { ReportLevel } from './process-store.js';

/** What every process body gets. */
export interface ProcessContext {
  readonly pk: number;
  readonly uuid: string;
  /** Registered type name. */
  readonly type: string;
  /**
   * Attempt number, 1 on the first run. Above 1, an earlier attempt may have started (and partly
   * done) the same work, because its owner lost its lease or was interrupted: a body with external
   * effects uses it to avoid repeating them.
   */
  readonly attempt: number;
  /** Lease generation this body runs under. */
  readonly epoch: number;
  /** Fires when the process is killed, its lease is lost, or its worker shuts down. */
  readonly signal: AbortSignal;
  /** Appends a line to the process's report log (stored; `aiida process report`). */
  report(message: string, level?: ReportLevel): Promise<void>;
  /**
   * Records the process group of an external command started by this body (or clears it with
   * `null`), so that a kill, or a later attempt after a lost owner, terminates the whole group
   * first. Fails with `lease_lost` if this body no longer holds the process.
   */
  recordProcessGroup(pgid: number | null): Promise<void>;
}

const EXIT_CODE_BRAND = Symbol.for('@aiida/engine.ExitCode');

/**
 * A non-zero exit status a body returns to finish "unsuccessfully but cleanly" (AiiDA's `ExitCode`):
 * the process ends `finished` with this status and message, and with `outputs` if given.
 */
export class ExitCode {
  readonly status: number;
  readonly message: string;
  readonly outputs: JsonObject | undefined;
  constructor(status: number, message: string, outputs?: JsonObject) {
    if (!Number.isInteger(status) || status < 0) {
      throw new TypeError(`exit status must be a non-negative integer, got ${status}`);
    }
    this.status = status;
    this.message = message;
    this.outputs = outputs;
    Object.defineProperty(this, EXIT_CODE_BRAND, { value: true });
  }
}

/** Shorthand for `new ExitCode(status, message, outputs)`. */
export function exitCode(status: number, message: string, outputs?: JsonObject): ExitCode {
  return new ExitCode(status, message, outputs);
}

/** True for an {@link ExitCode}, even from another copy of this package. */
export function isExitCode(value: unknown): value is ExitCode {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[EXIT_CODE_BRAND] === true
  );
}

/** A calculation: an async function from validated inputs to outputs (AiiDA's calcfunction). */
export interface CalculationDefinition<
  I extends z.ZodType = z.ZodType,
  O extends z.ZodType = z.ZodType,
> {
  readonly kind: 'calculation';
  readonly name: string;
  readonly description?: string;
  readonly inputs: I;
  readonly outputs: O;
  readonly run: (inputs: z.output<I>, ctx: ProcessContext) => Promise<z.input<O> | ExitCode>;
}

/** What a finished child looks like in its workflow's context. */
export interface ChildResult {
  pk: number;
  type: string;
  state: ProcessState;
  exitStatus: number | null;
  exitMessage: string | null;
  outputs: JsonValue | null;
  /** First line of the error, for an excepted child. */
  exception: string | null;
}

/** The checkpointed view of a workflow that conditions read. */
export interface WorkflowView<I = unknown> {
  /** Validated inputs. */
  readonly inputs: I;
  /** The JSON context (AiiDA's `self.ctx`): read and write it in steps; checkpointed after each. */
  readonly vars: JsonObject;
  /** Children submitted by earlier steps, by name, once they are terminal. */
  readonly children: Readonly<Record<string, ChildResult>>;
  /** Outputs recorded so far with {@link WorkflowContext.out}. */
  readonly outputs: Readonly<JsonObject>;
}

/** Options of {@link WorkflowContext.submit}. */
export interface ChildSubmitOptions {
  /** Name of the child in `ctx.children` once it ends. @default `<step>.<n>` */
  as?: string;
  /** Seconds from submission after which the child is killed. */
  timeLimit?: number;
}

/** What a workflow step gets. */
export interface WorkflowContext<I = unknown> extends ProcessContext, WorkflowView<I> {
  /**
   * Submits a child process. The workflow waits for every child of a step (parked, holding no
   * lease or slot) before its next step, and finds it in `ctx.children`. A step that runs again
   * (after a lost owner) gets back the children it already created, matched by order of `submit`
   * calls: submit deterministically.
   */
  submit(
    type: string,
    inputs: unknown,
    options?: ChildSubmitOptions,
  ): Promise<{ pk: number; uuid: string }>;
  /** Records an output (validated against the output schema when the workflow ends). */
  out(name: string, value: JsonValue): void;
}

/** A condition of `if_`/`while_`: a pure, synchronous function of the checkpointed view. */
// biome-ignore lint/suspicious/noExplicitAny: a condition is written against its workflow's own input type; the outline stores them side by side.
export type OutlineCondition = (view: WorkflowView<any>) => boolean;

/** One node of a workflow outline. Build them with {@link step}, {@link if_}, {@link while_}, {@link return_}. */
export type OutlineNode =
  | { readonly kind: 'step'; readonly name: string }
  | {
      readonly kind: 'if';
      readonly condition: OutlineCondition;
      readonly then: readonly OutlineNode[];
      readonly otherwise: readonly OutlineNode[];
    }
  | {
      readonly kind: 'while';
      readonly condition: OutlineCondition;
      readonly body: readonly OutlineNode[];
    }
  | { readonly kind: 'return'; readonly status: number; readonly message: string | null };

/** A step of the outline, by name of a function in `steps`. */
export function step(name: string): OutlineNode {
  return { kind: 'step', name };
}

/** Runs `then` when `condition` holds, else `otherwise`. */
export function if_(
  condition: OutlineCondition,
  then: readonly OutlineNode[],
  otherwise: readonly OutlineNode[] = [],
): OutlineNode {
  return { kind: 'if', condition, then, otherwise };
}

/** Runs `body` while `condition` holds. */
export function while_(condition: OutlineCondition, body: readonly OutlineNode[]): OutlineNode {
  return { kind: 'while', condition, body };
}

/** Ends the workflow here: `finished`, with `status` (0 by default) as its exit status. */
export function return_(status = 0, message: string | null = null): OutlineNode {
  return { kind: 'return', status, message };
}

/** A workflow step: may change `ctx.vars`, submit children, record outputs, or end with an {@link ExitCode}. */
export type WorkflowStep<I = unknown> = (
  ctx: WorkflowContext<I>,
  // biome-ignore lint/suspicious/noConfusingVoidType: steps that return nothing are the common case.
) => Promise<void | ExitCode> | void | ExitCode;

/** A workflow: named steps in an outline (AiiDA's WorkChain). */
export interface WorkflowDefinition<
  I extends z.ZodType = z.ZodType,
  O extends z.ZodType = z.ZodType,
> {
  readonly kind: 'workflow';
  readonly name: string;
  readonly description?: string;
  readonly inputs: I;
  readonly outputs: O;
  readonly outline: readonly OutlineNode[];
  readonly steps: Readonly<Record<string, WorkflowStep<z.output<I>>>>;
  /** The outline compiled to a flat program; its index is the checkpointed program counter. */
  readonly program: readonly Instruction[];
  /** Hash of the program's shape: a checkpoint of another shape is refused. */
  readonly fingerprint: string;
}

/** Any process definition. */
export type ProcessDefinition =
  // biome-ignore lint/suspicious/noExplicitAny: bodies take their own schema's types (contravariant), so only `any` admits every definition.
  | CalculationDefinition<any, any>
  // biome-ignore lint/suspicious/noExplicitAny: as above.
  | WorkflowDefinition<any, any>;

/** A compiled outline instruction. */
export type Instruction =
  | { op: 'step'; name: string }
  | { op: 'branch'; condition: OutlineCondition; ifFalse: number }
  | { op: 'jump'; to: number }
  | { op: 'return'; status: number; message: string | null };

const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/;

function checkName(name: string): void {
  if (!NAME_PATTERN.test(name)) {
    throw new TypeError(
      `invalid process type name '${name}': use letters, digits, '_', '.', ':' or '-' (e.g. 'core.arithmetic.add')`,
    );
  }
}

/** Defines a calculation (AiiDA's calcfunction). */
export function calculation<I extends z.ZodType, O extends z.ZodType>(definition: {
  name: string;
  description?: string;
  inputs: I;
  outputs: O;
  run: (inputs: z.output<I>, ctx: ProcessContext) => Promise<z.input<O> | ExitCode>;
}): CalculationDefinition<I, O> {
  checkName(definition.name);
  return Object.freeze({ kind: 'calculation', ...definition });
}

/**
 * Defines a workflow (AiiDA's WorkChain). Every `step(name)` of the outline must name a function
 * of `steps`; checked here, so a typo fails at definition time.
 */
export function workflow<I extends z.ZodType, O extends z.ZodType>(definition: {
  name: string;
  description?: string;
  inputs: I;
  outputs: O;
  outline: readonly OutlineNode[];
  steps: Record<string, WorkflowStep<z.output<I>>>;
}): WorkflowDefinition<I, O> {
  checkName(definition.name);
  const program = compileOutline(definition.outline);
  for (const instruction of program) {
    if (instruction.op === 'step' && typeof definition.steps[instruction.name] !== 'function') {
      throw new TypeError(
        `workflow '${definition.name}': the outline names step '${instruction.name}', but steps has ` +
          `no such function (steps: ${Object.keys(definition.steps).join(', ') || 'none'})`,
      );
    }
  }
  return Object.freeze({
    kind: 'workflow',
    ...definition,
    program,
    fingerprint: fingerprintOf(program),
  });
}

/** Compiles an outline to a flat program with jumps. */
function compileOutline(outline: readonly OutlineNode[]): Instruction[] {
  const program: Instruction[] = [];
  const emit = (nodes: readonly OutlineNode[]): void => {
    for (const node of nodes) {
      switch (node.kind) {
        case 'step':
          program.push({ op: 'step', name: node.name });
          break;
        case 'return':
          program.push({ op: 'return', status: node.status, message: node.message });
          break;
        case 'if': {
          const branch = { op: 'branch' as const, condition: node.condition, ifFalse: -1 };
          program.push(branch);
          emit(node.then);
          if (node.otherwise.length > 0) {
            const jump = { op: 'jump' as const, to: -1 };
            program.push(jump);
            branch.ifFalse = program.length;
            emit(node.otherwise);
            jump.to = program.length;
          } else {
            branch.ifFalse = program.length;
          }
          break;
        }
        case 'while': {
          const start = program.length;
          const branch = { op: 'branch' as const, condition: node.condition, ifFalse: -1 };
          program.push(branch);
          emit(node.body);
          program.push({ op: 'jump', to: start });
          branch.ifFalse = program.length;
          break;
        }
      }
    }
  };
  emit(outline);
  return program;
}

function fingerprintOf(program: readonly Instruction[]): string {
  const shape = program.map((i) => (i.op === 'branch' ? { op: i.op, ifFalse: i.ifFalse } : i));
  return createHash('sha256').update(JSON.stringify(shape)).digest('hex').slice(0, 16);
}
