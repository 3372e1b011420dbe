import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { calculation, exitCode, type ProcessDefinition, step, workflow } from './definitions.js';
import { shellJob } from './shell-job.js';

/**
 * `core.arithmetic.add`: `sum = x + y` (AiiDA's ArithmeticAddCalculation). The optional `sleep`
 * (seconds) makes it last that long first, honouring its abort signal.
 */
export const arithmeticAdd = calculation({
  name: 'core.arithmetic.add',
  description: 'Adds two numbers.',
  inputs: z.object({
    x: z.number(),
    y: z.number(),
    sleep: z.number().nonnegative().optional(),
  }),
  outputs: z.object({ sum: z.number() }),
  run: async ({ x, y, sleep: seconds }, ctx) => {
    if (seconds) await sleep(seconds * 1000, undefined, { signal: ctx.signal });
    return { sum: x + y };
  },
});

/** Exit status of `core.arithmetic.multiply_add` when its add child did not finish successfully. */
export const MULTIPLY_ADD_CHILD_FAILED = 400;

/**
 * `core.arithmetic.multiply_add`: `result = x * y + z`. Multiplies in its first step, then submits
 * a `core.arithmetic.add` child with the product and `z`, checks it, and returns its sum (AiiDA's
 * MultiplyAddWorkChain).
 */
export const arithmeticMultiplyAdd = workflow({
  name: 'core.arithmetic.multiply_add',
  description: 'Computes x * y + z: multiplies, then submits an add child.',
  inputs: z.object({ x: z.number(), y: z.number(), z: z.number() }),
  outputs: z.object({ result: z.number() }),
  outline: [step('multiply'), step('add'), step('validate_result'), step('result')],
  steps: {
    multiply: (ctx) => {
      ctx.vars.product = ctx.inputs.x * ctx.inputs.y;
    },
    add: async (ctx) => {
      await ctx.submit(
        'core.arithmetic.add',
        { x: ctx.vars.product, y: ctx.inputs.z },
        { as: 'addition' },
      );
    },
    validate_result: (ctx) => {
      const child = ctx.children.addition;
      if (child?.state !== 'finished' || child.exitStatus !== 0) {
        return exitCode(
          MULTIPLY_ADD_CHILD_FAILED,
          `the add child ${child?.pk ?? '?'} did not finish successfully (state ${child?.state ?? 'unknown'})`,
        );
      }
    },
    result: (ctx) => {
      const outputs = ctx.children.addition?.outputs as { sum: number };
      ctx.out('result', outputs.sum);
    },
  },
});

/** The process types every registry starts with. */
export const BUILTIN_DEFINITIONS: readonly ProcessDefinition[] = [
  arithmeticAdd,
  arithmeticMultiplyAdd,
  shellJob,
];
