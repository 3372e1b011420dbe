import {
  continueTaskSchema,
  controlRequestSchema,
  controlResponseSchema,
  daemonStateFileSchema,
  daemonStatusSchema,
  ErrorCodes,
  isErrorCode,
  PROTOCOL_VERSION,
  rpcReplySchema,
  rpcRequestSchema,
  stateChangedBroadcastSchema,
  supervisorToWorkerMessageSchema,
  workerStatusSchema,
  workerToSupervisorMessageSchema,
} from '@aiida/ipc';
import type { z } from 'zod';

const v = PROTOCOL_VERSION;
const now = '2026-11-26T10:00:00.000Z';

const worker = {
  index: 0,
  pid: 1234,
  state: 'ready',
  startedAt: now,
  restarts: 2,
  lastHeartbeatAt: now,
  cpu: 1.5,
  memory: 52_000_000,
  slotsUsed: 3,
  slotsTotal: 200,
  activePks: [1, 2, 3],
  lastStderr: [],
  nextAttemptAt: null,
};

/** Each schema with one valid example and several invalid shapes. */
const cases: Array<{ name: string; schema: z.ZodType; valid: unknown[]; invalid: unknown[] }> = [
  {
    name: 'control requests',
    schema: controlRequestSchema,
    valid: [
      { v, id: 'a', type: 'ping' },
      { v, id: 'a', type: 'status' },
      { v, id: 'a', type: 'workers' },
      { v, id: 'a', type: 'incr', n: 2 },
      { v, id: 'a', type: 'decr', n: 1 },
      { v, id: 'a', type: 'restart' },
      { v, id: 'a', type: 'stop' },
      { v, id: 'a', type: 'stop', gracefulTimeout: 2.5 },
    ],
    invalid: [
      { id: 'a', type: 'ping' }, // no version
      { v: v + 1, id: 'a', type: 'ping' }, // other version
      { v, type: 'ping' }, // no id
      { v, id: '', type: 'ping' },
      { v, id: 'a', type: 'explode' },
      { v, id: 'a', type: 'incr' }, // no n
      { v, id: 'a', type: 'incr', n: 0 },
      { v, id: 'a', type: 'incr', n: 1.5 },
      { v, id: 'a', type: 'stop', gracefulTimeout: -1 },
      { v, id: 'a', type: 'ping', extra: true }, // strict
      'ping',
      null,
    ],
  },
  {
    name: 'control responses',
    schema: controlResponseSchema,
    valid: [
      { v, id: 'a', ok: true, result: { pid: 1, protocolVersion: v } },
      { v, id: null, ok: false, error: { code: 'invalid_request', message: 'bad' } },
      { v: 99, id: 'a', ok: false, error: { code: 'protocol_mismatch', message: 'x' } },
    ],
    invalid: [
      { v, id: 'a', ok: true },
      { v, id: 'a', ok: false, error: { message: 'no code' } },
      { v, id: 'a', ok: 'yes', result: 1 },
    ],
  },
  {
    name: 'worker status',
    schema: workerStatusSchema,
    valid: [
      worker,
      {
        ...worker,
        pid: null,
        state: 'crash-looping',
        cpu: null,
        memory: null,
        lastStderr: ['Error: boom'],
        nextAttemptAt: now,
      },
      { ...worker, lastRestartReason: 'unresponsive' },
      { ...worker, lastRestartReason: 'exited' },
    ],
    invalid: [
      { ...worker, state: 'sleeping' },
      { ...worker, lastRestartReason: 'bored' },
      { ...worker, pid: -1 },
      { ...worker, startedAt: 'yesterday' },
      { ...worker, activePks: [0] },
      { ...worker, slotsUsed: undefined },
    ],
  },
  {
    name: 'daemon status',
    schema: daemonStatusSchema,
    valid: [
      {
        pid: 10,
        hostname: 'h',
        profile: 'p',
        startedAt: now,
        protocolVersion: v,
        numberWorkers: 1,
        workers: [worker],
        logDir: '/tmp/x',
      },
    ],
    invalid: [{ pid: 10, workers: [] }],
  },
  {
    name: 'worker to supervisor',
    schema: workerToSupervisorMessageSchema,
    valid: [
      { v, type: 'ready', pid: 5, slotsTotal: 200 },
      {
        v,
        type: 'heartbeat',
        slotsUsed: 1,
        slotsTotal: 200,
        activePks: [7],
        eventLoopLag: 0.002,
        memory: 1000,
      },
      { v, type: 'fatal', error: 'connect ECONNREFUSED 127.0.0.1:1' },
    ],
    invalid: [
      { v, type: 'ready' },
      {
        v,
        type: 'heartbeat',
        slotsUsed: -1,
        slotsTotal: 1,
        activePks: [],
        eventLoopLag: 0,
        memory: 0,
      },
      { v, type: 'fatal' },
      { v, type: 'hello' },
    ],
  },
  {
    name: 'supervisor to worker',
    schema: supervisorToWorkerMessageSchema,
    valid: [{ v, type: 'shutdown', gracefulTimeout: 30 }],
    invalid: [
      { v, type: 'shutdown' },
      { v, type: 'shutdown', gracefulTimeout: '30' },
    ],
  },
  {
    name: 'continue task',
    schema: continueTaskSchema,
    valid: [{ v, type: 'continue', pk: 1 }],
    invalid: [
      { v, type: 'continue', pk: 0 },
      { v, type: 'continue', pk: '1' },
      { type: 'continue', pk: 1 },
    ],
  },
  {
    name: 'rpc requests',
    schema: rpcRequestSchema,
    valid: [
      { v, intent: 'pause', pk: 1 },
      { v, intent: 'play', pk: 1 },
      { v, intent: 'kill', pk: 1, message: 'stop it', force: true },
      { v, intent: 'kill', pk: 1 },
      { v, intent: 'status', pk: 1 },
    ],
    invalid: [
      { v, intent: 'resume', pk: 1 },
      { v, intent: 'kill', pk: 1, force: 'yes' },
      { v, intent: 'pause' },
    ],
  },
  {
    name: 'rpc replies',
    schema: rpcReplySchema,
    valid: [
      { v, ok: true, result: { state: 'running' } },
      { v, ok: false, error: { code: 'process_not_found', message: 'no 5' } },
    ],
    invalid: [
      { v, ok: false },
      { ok: true, result: 1 },
    ],
  },
  {
    name: 'state changed broadcast',
    schema: stateChangedBroadcastSchema,
    valid: [{ v, type: 'state_changed', pk: 3, from: 'created', to: 'running' }],
    invalid: [{ v, type: 'state_changed', pk: 3, from: 'created', to: 'done' }],
  },
  {
    name: 'daemon state file',
    schema: daemonStateFileSchema,
    valid: [
      {
        v,
        pid: 4,
        hostname: 'h',
        bootId: 'b',
        startTime: 123,
        socketPath: '/tmp/s',
        protocolVersion: v,
        profile: 'p',
        startedAt: now,
      },
    ],
    invalid: [{ v, pid: 4 }],
  },
];

describe.each(cases)('$name schema', ({ schema, valid, invalid }) => {
  it.each(valid.map((value) => [JSON.stringify(value), value]))('accepts %s', (_label, value) => {
    const parsed = schema.safeParse(value);
    expect(parsed.error).toBeUndefined();
    expect(parsed.success).toBe(true);
  });
  it.each(invalid.map((value) => [JSON.stringify(value), value]))('rejects %s', (_label, value) => {
    expect(schema.safeParse(value).success).toBe(false);
  });
});

describe('error codes', () => {
  it('are unique snake_case strings and recognised by isErrorCode', () => {
    const codes = Object.values(ErrorCodes);
    expect(new Set(codes).size).toBe(codes.length);
    for (const code of codes) {
      expect(code).toMatch(/^[a-z]+(_[a-z]+)*$/);
      expect(isErrorCode(code)).toBe(true);
    }
    expect(isErrorCode('no_such_code')).toBe(false);
    expect(isErrorCode(42)).toBe(false);
  });
});
