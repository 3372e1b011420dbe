// Integration, property-based: 10,000 connections of random bytes, broken JSON, wrong shapes,
// huge lines and well-formed requests, written in random pieces, against a live supervisor (no
// workers, so no broker). Each connection gets exactly the answers the protocol promises and is
// closed; afterwards the same supervisor (same pid) answers every well-formed request and its
// memory stayed within 50 MB of where it started.
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { controlResponseSchema, ErrorCodes, NdjsonDecoder, PROTOCOL_VERSION } from '@aiida/ipc';
import fc from 'fast-check';
import { stopPid } from '../../../tests/support/processes.js';
import {
  createTestProfile,
  type TestProfile,
  withLogTails,
} from '../../../tests/support/test-profile.js';
import { controlResult, startSupervisorBin } from './support/supervisor-process.js';

const RUNS = 10_000;
const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

/** One line of a case: a well-formed request, a blank line, or something the server refuses. */
type Line =
  | { kind: 'valid'; type: 'ping' | 'status' | 'workers' }
  | { kind: 'blank'; text: string }
  | { kind: 'malformed'; what: string; bytes: Buffer };

const validLine: fc.Arbitrary<Line> = fc
  .constantFrom('ping' as const, 'status' as const, 'workers' as const)
  .map((type) => ({ kind: 'valid', type }));

const blankLine: fc.Arbitrary<Line> = fc
  .constantFrom('', ' ', '\t', '  \r')
  .map((text) => ({ kind: 'blank', text }));

const malformed = (what: string, bytes: Buffer): Line => ({ kind: 'malformed', what, bytes });

/** Random bytes, never a newline, never blank (a leading `#` is not JSON either). */
const randomBytes = fc
  .uint8Array({ maxLength: 300 })
  .map((raw) =>
    malformed(
      'random bytes',
      Buffer.concat([Buffer.from('#'), Buffer.from(raw.filter((b) => b !== 0x0a))]),
    ),
  );

/** A valid request cut short, or with a byte changed into one that breaks it. */
const brokenJson = fc
  .tuple(
    fc.constantFrom('ping', 'status', 'workers', 'stop', 'incr'),
    fc.nat(),
    fc.constantFrom('', '}', '{', ',', '"', ':'),
  )
  .map(([type, cut, junk]) => {
    const text = JSON.stringify({ v: PROTOCOL_VERSION, id: 'broken', type });
    const at = 1 + (cut % (text.length - 1));
    return malformed('broken JSON', Buffer.from(`${text.slice(0, at)}${junk}`));
  })
  .filter((line) => {
    try {
      JSON.parse((line as { bytes: Buffer }).bytes.toString());
      return false;
    } catch {
      return true;
    }
  });

/**
 * JSON of the wrong shape. Objects always carry an unknown field, so that even a known type with
 * the right fields (a `stop`!) is refused by the strict schemas.
 */
const wrongShape = fc.oneof(
  fc
    .record({
      v: fc.oneof(fc.constant(PROTOCOL_VERSION), fc.integer(), fc.string(), fc.constant(null)),
      id: fc.oneof(fc.string({ maxLength: 200 }), fc.integer(), fc.constant(null)),
      type: fc.constantFrom(
        'ping',
        'status',
        'workers',
        'incr',
        'decr',
        'restart',
        'stop',
        'x',
        '',
      ),
      n: fc.oneof(fc.integer(), fc.string(), fc.constant(undefined)),
      'x-fuzz': fc.jsonValue({ maxDepth: 2 }),
    })
    .map((value) => malformed('wrong shape', Buffer.from(JSON.stringify(value)))),
  fc
    .jsonValue({ maxDepth: 3 })
    .filter((value) => typeof value !== 'object' || value === null || Array.isArray(value))
    .map((value) => malformed('not an object', Buffer.from(JSON.stringify(value)))),
);

/** A line above the server's 64 KiB cap. */
const hugeLine = fc
  .integer({ min: 64 * 1024 + 1, max: 200 * 1024 })
  .map((size) => malformed('huge line', Buffer.alloc(size, 0x61)));

const lineArb: fc.Arbitrary<Line> = fc.oneof(
  { arbitrary: validLine, weight: 6 },
  { arbitrary: blankLine, weight: 1 },
  { arbitrary: randomBytes, weight: 3 },
  { arbitrary: brokenJson, weight: 3 },
  { arbitrary: wrongShape, weight: 3 },
  { arbitrary: hugeLine, weight: 1 },
);

interface Case {
  lines: Line[];
  /** Whether the last line ends with a newline (else the half-close cuts it). */
  terminated: boolean;
  /** Where the bytes are split into separate writes (fractions of the length). */
  cuts: number[];
}

const caseArb: fc.Arbitrary<Case> = fc.record({
  lines: fc.array(lineArb, { minLength: 1, maxLength: 6 }),
  terminated: fc.boolean(),
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 5 }),
});

/** The bytes of a case, and the ids the server must answer `ok` (the protocol's promise). */
function render(c: Case): { bytes: Buffer; expectedOk: string[] } {
  const parts: Buffer[] = [];
  const expectedOk: string[] = [];
  let malformedInRow = 0;
  let closed = false;
  c.lines.forEach((line, index) => {
    const last = index === c.lines.length - 1;
    const newline = !last || c.terminated;
    let body: Buffer;
    if (line.kind === 'valid') {
      const id = `req-${index}`;
      body = Buffer.from(JSON.stringify({ v: PROTOCOL_VERSION, id, type: line.type }));
      if (newline && !closed) {
        expectedOk.push(id);
        malformedInRow = 0;
      }
    } else if (line.kind === 'blank') {
      body = Buffer.from(line.text);
    } else {
      body = line.bytes;
      // A huge line is refused as soon as it crosses the cap, newline or not.
      if (newline || line.what === 'huge line') {
        malformedInRow++;
        if (malformedInRow >= 2) closed = true;
      }
    }
    parts.push(body);
    if (newline) parts.push(Buffer.from('\n'));
  });
  return { bytes: Buffer.concat(parts), expectedOk };
}

interface Exchange {
  answers: unknown[];
  closedAfter: number;
}

/** Writes the bytes in pieces, half-closes, and reads every answer until the server closes. */
function exchange(socketPath: string, bytes: Buffer, cuts: number[]): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path: socketPath, allowHalfOpen: true });
    const decoder = new NdjsonDecoder({ maxLineBytes: 1 << 20 });
    const answers: unknown[] = [];
    const started = performance.now();
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `the server did not close the connection within 20 s; answers so far: ${JSON.stringify(answers)}`,
        ),
      );
    }, 20_000);
    socket.on('data', (chunk) => {
      for (const event of decoder.push(chunk)) {
        answers.push(event.kind === 'message' ? event.value : { undecodable: event.error.message });
      }
    });
    // The server may close before it read everything (after a second malformed line): then our
    // writes fail, which is fine.
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ answers, closedAfter: (performance.now() - started) / 1000 });
    });
    socket.on('end', () => socket.end());
    const points = [...new Set(cuts.map((f) => Math.floor(f * bytes.length)))]
      .filter((p) => p > 0 && p < bytes.length)
      .sort((a, b) => a - b);
    const pieces: Buffer[] = [];
    let from = 0;
    for (const point of [...points, bytes.length]) {
      pieces.push(bytes.subarray(from, point));
      from = point;
    }
    const writeNext = () => {
      const piece = pieces.shift();
      if (piece === undefined) {
        if (!socket.destroyed) socket.end();
        return;
      }
      if (socket.destroyed) return;
      socket.write(piece, () => setImmediate(writeNext));
    };
    socket.once('connect', writeNext);
  });
}

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!kb) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kb[1]) * 1024;
}

let tp: TestProfile;
let supervisorPid: number | undefined;

beforeAll(() => {
  tp = createTestProfile({ name: 'fuzz' });
});
afterAll(async () => {
  if (supervisorPid !== undefined) await stopPid(supervisorPid, 10);
  tp.remove();
});

test(`property: over ${RUNS} connections of random bytes, broken JSON, wrong shapes, huge lines and split writes, every answer is a valid response, exactly the well-formed requests are answered ok, every connection is closed; afterwards the same supervisor answers and its RSS grew by less than 50 MB`, async () => {
  await withLogTails(tp.logTails, async () => {
    const started = await startSupervisorBin({ profile: tp.profile, workers: 0 });
    supervisorPid = started.pid;
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const { socketPath, pid } = started.report;
    // Warm up, then take the baseline.
    for (let i = 0; i < 20; i++) await controlResult(socketPath, { type: 'status' });
    const rssBefore = rssBytes(pid);

    await fc.assert(
      fc.asyncProperty(caseArb, async (c) => {
        const { bytes, expectedOk } = render(c);
        const { answers } = await exchange(socketPath, bytes, c.cuts);
        const okIds: string[] = [];
        for (const answer of answers) {
          const parsed = controlResponseSchema.safeParse(answer);
          if (!parsed.success) throw new Error(`not a control response: ${JSON.stringify(answer)}`);
          if (parsed.data.ok) okIds.push(parsed.data.id);
          else if (!KNOWN_CODES.has(parsed.data.error.code)) {
            throw new Error(`unknown error code in ${JSON.stringify(answer)}`);
          }
        }
        expect(okIds.sort()).toEqual([...expectedOk].sort());
        // At most one error per malformed line, a final one, and one for a cut-off last line.
        expect(answers.length).toBeLessThanOrEqual(c.lines.length + 2);
      }),
      { numRuns: RUNS },
    );

    // The same supervisor answers every well-formed request, on fresh connections and pipelined.
    for (const type of ['ping', 'status', 'workers'] as const) {
      const result = await controlResult<{ pid?: number }>(socketPath, { type });
      if (type !== 'workers') expect(result.pid).toBe(pid);
    }
    const pipelined = await exchange(
      socketPath,
      Buffer.from(
        ['ping', 'status', 'workers', 'ping']
          .map((type, i) => `${JSON.stringify({ v: PROTOCOL_VERSION, id: `p${i}`, type })}\n`)
          .join(''),
      ),
      [],
    );
    expect(pipelined.answers).toHaveLength(4);
    expect(pipelined.answers.every((a) => (a as { ok: boolean }).ok)).toBe(true);

    const rssAfter = rssBytes(pid);
    const grown = (rssAfter - rssBefore) / (1024 * 1024);
    expect(grown).toBeLessThan(50);
    process.stdout.write(
      `control socket fuzz: ${RUNS} cases; supervisor RSS ${(rssBefore / 2 ** 20).toFixed(1)} MB -> ${(rssAfter / 2 ** 20).toFixed(1)} MB\n`,
    );
  });
}, 900_000);
