import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getDaemonLogDir, type Profile } from '@aiida/config';
import { SUPERVISOR_EXEC_ARGV } from '@aiida/daemon-supervisor';
import { type ControlResponse, PROTOCOL_VERSION } from '@aiida/ipc';

const here = dirname(fileURLToPath(import.meta.url));
/** The built supervisor program (run `pnpm build` first). */
export const SUPERVISOR_BIN = resolve(here, '../../dist/bin.js');

/** What the supervisor reported on fd 3, or `null` when it closed fd 3 without a line. */
export type StartReport =
  | { v: number; ok: true; pid: number; socketPath: string }
  | { v: number; ok: false; error: { code: string; message: string } }
  | null;

/** A supervisor started the way the client contract says (detached, report on fd 3). */
export interface StartedSupervisor {
  pid: number;
  report: StartReport;
  /** Resolves with the exit code/signal once the process ended (while this test process runs). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts the supervisor bin like `@aiida/daemon-client` does: detached (own session), stdout and
 * stderr to `log/supervisor.out`, `--report-fd 3` on a pipe, `AIIDA_PATH` set; resolves once fd 3
 * reached EOF, with the line it carried.
 */
export async function startSupervisorBin(options: {
  profile: Profile;
  workers?: number;
  env?: Record<string, string>;
  timeout?: number;
}): Promise<StartedSupervisor> {
  const logDir = getDaemonLogDir(options.profile);
  mkdirSync(logDir, { recursive: true });
  const out = openSync(join(logDir, 'supervisor.out'), 'a');
  const args = [
    ...SUPERVISOR_EXEC_ARGV,
    SUPERVISOR_BIN,
    '--profile',
    options.profile.name,
    '--report-fd',
    '3',
  ];
  if (options.workers !== undefined) args.push('--workers', String(options.workers));
  const child = spawn(process.execPath, args, {
    detached: true,
    stdio: ['ignore', out, out, 'pipe'],
    env: { ...process.env, AIIDA_PATH: options.profile.aiidaPath, ...options.env },
  });
  closeSync(out);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    child.once('exit', (code, signal) => done({ code, signal }));
  });
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('the supervisor could not be spawned');
  const fd3 = child.stdio[3] as NodeJS.ReadableStream & { unref?: () => void };
  let text = '';
  const timeout = (options.timeout ?? 30) * 1000;
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no start report on fd 3 within ${timeout / 1000} s (pid ${pid})`)),
      timeout,
    );
    fd3.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
    });
    fd3.on('error', () => {});
    fd3.on('close', () => {
      clearTimeout(timer);
      done();
    });
  });
  const line = text.split('\n')[0] ?? '';
  const report = line ? (JSON.parse(line) as StartReport) : null;
  return { pid, report, exited };
}

let nextId = 0;

/** Sends one control request and resolves with its answer. */
export async function controlRequest(
  socketPath: string,
  request: Record<string, unknown>,
  timeout = 30,
): Promise<ControlResponse> {
  const id = `t${++nextId}`;
  const [response] = await rawExchange(
    socketPath,
    `${JSON.stringify({ v: PROTOCOL_VERSION, id, ...request })}\n`,
    { expect: 1, timeout },
  );
  if (!response) throw new Error(`no answer to ${JSON.stringify(request)}`);
  return response;
}

/** The result of a successful control request; throws with the error otherwise. */
export async function controlResult<T = unknown>(
  socketPath: string,
  request: Record<string, unknown>,
  timeout = 30,
): Promise<T> {
  const response = await controlRequest(socketPath, request, timeout);
  if (!response.ok) {
    throw new Error(
      `${String(request.type)} failed: ${response.error.code}: ${response.error.message}`,
    );
  }
  return response.result as T;
}

/**
 * Writes raw bytes to the control socket and collects answer lines until `expect` lines came,
 * the server closed the connection, or `timeout` seconds passed. `halfClose` ends our side after
 * writing.
 */
export function rawExchange(
  socketPath: string,
  data: string | Buffer,
  options: { expect?: number; timeout?: number; halfClose?: boolean } = {},
): Promise<ControlResponse[]> {
  return new Promise((done, fail) => {
    const socket = createConnection(socketPath);
    const answers: ControlResponse[] = [];
    let buffer = '';
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      done(answers);
    };
    const timer = setTimeout(finish, (options.timeout ?? 10) * 1000);
    socket.on('error', (error) => {
      clearTimeout(timer);
      if (answers.length > 0) done(answers);
      else fail(error);
    });
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) if (line) answers.push(JSON.parse(line) as ControlResponse);
      if (options.expect !== undefined && answers.length >= options.expect) finish();
    });
    socket.on('close', finish);
    socket.write(data, () => {
      if (options.halfClose) socket.end();
    });
  });
}

/** utime + stime of a process in clock ticks (`/proc/<pid>/stat` fields 14 and 15). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}
