import { chmodSync, mkdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import {
  CONFIG_VERSION,
  ConfigErrorCodes,
  type ConfigMigration,
  createProfile,
  getOption,
  getProfile,
  isConfigError,
  listProfiles,
  migrateConfigData,
  parseConfigText,
  readConfig,
  setOption,
  unsetOption,
  updateConfig,
} from '@aiida/config';
import { makeTempAiidaPath, type TempAiidaPath } from './temp-aiida-path.js';

let tmp: TempAiidaPath;
beforeEach(() => {
  tmp = makeTempAiidaPath();
});
afterEach(() => tmp.remove());

function validProfileJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    PROFILE_UUID: '0b9c7a3e-2f57-4c55-9f1b-1c2d3e4f5a6b',
    storage: { backend: 'core.sqlite', config: { filepath: '/x/aiida.sqlite' } },
    process_control: {
      backend: 'core.rabbitmq',
      config: {
        broker_protocol: 'amqp',
        broker_username: 'guest',
        broker_password: 'guest',
        broker_host: '127.0.0.1',
        broker_port: 5672,
        broker_virtual_host: '',
        broker_queue_type: 'classic',
        broker_parameters: { heartbeat: 600 },
      },
    },
    plugin_base_dir: '/x',
    options: {},
    ...overrides,
  };
}

function validConfigJson(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    CONFIG_VERSION: { CURRENT: 1, OLDEST_COMPATIBLE: 1 },
    profiles: { foo: validProfileJson() },
    default_profile: 'foo',
    options: {},
    ...overrides,
  };
}

describe('config.json round trip', () => {
  test('a missing file is an empty config and reading it creates nothing', () => {
    expect(readConfig({ aiidaPath: tmp.aiidaPath })).toEqual({
      CONFIG_VERSION: { CURRENT: CONFIG_VERSION, OLDEST_COMPATIBLE: 1 },
      profiles: {},
      options: {},
    });
    expect(listProfiles({ aiidaPath: tmp.aiidaPath })).toEqual([]);
    expect(getOption('daemon.timeout', { aiidaPath: tmp.aiidaPath })).toBe(10);
    expect(() => statSync(tmp.configDir)).toThrow();
  });

  test('what is written is read back the same, in AiiDA shape', () => {
    const created = createProfile(
      {
        name: 'round-trip',
        broker: { host: 'rabbit.example', port: 5671, protocol: 'amqps', queueType: 'quorum' },
        pluginBaseDir: '/plugins',
        options: { 'engine.plugins': ['my-plugin'] },
      },
      { aiidaPath: tmp.aiidaPath },
    );
    setOption('daemon.default_workers', 3, { aiidaPath: tmp.aiidaPath });
    const loaded = getProfile('round-trip', { aiidaPath: tmp.aiidaPath });
    expect(loaded).toEqual(created);
    expect(loaded.aiidaPath).toBe(tmp.aiidaPath);

    const onDisk = JSON.parse(tmp.bytes().toString('utf8'));
    expect(onDisk).toEqual({
      CONFIG_VERSION: { CURRENT: 1, OLDEST_COMPATIBLE: 1 },
      profiles: {
        'round-trip': {
          PROFILE_UUID: created.uuid,
          storage: {
            backend: 'core.sqlite',
            config: { filepath: `${tmp.configDir}/storage/round-trip/aiida.sqlite` },
          },
          process_control: {
            backend: 'core.rabbitmq',
            config: {
              broker_protocol: 'amqps',
              broker_username: 'guest',
              broker_password: 'guest',
              broker_host: 'rabbit.example',
              broker_port: 5671,
              broker_virtual_host: '',
              broker_queue_type: 'quorum',
              broker_parameters: { heartbeat: 600 },
            },
          },
          plugin_base_dir: '/plugins',
          options: { 'engine.plugins': ['my-plugin'] },
        },
      },
      default_profile: 'round-trip',
      options: { 'daemon.default_workers': 3 },
    });
    expect(onDisk.profiles['round-trip'].aiidaPath).toBeUndefined();
  });

  test('a hand-written file with optional broker keys left out gets their defaults', () => {
    const profile = validProfileJson();
    const broker = (profile.process_control as { config: Record<string, unknown> }).config;
    delete broker.broker_virtual_host;
    delete broker.broker_queue_type;
    delete broker.broker_parameters;
    delete profile.options;
    mkdirSync(tmp.configDir, { recursive: true });
    writeFileSync(tmp.configFile, JSON.stringify(validConfigJson({ profiles: { foo: profile } })));
    const loaded = getProfile('foo', { aiidaPath: tmp.aiidaPath });
    expect(loaded.broker.config).toMatchObject({
      virtualHost: '',
      queueType: 'classic',
      parameters: { heartbeat: 600 },
    });
    expect(loaded.options).toEqual({});
  });
});

describe('file and folder modes', () => {
  test('the first write creates a 0700 folder and a 0600 file, with no leftovers', () => {
    const oldMask = process.umask(0o000);
    try {
      setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    } finally {
      process.umask(oldMask);
    }
    expect(statSync(tmp.configDir).mode & 0o777).toBe(0o700);
    expect(statSync(tmp.configFile).mode & 0o777).toBe(0o600);
    expect(tmp.entries()).toEqual(['aiida-ts.json']);
  });

  test('a rewrite keeps the file 0600 even if someone loosened it', () => {
    setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    chmodSync(tmp.configFile, 0o644);
    setOption('daemon.timeout', 21, { aiidaPath: tmp.aiidaPath });
    expect(statSync(tmp.configFile).mode & 0o777).toBe(0o600);
  });

  test('a change that changes nothing does not write the file', () => {
    setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    const before = statSync(tmp.configFile);
    setOption('daemon.timeout', '20', { aiidaPath: tmp.aiidaPath });
    unsetOption('daemon.log_backups', { aiidaPath: tmp.aiidaPath });
    expect(statSync(tmp.configFile).ino).toBe(before.ino);
  });
});

describe('bad config files: a clear error and the file left byte-identical', () => {
  const badFiles: Array<{ kind: string; text: string; path: string; fragment: RegExp }> = [
    { kind: 'invalid JSON', text: '{"profiles": {', path: '', fragment: /not valid JSON/ },
    { kind: 'an empty file', text: '', path: '', fragment: /not valid JSON/ },
    {
      kind: 'an array instead of an object',
      text: '[]',
      path: '',
      fragment: /expected object, got an array/,
    },
    {
      kind: 'no config version',
      text: JSON.stringify({ profiles: {} }),
      path: 'CONFIG_VERSION',
      fragment: /CONFIG_VERSION: expected object, got nothing/,
    },
    {
      kind: 'a port of the wrong type',
      text: JSON.stringify(
        validConfigJson({
          profiles: {
            foo: validProfileJson({
              process_control: {
                backend: 'core.rabbitmq',
                config: {
                  ...(validProfileJson().process_control as { config: object }).config,
                  broker_port: '5672',
                },
              },
            }),
          },
        }),
      ),
      path: 'profiles.foo.process_control.config.broker_port',
      fragment:
        /profiles\.foo\.process_control\.config\.broker_port: expected number, got string "5672"/,
    },
    {
      kind: 'a port out of range',
      text: JSON.stringify(
        validConfigJson({
          profiles: {
            foo: validProfileJson({
              process_control: {
                backend: 'core.rabbitmq',
                config: {
                  ...(validProfileJson().process_control as { config: object }).config,
                  broker_port: 70000,
                },
              },
            }),
          },
        }),
      ),
      path: 'profiles.foo.process_control.config.broker_port',
      fragment: /broker_port: .*65535/,
    },
    {
      kind: 'an unknown top-level key',
      text: JSON.stringify(validConfigJson({ colour: 'blue' })),
      path: 'colour',
      fragment: /colour: unknown key/,
    },
    {
      kind: 'an unknown key in a profile',
      text: JSON.stringify(validConfigJson({ profiles: { foo: validProfileJson({ extra: 1 }) } })),
      path: 'profiles.foo.extra',
      fragment: /profiles\.foo\.extra: unknown key/,
    },
    {
      kind: 'an unknown option',
      text: JSON.stringify(validConfigJson({ options: { 'daemon.timout': 5 } })),
      path: 'options["daemon.timout"]',
      fragment: /options\["daemon\.timout"\]: unknown option; did you mean 'daemon\.timeout'\?/,
    },
    {
      kind: 'an option of the wrong type in a profile',
      text: JSON.stringify(
        validConfigJson({
          profiles: { foo: validProfileJson({ options: { 'engine.plugins': 'not-a-list' } }) },
        }),
      ),
      path: 'profiles.foo.options["engine.plugins"]',
      fragment: /profiles\.foo\.options\["engine\.plugins"\]: expected array, got string/,
    },
    {
      kind: 'a wrong storage backend',
      text: JSON.stringify(
        validConfigJson({
          profiles: {
            foo: validProfileJson({
              storage: { backend: 'core.psql_dos', config: { filepath: '/x' } },
            }),
          },
        }),
      ),
      path: 'profiles.foo.storage.backend',
      fragment: /profiles\.foo\.storage\.backend: .*'core\.sqlite' \| 'core\.psql'/,
    },
    {
      kind: 'an unsafe profile name',
      text: JSON.stringify(validConfigJson({ profiles: { '../evil': validProfileJson() } })),
      path: 'profiles["../evil"]',
      fragment: /profiles\["\.\.\/evil"\]/,
    },
  ];

  test.each(badFiles)('$kind', ({ text, path, fragment }) => {
    mkdirSync(tmp.configDir, { recursive: true, mode: 0o700 });
    writeFileSync(tmp.configFile, text, { mode: 0o644 });
    const before = tmp.bytes();
    const beforeStat = statSync(tmp.configFile);
    const opts = { aiidaPath: tmp.aiidaPath };

    const attempts: Array<() => unknown> = [
      () => readConfig(opts),
      () => listProfiles(opts),
      () => getProfile('foo', opts),
      () => getOption('daemon.timeout', opts),
      () => setOption('daemon.timeout', 5, opts),
      () => unsetOption('daemon.timeout', opts),
      () => createProfile({ name: 'other' }, opts),
    ];
    for (const attempt of attempts) {
      let caught: unknown;
      try {
        attempt();
      } catch (error) {
        caught = error;
      }
      expect(isConfigError(caught)).toBe(true);
      const error = caught as import('@aiida/config').ConfigError;
      expect(error.code).toBe(ConfigErrorCodes.configInvalid);
      expect(error.message).toContain(tmp.configFile);
      expect(error.message).toMatch(fragment);
      expect(error.message).toContain('left unchanged');
      expect(error.filePath).toBe(tmp.configFile);
      expect(error.jsonPaths).toContain(path);
    }
    expect(tmp.bytes().equals(before)).toBe(true);
    const afterStat = statSync(tmp.configFile);
    expect(afterStat.mode).toBe(beforeStat.mode);
    expect(afterStat.ino).toBe(beforeStat.ino);
    expect(tmp.entries()).toEqual(['aiida-ts.json']);
  });

  test('a file from a newer version is refused with both versions named', () => {
    mkdirSync(tmp.configDir, { recursive: true });
    const text = JSON.stringify(
      validConfigJson({ CONFIG_VERSION: { CURRENT: CONFIG_VERSION + 1, OLDEST_COMPATIBLE: 2 } }),
    );
    writeFileSync(tmp.configFile, text);
    const opts = { aiidaPath: tmp.aiidaPath };
    for (const attempt of [() => readConfig(opts), () => setOption('daemon.timeout', 5, opts)]) {
      expect(attempt).toThrow(
        expect.objectContaining({
          code: ConfigErrorCodes.configVersionUnsupported,
          message: expect.stringMatching(
            new RegExp(`version ${CONFIG_VERSION + 1}, newer than version ${CONFIG_VERSION}`),
          ),
        }),
      );
    }
    expect(tmp.bytes().toString('utf8')).toBe(text);
  });

  test('an unreadable config (a folder in its place) is config_unreadable', () => {
    mkdirSync(tmp.configFile, { recursive: true });
    expect(() => readConfig({ aiidaPath: tmp.aiidaPath })).toThrow(
      expect.objectContaining({ code: ConfigErrorCodes.configUnreadable }),
    );
  });
});

describe('migrations', () => {
  const toV2: ConfigMigration = {
    from: 1,
    description: 'rename options.old to options.new',
    migrate(data) {
      const options = data.options as Record<string, unknown>;
      options.new = options.old;
      delete options.old;
      return data;
    },
  };

  test('a future version adds a step; older data is migrated in memory', () => {
    const raw = { CONFIG_VERSION: { CURRENT: 1, OLDEST_COMPATIBLE: 1 }, options: { old: 1 } };
    const outcome = migrateConfigData(raw, [toV2], 2);
    expect(outcome).toEqual({
      kind: 'ok',
      fromVersion: 1,
      data: { CONFIG_VERSION: { CURRENT: 2, OLDEST_COMPATIBLE: 1 }, options: { new: 1 } },
    });
    expect(raw.options).toEqual({ old: 1 });
  });

  test('a version without a migration path or newer than the code is reported', () => {
    const raw = { CONFIG_VERSION: { CURRENT: 1, OLDEST_COMPATIBLE: 1 } };
    expect(migrateConfigData(raw, [], 2)).toEqual({ kind: 'no_path', fileVersion: 1 });
    expect(migrateConfigData(raw, [], 0).kind).toBe('too_new');
  });

  test('the current version needs no migration', () => {
    const config = parseConfigText(JSON.stringify(validConfigJson()), '/virtual/config.json');
    expect(Object.keys(config.profiles)).toEqual(['foo']);
  });
});

describe('updateConfig', () => {
  test('an error thrown by the change leaves the file untouched and releases the lock', () => {
    setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    const before = tmp.bytes();
    expect(() =>
      updateConfig(
        (config) => {
          config.options['daemon.timeout'] = 99;
          throw new Error('changed my mind');
        },
        { aiidaPath: tmp.aiidaPath },
      ),
    ).toThrow('changed my mind');
    expect(tmp.bytes().equals(before)).toBe(true);
    expect(tmp.entries()).toEqual(['aiida-ts.json']);
    setOption('daemon.timeout', 21, { aiidaPath: tmp.aiidaPath });
    expect(getOption('daemon.timeout', { aiidaPath: tmp.aiidaPath })).toBe(21);
  });

  test('a change that would make the file invalid is refused before writing', () => {
    setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    const before = tmp.bytes();
    expect(() =>
      updateConfig(
        (config) => {
          (config.options as Record<string, unknown>)['daemon.timeout'] = 'soon';
        },
        { aiidaPath: tmp.aiidaPath },
      ),
    ).toThrow(expect.objectContaining({ code: ConfigErrorCodes.configInvalid }));
    expect(tmp.bytes().equals(before)).toBe(true);
  });

  test('a held lock makes a writer wait, then fail with config_locked', () => {
    setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    // A fresh lock folder, as a live writer in another process would hold it.
    mkdirSync(`${tmp.configFile}.lock`);
    const before = tmp.bytes();
    expect(() =>
      updateConfig(
        (config) => {
          config.options['daemon.timeout'] = 30;
        },
        { aiidaPath: tmp.aiidaPath, lockTimeout: 0.3 },
      ),
    ).toThrow(expect.objectContaining({ code: ConfigErrorCodes.configLocked }));
    expect(tmp.bytes().equals(before)).toBe(true);
  });

  test('a lock left by a crashed writer is broken once stale', () => {
    setOption('daemon.timeout', 20, { aiidaPath: tmp.aiidaPath });
    const lockDir = `${tmp.configFile}.lock`;
    mkdirSync(lockDir);
    const longAgo = new Date(Date.now() - 60_000);
    utimesSync(lockDir, longAgo, longAgo);
    setOption('daemon.timeout', 21, { aiidaPath: tmp.aiidaPath });
    expect(getOption('daemon.timeout', { aiidaPath: tmp.aiidaPath })).toBe(21);
    expect(tmp.entries()).toEqual(['aiida-ts.json']);
  });
});
