import { spawn } from 'node:child_process';
import { z } from 'zod';
import { calculation, exitCode } from './definitions.js';
import {
  describeProcessGroup,
  groupAlive,
  killProcessGroup,
  PROCESS_MARKER_ENV,
} from './process-group.js';

/** Bytes of stdout or stderr kept; the rest is dropped and the output marked truncated. */
export const SHELL_OUTPUT_LIMIT = 10 * 1024 * 1024;

/** Exit status of a shell job whose command exited non-zero or was ended by a signal. */
export const SHELL_NONZERO_EXIT_STATUS = 400;

const shellInputs = z.object({
  /** Program to run (looked up in PATH); not run through a shell. */
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  /** Added to (and overriding) the environment of the worker. */
  env: z.record(z.string(), z.string()).default({}),
  /** Written to the command's standard input, which is then closed. */
  stdin: z.string().optional(),
  /** Working directory. @default the worker's */
  cwd: z.string().optional(),
});

const shellOutputs = z.object({
  stdout: z.string(),
  stderr: z.string(),
  /** Exit code, or null when a signal ended the command. */
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  truncated: z.boolean(),
});

class Capture {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  push(chunk: Buffer): void {
    if (this.size >= SHELL_OUTPUT_LIMIT) {
      this.truncated = true;
      return;
    }
    const room = SHELL_OUTPUT_LIMIT - this.size;
    const piece = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (piece.length < chunk.length) this.truncated = true;
    this.chunks.push(piece);
    this.size += piece.length;
  }
  text(): string {
    return Buffer.concat(this.chunks, this.size).toString('utf8');
  }
}

/**
 * `core.shell`: runs an external command in its own process group (spawned `detached`), records
 * the group in the store, captures stdout/stderr/exit code. A kill or abort terminates the whole
 * group (SIGTERM, SIGKILL after 2 s); so do leftovers of the group once the command exited. A
 * non-zero exit ends the job `finished` with exit status 400 and the outputs.
 */
export const shellJob = calculation({
  name: 'core.shell',
  description: 'Runs an external command; captures stdout, stderr and exit code.',
  inputs: shellInputs,
  outputs: shellOutputs,
  run: async (inputs, ctx) => {
    ctx.signal.throwIfAborted();
    const child = spawn(inputs.command, inputs.args, {
      cwd: inputs.cwd,
      env: { ...process.env, ...inputs.env, [PROCESS_MARKER_ENV]: ctx.uuid },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const stdout = new Capture();
    const stderr = new Capture();
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.stdin.on('error', () => {
      // The command may exit without reading its input (EPIPE): not an error of the job.
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (code, signal) => resolve({ code, signal }));
      },
    );
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    if (child.pid === undefined) {
      await exited; // rejects with the spawn error (e.g. ENOENT)
      throw new Error(`could not start '${inputs.command}'`);
    }
    const group = describeProcessGroup(child.pid, ctx.uuid);
    const terminate = () => killProcessGroup(group, { trusted: true });
    let terminating: Promise<boolean> | undefined;
    const onAbort = () => {
      terminating ??= terminate();
    };
    try {
      await ctx.recordProcessGroup(child.pid);
    } catch (error) {
      await terminate();
      throw error;
    }
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    if (ctx.signal.aborted) onAbort();
    if (inputs.stdin !== undefined) child.stdin.end(inputs.stdin);
    else child.stdin.end();
    let result: { code: number | null; signal: NodeJS.Signals | null };
    try {
      result = await exited;
      // Leftovers of the group (background children) go with the command.
      if (groupAlive(group.pgid)) await (terminating ?? terminate());
      await terminating;
      await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
      child.stdout.destroy();
      child.stderr.destroy();
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
    await ctx.recordProcessGroup(null).catch(() => {});
    if (ctx.signal.aborted) throw ctx.signal.reason;
    const outputs = {
      stdout: stdout.text(),
      stderr: stderr.text(),
      exitCode: result.code,
      signal: result.signal,
      truncated: stdout.truncated || stderr.truncated,
    };
    if (result.code !== 0) {
      const why = result.signal
        ? `was ended by ${result.signal}`
        : `exited with code ${result.code}`;
      return exitCode(SHELL_NONZERO_EXIT_STATUS, `command '${inputs.command}' ${why}`, outputs);
    }
    return outputs;
  },
});
