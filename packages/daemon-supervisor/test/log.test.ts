import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, RotatingLog, WorkerLog } from '../src/log.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'aiida-log-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const ISO_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z /;

test('lines are timestamped and the file rotates by size, keeping `backups` files', async () => {
  const path = join(dir, 'worker-0.log');
  const log = new RotatingLog(path, { maxBytes: 300, backups: 2 });
  for (let i = 0; i < 60; i++) {
    log.line(`line ${i} ${'x'.repeat(20)}`);
    // Let the stream notice the size between writes, as real logging spreads over time.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await log.close();
  expect(readdirSync(dir).sort()).toEqual(['worker-0.log', 'worker-0.log.1', 'worker-0.log.2']);
  for (const file of readdirSync(dir)) {
    const text = readFileSync(join(dir, file), 'utf8');
    if (text === '') continue; // the live file right after a rotation
    for (const line of text.trimEnd().split('\n')) expect(line).toMatch(ISO_LINE);
    expect(text.length).toBeLessThan(600);
  }
  // The newest line is in the live file, or in the one just rotated; the oldest are gone.
  expect(`${readFileSync(path, 'utf8')}${readFileSync(`${path}.1`, 'utf8')}`).toContain('line 59');
  const kept = readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('');
  expect(kept).not.toContain('line 0 ');
});

test('the logger filters by level and writes LEVEL message', async () => {
  const path = join(dir, 'supervisor.log');
  const log = new RotatingLog(path, { maxBytes: 1_000_000, backups: 1 });
  const echoed: string[] = [];
  const logger = createLogger(log, 'info', (line) => echoed.push(line));
  logger.debug('hidden');
  logger.info('shown');
  logger.error('bad');
  await log.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/Z INFO {2}shown$/);
  expect(lines[1]).toMatch(/Z ERROR bad$/);
  expect(echoed).toEqual(['INFO  shown', 'ERROR bad']);
  log.line('after close is dropped');
  expect(existsSync(`${path}.1`)).toBe(false);
});

test('a worker log in json format: JSON lines as they are, other output wrapped, level honoured', async () => {
  const path = join(dir, 'worker-3.log');
  const file = new RotatingLog(path, { maxBytes: 1_000_000, backups: 1 });
  const log = new WorkerLog(file, 3, 'json', 'info');
  log.supervisor(42, 'started prog');
  const own =
    '{"level":"info","time":"2026-01-01T00:00:00.000Z","pk":5,"msg":"process 5: finished"}';
  log.output(42, 'stdout', own);
  log.output(42, 'stderr', 'worker crashed: TypeError: x is not a function');
  log.output(42, 'stdout', '{"not":"a log line"}');
  log.supervisor(42, 'fatal: no broker', 'error');
  await file.close();
  const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
  expect(lines).toHaveLength(5);
  const parsed = lines.map((line) => JSON.parse(line));
  for (const entry of parsed) {
    expect(typeof entry.level).toBe('string');
    expect(new Date(entry.time).toISOString()).toBe(entry.time);
  }
  expect(parsed[0]).toMatchObject({ level: 'info', component: 'supervisor', worker: 3, pid: 42 });
  expect(lines[1]).toBe(own);
  expect(parsed[2]).toMatchObject({ level: 'error', stream: 'stderr', worker: 3, pid: 42 });
  expect(parsed[3]).toMatchObject({ level: 'info', stream: 'stdout', msg: '{"not":"a log line"}' });
  expect(parsed[4]).toMatchObject({ level: 'error', msg: 'fatal: no broker' });

  const quiet = join(dir, 'worker-4.log');
  const quietFile = new RotatingLog(quiet, { maxBytes: 1_000_000, backups: 1 });
  const text = new WorkerLog(quietFile, 4, 'text', 'warn');
  text.supervisor(7, 'started prog');
  text.supervisor(7, 'fatal: boom', 'error');
  text.output(7, 'stderr', 'warn: slow');
  await quietFile.close();
  const textLines = readFileSync(quiet, 'utf8').trimEnd().split('\n');
  expect(textLines).toHaveLength(2);
  expect(textLines[0]).toMatch(/Z pid=7 supervisor: fatal: boom$/);
  expect(textLines[1]).toMatch(/Z pid=7 stderr\| warn: slow$/);
});
