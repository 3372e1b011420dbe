import { createLogger, parseLogLine, renderLogLine } from '../src/index.js';

function capture(options: Omit<Parameters<typeof createLogger>[0], 'write'>) {
  const lines: { line: string; level: string }[] = [];
  const logger = createLogger({ ...options, write: (line, level) => lines.push({ line, level }) });
  return { logger, lines };
}

test('text lines read `level: message {fields}` and honour the level', () => {
  const { logger, lines } = capture({ level: 'warn', base: { worker: 'w-1' } });
  logger.info('hidden');
  logger.debug('hidden too');
  logger.warn('slow', { pk: 7 });
  logger.child({ component: 'broker' }).error('connection lost');
  logger.child({ pk: 9 }).info('hidden as well');
  expect(lines).toEqual([
    { line: 'warn: slow {"pk":7}', level: 'warn' },
    { line: 'error: broker: connection lost', level: 'error' },
  ]);
  expect(logger.isLevelEnabled('info')).toBe(false);
});

test('json lines carry level, time, msg, the base fields and the child bindings', () => {
  const { logger, lines } = capture({ level: 'debug', format: 'json', base: { worker: 'w-1' } });
  logger.child({ pk: 12 }).debug('claimed', { epoch: 2 });
  logger.trace('hidden');
  expect(lines).toHaveLength(1);
  const parsed = JSON.parse(lines[0]?.line ?? '');
  expect(parsed).toMatchObject({ level: 'debug', worker: 'w-1', pk: 12, epoch: 2, msg: 'claimed' });
  expect(new Date(parsed.time).toISOString()).toBe(parsed.time);
  expect(lines[0]?.level).toBe('debug');
});

test('a custom text line, and a write that throws is swallowed', () => {
  const logger = createLogger({
    textLine: (e) => `${e.level.toUpperCase().padEnd(5)} ${e.msg}`,
    write: () => {
      throw new Error('EPIPE');
    },
  });
  expect(() => logger.info('x')).not.toThrow();
  const { logger: l2, lines } = capture({
    textLine: (e) => `${e.level.toUpperCase().padEnd(5)} ${e.msg}`,
  });
  l2.info('shown');
  expect(lines[0]?.line).toBe('INFO  shown');
});

test('parseLogLine and renderLogLine read ours and plain pino lines; other lines pass through', () => {
  const ours = '{"level":"warn","time":"2026-01-02T03:04:05.678Z","pk":3,"msg":"lost"}';
  expect(parseLogLine(ours)).toEqual({
    level: 'warn',
    time: '2026-01-02T03:04:05.678Z',
    msg: 'lost',
    fields: { pk: 3 },
  });
  expect(renderLogLine(ours)).toBe('2026-01-02T03:04:05.678Z WARN  lost {"pk":3}');
  const plain = JSON.stringify({ level: 50, time: Date.UTC(2026, 0, 2), msg: 'boom' });
  expect(renderLogLine(plain)).toBe('2026-01-02T00:00:00.000Z ERROR boom');
  for (const other of ['2026-01-02T00:00:00.000Z INFO  started', '{"no":"level"}', '{bad', '']) {
    expect(parseLogLine(other)).toBeUndefined();
    expect(renderLogLine(other)).toBe(other);
  }
});
