import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, RotatingLog } from '../src/log.js';

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
