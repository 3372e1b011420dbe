import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  ConfigErrorCodes,
  createProfile,
  formatOptionValue,
  getOption,
  getProfile,
  LEASE_HEARTBEAT_RATIO,
  listOptionValues,
  OPTION_NAMES,
  OPTIONS,
  parseOptionValue,
  setOption,
  unsetOption,
} from '@aiida/config';
import { z } from 'zod';
import { makeTempAiidaPath, type TempAiidaPath } from './temp-aiida-path.js';
import { thrown } from './thrown.js';

let tmp: TempAiidaPath;
let at: { aiidaPath: string };
beforeEach(() => {
  tmp = makeTempAiidaPath();
  at = { aiidaPath: tmp.aiidaPath };
});
afterEach(() => tmp.remove());

describe('the option registry', () => {
  test('has every option of the contract with its default and unit', () => {
    const expected: Record<string, [unknown, 's' | 'bytes' | null]> = {
      'daemon.timeout': [10, 's'],
      'daemon.default_workers': [1, null],
      'daemon.max_workers': [4 * availableParallelism(), null],
      'daemon.warm_spare': [false, null],
      'daemon.worker_process_slots': [200, null],
      'daemon.graceful_timeout': [30, 's'],
      'daemon.worker_heartbeat_interval': [1, 's'],
      'daemon.store_poll_interval': [1, 's'],
      'daemon.lease_timeout': [10, 's'],
      'daemon.worker_max_memory': [0, 'bytes'],
      'daemon.log_max_bytes': [10 * 1024 * 1024, 'bytes'],
      'daemon.log_backups': [5, null],
      'broker.task_timeout': [10, 's'],
      'engine.plugins': [[], null],
      'engine.max_attempts': [5, null],
      'engine.max_input_bytes': [4 * 1024 * 1024, 'bytes'],
      'daemon.metrics_port': [0, null],
      'logging.level': ['info', null],
      'logging.format': ['text', null],
    };
    expect([...OPTION_NAMES].sort()).toEqual(Object.keys(expected).sort());
    for (const [name, [value, unit]] of Object.entries(expected)) {
      const definition = OPTIONS[name as keyof typeof OPTIONS];
      expect(definition.name).toBe(name);
      expect(definition.default).toEqual(value);
      expect(definition.unit).toBe(unit);
      expect(definition.description.length).toBeGreaterThan(10);
      expect(typeof definition.needsRestart).toBe('boolean');
      expect(['global', 'profile', 'both']).toContain(definition.scope);
      expect(definition.schema).toBeInstanceOf(z.ZodType);
      // Every default satisfies its own type.
      expect(definition.schema.safeParse(definition.default).success).toBe(true);
    }
  });

  test('the defaults satisfy the lease/heartbeat rule', () => {
    expect(OPTIONS['daemon.lease_timeout'].default).toBeGreaterThanOrEqual(
      LEASE_HEARTBEAT_RATIO * OPTIONS['daemon.worker_heartbeat_interval'].default,
    );
    expect(getOption('daemon.lease_timeout', at)).toBe(10);
  });

  test('a returned default is a copy the caller can change', () => {
    getOption('engine.plugins', at).push('mutated');
    expect(getOption('engine.plugins', at)).toEqual([]);
    expect(OPTIONS['engine.plugins'].default).toEqual([]);
  });
});

describe('resolution order: profile, then global, then default', () => {
  test('each level overrides the next', () => {
    createProfile({ name: 'p' }, at);
    createProfile({ name: 'q' }, at);
    expect(getOption('daemon.timeout', { ...at, profile: 'p' })).toBe(10);

    setOption('daemon.timeout', 20, at);
    expect(getOption('daemon.timeout', { ...at, profile: 'p' })).toBe(20);
    expect(getOption('daemon.timeout', at)).toBe(20);

    setOption('daemon.timeout', 30, { ...at, profile: 'p' });
    expect(getOption('daemon.timeout', { ...at, profile: 'p' })).toBe(30);
    expect(getOption('daemon.timeout', { ...at, profile: 'q' })).toBe(20);
    expect(getOption('daemon.timeout', at)).toBe(20);
    // A loaded Profile object resolves the same way.
    expect(getOption('daemon.timeout', { profile: getProfile('p', at) })).toBe(30);

    unsetOption('daemon.timeout', { ...at, profile: 'p' });
    expect(getOption('daemon.timeout', { ...at, profile: 'p' })).toBe(20);
    unsetOption('daemon.timeout', at);
    expect(getOption('daemon.timeout', { ...at, profile: 'p' })).toBe(10);
  });

  test('listOptionValues says where each value came from', () => {
    createProfile({ name: 'p', options: { 'daemon.log_backups': 2 } }, at);
    setOption('daemon.timeout', 20, at);
    const rows = listOptionValues({ ...at, profile: 'p' });
    expect(rows.map((r) => r.name)).toEqual([...OPTION_NAMES]);
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(byName['daemon.log_backups']).toMatchObject({ value: 2, source: 'profile' });
    expect(byName['daemon.timeout']).toMatchObject({ value: 20, source: 'global', unit: 's' });
    expect(byName['engine.max_attempts']).toMatchObject({ value: 5, source: 'default' });
  });

  test('options of an unknown profile are profile_not_found', () => {
    createProfile({ name: 'p' }, at);
    expect(thrown(() => getOption('daemon.timeout', { ...at, profile: 'nope' })).code).toBe(
      ConfigErrorCodes.profileNotFound,
    );
    const error = thrown(() => setOption('daemon.timeout', 3, { ...at, profile: 'nope' }));
    expect(error.code).toBe(ConfigErrorCodes.profileNotFound);
    expect(error.message).toContain('Known profiles: p.');
  });
});

describe('values are checked with the option type', () => {
  test('command-line strings that parse to the right type are accepted', () => {
    setOption('daemon.timeout', '30', at);
    setOption('daemon.graceful_timeout', '2.5', at);
    setOption('engine.plugins', '["a", "@scope/b"]', at);
    setOption('logging.level', 'debug', at);
    expect(getOption('daemon.timeout', at)).toBe(30);
    expect(getOption('daemon.graceful_timeout', at)).toBe(2.5);
    expect(getOption('engine.plugins', at)).toEqual(['a', '@scope/b']);
    expect(getOption('logging.level', at)).toBe('debug');
    expect(parseOptionValue('daemon.default_workers', '4')).toBe(4);
  });

  test.each([
    ['daemon.timeout', 'abc', /expected number, got string "abc"/],
    ['daemon.timeout', -1, /: must be > 0, got number -1$/],
    ['daemon.timeout', '-5', /: must be > 0, got number -5$/],
    ['daemon.timeout', '0', /: must be > 0, got number 0$/],
    ['daemon.default_workers', 1.5, /integer/],
    ['daemon.default_workers', '2.5', /: expected integer, got number 2\.5$/],
    ['daemon.default_workers', '0', /: must be >= 1, got number 0$/],
    ['engine.plugins', 'my-plugin', /expected array, got string/],
    ['engine.plugins', [''], /\[0\]/],
    ['logging.level', 'loud', /expected one of "error", "warn", "info", "debug", "trace"/],
  ])('%s = %j is refused', (name, value, fragment) => {
    setOption('daemon.log_backups', 1, at);
    const before = tmp.bytes();
    const error = thrown(() => setOption(name, value, at));
    expect(error.code).toBe(ConfigErrorCodes.optionInvalid);
    expect(error.message).toContain(`option '${name}'`);
    expect(error.message).toMatch(fragment);
    expect(tmp.bytes().equals(before)).toBe(true);
  });

  test('createProfile checks its options the same way', () => {
    const error = thrown(() =>
      createProfile({ name: 'p', options: { 'daemon.timeout': 'soon' } }, at),
    );
    expect(error.code).toBe(ConfigErrorCodes.optionInvalid);
    expect(thrown(() => getProfile('p', at)).code).toBe(ConfigErrorCodes.profileNotFound);
  });
});

describe('unknown option names', () => {
  test.each([
    ['daemon.timout', 'daemon.timeout'],
    ['daemon.lease_timout', 'daemon.lease_timeout'],
    ['engine.plugin', 'engine.plugins'],
    ['DAEMON.TIMEOUT', 'daemon.timeout'],
  ])('%s suggests %s', (typo, suggestion) => {
    for (const attempt of [
      () => setOption(typo, 1, at),
      () => unsetOption(typo, at),
      () => getOption(typo as 'daemon.timeout', at),
    ]) {
      const error = thrown(attempt);
      expect(error.code).toBe(ConfigErrorCodes.optionUnknown);
      expect(error.message).toBe(`Unknown option '${typo}'. Did you mean '${suggestion}'?`);
    }
  });

  test('a name close to nothing lists the known options instead', () => {
    const error = thrown(() => setOption('colour', 'blue', at));
    expect(error.message).toMatch(/^Unknown option 'colour'\. Known options: daemon\.timeout, /);
  });

  test('a refused name writes nothing', () => {
    expect(() => setOption('daemon.timout', 1, at)).toThrow();
    expect(() => tmp.bytes()).toThrow();
  });
});

describe('the lease/heartbeat rule (lease >= 3 x heartbeat)', () => {
  test('setOption refuses to break it, against the resolved other value', () => {
    createProfile({ name: 'p' }, at);
    // Exactly 3x is fine.
    setOption('daemon.lease_timeout', 3, { ...at, profile: 'p' });
    const before = tmp.bytes();
    let error = thrown(() => setOption('daemon.lease_timeout', 2.9, { ...at, profile: 'p' }));
    expect(error.code).toBe(ConfigErrorCodes.optionInvalid);
    expect(error.message).toContain("profile 'p'");
    expect(error.message).toMatch(/daemon\.lease_timeout \(2\.9 s, the profile's value\)/);
    expect(error.message).toMatch(/daemon\.worker_heartbeat_interval \(1 s, the default\)/);

    // A global heartbeat that would break the profile's lease is refused too.
    error = thrown(() => setOption('daemon.worker_heartbeat_interval', 2, at));
    expect(error.message).toContain("profile 'p'");
    expect(tmp.bytes().equals(before)).toBe(true);

    // Unsetting can break it as well: the profile's 0.5 s heartbeat keeps a 2 s lease valid.
    setOption('daemon.worker_heartbeat_interval', 0.5, { ...at, profile: 'p' });
    setOption('daemon.lease_timeout', 2, { ...at, profile: 'p' });
    error = thrown(() => unsetOption('daemon.worker_heartbeat_interval', { ...at, profile: 'p' }));
    expect(error.code).toBe(ConfigErrorCodes.optionInvalid);
    expect(getOption('daemon.worker_heartbeat_interval', { ...at, profile: 'p' })).toBe(0.5);
  });

  test('raising both in the right order works', () => {
    setOption('daemon.lease_timeout', 60, at);
    setOption('daemon.worker_heartbeat_interval', 20, at);
    expect(getOption('daemon.lease_timeout', at)).toBe(60);
  });

  test('createProfile refuses options that break it', () => {
    const error = thrown(() =>
      createProfile(
        {
          name: 'p',
          options: { 'daemon.worker_heartbeat_interval': 0.5, 'daemon.lease_timeout': 1 },
        },
        at,
      ),
    );
    expect(error.code).toBe(ConfigErrorCodes.optionInvalid);
    expect(() =>
      createProfile(
        {
          name: 'p',
          options: { 'daemon.lease_timeout': 5, 'daemon.worker_heartbeat_interval': 0.5 },
        },
        at,
      ),
    ).not.toThrow();
  });

  test('getOption refuses a broken pair from a hand-edited file', () => {
    setOption('daemon.lease_timeout', 30, at);
    const config = JSON.parse(tmp.bytes().toString('utf8'));
    config.options['daemon.lease_timeout'] = 2;
    writeFileSync(tmp.configFile, JSON.stringify(config));
    for (const name of ['daemon.lease_timeout', 'daemon.worker_heartbeat_interval'] as const) {
      const error = thrown(() => getOption(name, at));
      expect(error.code).toBe(ConfigErrorCodes.optionInvalid);
      expect(error.message).toMatch(/must be at least 3 x daemon\.worker_heartbeat_interval/);
    }
    // Other options still resolve, and an unrelated change is not blocked by the old problem.
    expect(getOption('daemon.timeout', at)).toBe(10);
    setOption('daemon.timeout', 12, at);
    // Fixing it is allowed.
    setOption('daemon.lease_timeout', 3, at);
    expect(getOption('daemon.lease_timeout', at)).toBe(3);
  });
});

describe('formatOptionValue', () => {
  test('units and lists', () => {
    expect(formatOptionValue('daemon.timeout', 10)).toBe('10 s');
    expect(formatOptionValue('daemon.log_max_bytes', 10485760)).toBe('10485760 bytes (10 MiB)');
    expect(formatOptionValue('daemon.worker_max_memory', 0)).toBe('0 bytes');
    expect(formatOptionValue('daemon.worker_max_memory', 1536)).toBe('1536 bytes (1.5 KiB)');
    expect(formatOptionValue('engine.plugins', ['a'])).toBe('["a"]');
    expect(formatOptionValue('logging.level', 'info')).toBe('info');
    expect(formatOptionValue('daemon.log_backups', 5)).toBe('5');
  });
});
