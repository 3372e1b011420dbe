import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import {
  ConfigErrorCodes,
  createProfile,
  deleteProfile,
  describeStorage,
  getDaemonDir,
  getDaemonLogDir,
  getDefaultProfileName,
  getHostname,
  getProfile,
  getProfileDaemonDir,
  getStorageDir,
  listProfiles,
  profileNameProblem,
  setDefaultProfile,
  setProcessControlBackend,
} from '@aiida/config';
import { makeTempAiidaPath, type TempAiidaPath } from './temp-aiida-path.js';
import { thrown } from './thrown.js';

let tmp: TempAiidaPath;
let at: { aiidaPath: string };
const savedProfileEnv = process.env.AIIDA_PROFILE;
beforeEach(() => {
  tmp = makeTempAiidaPath();
  at = { aiidaPath: tmp.aiidaPath };
  delete process.env.AIIDA_PROFILE;
});
afterEach(() => {
  tmp.remove();
  if (savedProfileEnv === undefined) delete process.env.AIIDA_PROFILE;
  else process.env.AIIDA_PROFILE = savedProfileEnv;
});

describe('a core.psql profile', () => {
  const psql = {
    database_hostname: 'db.example',
    database_port: 5433,
    database_username: 'aiida_p',
    database_password: 's3cret-pw',
    database_name: 'aiida_p',
  };

  test("is stored with AiiDA's fields and read back; describeStorage never shows the password", () => {
    const created = createProfile(
      { name: 'p', storage: { backend: 'core.psql', config: psql } },
      at,
    );
    expect(created.storage).toEqual({ backend: 'core.psql', config: psql });
    expect(getProfile('p', at).storage).toEqual({ backend: 'core.psql', config: psql });
    const file = JSON.parse(readFileSync(tmp.configFile, 'utf8')) as {
      profiles: Record<string, { storage: unknown }>;
    };
    expect(file.profiles.p!.storage).toEqual({
      backend: 'core.psql',
      config: { database_engine: 'postgresql_psycopg', ...psql },
    });
    const text = describeStorage(created.storage);
    expect(text).toBe('PostgreSQL aiida_p@db.example:5433/aiida_p');
    expect(text).not.toContain('s3cret-pw');
  });

  test('bad fields are refused naming them, without the password, and nothing is written', () => {
    const error = thrown(() =>
      createProfile(
        { name: 'p', storage: { backend: 'core.psql', config: { ...psql, database_port: 0 } } },
        at,
      ),
    );
    expect(error).toMatchObject({ code: ConfigErrorCodes.configInvalid });
    expect((error as Error).message).toContain('storage.config.database_port');
    expect((error as Error).message).not.toContain('s3cret-pw');
    expect(listProfiles(at)).toEqual([]);
  });
});

describe('createProfile', () => {
  test('fills in a uuid, the storage path, broker defaults and the plugin folder', () => {
    const profile = createProfile({ name: 'p' }, at);
    expect(profile.name).toBe('p');
    expect(profile.uuid).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(profile.storage).toEqual({
      backend: 'core.sqlite',
      config: { filepath: join(tmp.configDir, 'storage', 'p', 'aiida.sqlite') },
    });
    expect(profile.broker).toEqual({
      backend: 'core.rabbitmq',
      config: {
        protocol: 'amqp',
        host: '127.0.0.1',
        port: 5672,
        username: 'guest',
        password: 'guest',
        virtualHost: '',
        queueType: 'classic',
        parameters: { heartbeat: 600 },
      },
    });
    expect(profile.pluginBaseDir).toBe(process.cwd());
    expect(profile.options).toEqual({});
    expect(profile.aiidaPath).toBe(tmp.aiidaPath);
    expect(createProfile({ name: 'q' }, at).uuid).not.toBe(profile.uuid);
  });

  test('the paths of a profile are under its AIIDA_PATH', () => {
    const profile = createProfile({ name: 'p' }, at);
    const host = getHostname();
    expect(getProfileDaemonDir(profile)).toBe(join(tmp.configDir, 'daemon', 'p'));
    expect(getDaemonDir(profile)).toBe(join(tmp.configDir, 'daemon', 'p', host));
    expect(getDaemonLogDir(profile)).toBe(join(tmp.configDir, 'daemon', 'p', host, 'log'));
    expect(getDaemonDir(profile, 'node7')).toBe(join(tmp.configDir, 'daemon', 'p', 'node7'));
    expect(getStorageDir(profile)).toBe(join(tmp.configDir, 'storage', 'p'));
  });

  test('the host name: AIIDA_HOSTNAME when set, else the system one; a name unfit for a folder is refused', () => {
    expect(getHostname({})).toBe(hostname());
    expect(getHostname({ AIIDA_HOSTNAME: '' })).toBe(hostname());
    expect(getHostname({ AIIDA_HOSTNAME: 'node-2.cluster' })).toBe('node-2.cluster');
    for (const bad of ['a/b', '..', '.hidden', 'with space']) {
      const error = thrown(() => getHostname({ AIIDA_HOSTNAME: bad }));
      expect(error.code).toBe('config_invalid');
      expect(error.message).toContain(`AIIDA_HOSTNAME=${JSON.stringify(bad)}`);
    }
  });

  test('partial broker settings override the defaults; undefined keys do not', () => {
    const profile = createProfile(
      { name: 'p', broker: { host: 'mq', password: undefined, parameters: {} } },
      at,
    );
    expect(profile.broker.config).toMatchObject({ host: 'mq', password: 'guest', parameters: {} });
  });

  test('bad broker settings are refused with the field named', () => {
    const error = thrown(() =>
      createProfile({ name: 'p', broker: { port: 0, queueType: 'fast' as 'classic' } }, at),
    );
    expect(error.code).toBe(ConfigErrorCodes.configInvalid);
    expect(error.message).toMatch(/broker\.port/);
    expect(error.message).toMatch(/broker\.queueType: expected one of "classic", "quorum"/);
    expect(listProfiles(at)).toEqual([]);
  });

  test('process control: core.rabbitmq by default, core.store on request, stored and switched', () => {
    expect(createProfile({ name: 'r' }, at).broker.backend).toBe('core.rabbitmq');
    const profile = createProfile({ name: 's', processControl: 'core.store' }, at);
    expect(profile.broker.backend).toBe('core.store');
    expect(getProfile('s', at).broker).toEqual(profile.broker);
    const stored = JSON.parse(readFileSync(tmp.configFile, 'utf8'));
    expect(stored.profiles.s.process_control.backend).toBe('core.store');
    expect(stored.profiles.r.process_control.backend).toBe('core.rabbitmq');
    const switched = setProcessControlBackend('s', 'core.rabbitmq', at);
    expect(switched.broker.backend).toBe('core.rabbitmq');
    // The RabbitMQ settings were kept while the profile used the store.
    expect(switched.broker.config).toEqual(profile.broker.config);
    expect(getProfile('s', at).broker.backend).toBe('core.rabbitmq');
  });

  test('an unknown process control backend is config_invalid and writes nothing', () => {
    createProfile({ name: 'p' }, at);
    const before = tmp.bytes();
    const bad = 'core.kafka' as 'core.store';
    let error = thrown(() => createProfile({ name: 'q', processControl: bad }, at));
    expect(error.code).toBe(ConfigErrorCodes.configInvalid);
    expect(error.message).toMatch(/"core\.kafka".*core\.rabbitmq, core\.store/);
    error = thrown(() => setProcessControlBackend('p', bad, at));
    expect(error.code).toBe(ConfigErrorCodes.configInvalid);
    error = thrown(() => setProcessControlBackend('nope', 'core.store', at));
    expect(error.code).toBe(ConfigErrorCodes.profileNotFound);
    expect(tmp.bytes().equals(before)).toBe(true);
  });

  test('a taken name is profile_exists and changes nothing', () => {
    createProfile({ name: 'p' }, at);
    const before = tmp.bytes();
    const error = thrown(() => createProfile({ name: 'p' }, at));
    expect(error.code).toBe(ConfigErrorCodes.profileExists);
    expect(error.message).toContain("'p' already exists");
    expect(tmp.bytes().equals(before)).toBe(true);
  });

  test.each([
    '',
    '.',
    '..',
    '../escape',
    'a/b',
    'a\\b',
    '-starts-with-dash',
    '.hidden',
    'has space',
    'ünïcode',
    'x'.repeat(65),
    'nul\0byte',
  ])('the unsafe name %j is refused', (name) => {
    const error = thrown(() => createProfile({ name }, at));
    expect(error.code).toBe(ConfigErrorCodes.profileNameInvalid);
    expect(error.message).toContain('Invalid profile name');
    expect(() => tmp.bytes()).toThrow();
  });

  test.each(['a', 'my-profile', 'Profile_2', 'v1.2', 'x'.repeat(64)])(
    'the safe name %j is accepted',
    (name) => {
      expect(profileNameProblem(name)).toBeUndefined();
      expect(createProfile({ name }, at).name).toBe(name);
    },
  );
});

describe('default profile', () => {
  test('the first profile becomes the default; later ones only when asked', () => {
    createProfile({ name: 'first' }, at);
    createProfile({ name: 'second' }, at);
    expect(getDefaultProfileName(at)).toBe('first');
    createProfile({ name: 'third', setDefault: true }, at);
    expect(getDefaultProfileName(at)).toBe('third');
    expect(getProfile(undefined, at).name).toBe('third');
  });

  test('setDefaultProfile needs an existing profile', () => {
    createProfile({ name: 'a' }, at);
    createProfile({ name: 'b' }, at);
    setDefaultProfile('b', at);
    expect(getProfile(undefined, at).name).toBe('b');
    const error = thrown(() => setDefaultProfile('c', at));
    expect(error.code).toBe(ConfigErrorCodes.profileNotFound);
    expect(error.message).toContain('Known profiles: a, b.');
  });

  test('AIIDA_PROFILE overrides the default; an explicit name overrides both', () => {
    createProfile({ name: 'a' }, at);
    createProfile({ name: 'b' }, at);
    process.env.AIIDA_PROFILE = 'b';
    expect(getProfile(undefined, at).name).toBe('b');
    expect(getProfile('a', at).name).toBe('a');
    process.env.AIIDA_PROFILE = 'gone';
    const error = thrown(() => getProfile(undefined, at));
    expect(error.message).toBe(
      `Profile 'gone' (from AIIDA_PROFILE) not found in ${tmp.configFile}. Known profiles: a, b.`,
    );
  });

  test('no name, no AIIDA_PROFILE and no default is a clear error', () => {
    const error = thrown(() => getProfile(undefined, at));
    expect(error.code).toBe(ConfigErrorCodes.profileNotFound);
    expect(error.message).toMatch(
      /no default profile.*There are no profiles yet; create one first/,
    );
  });
});

describe('list and delete', () => {
  test('listProfiles returns every profile sorted by name', () => {
    createProfile({ name: 'zeta' }, at);
    createProfile({ name: 'alpha' }, at);
    expect(listProfiles(at).map((p) => p.name)).toEqual(['alpha', 'zeta']);
  });

  test('deleting the default profile unsets the default', () => {
    createProfile({ name: 'a' }, at);
    createProfile({ name: 'b' }, at);
    deleteProfile('b', at);
    expect(getDefaultProfileName(at)).toBe('a');
    deleteProfile('a', at);
    expect(getDefaultProfileName(at)).toBeUndefined();
    expect(listProfiles(at)).toEqual([]);
    expect(JSON.parse(tmp.bytes().toString('utf8')).default_profile).toBeUndefined();
    // A new first profile becomes the default again.
    createProfile({ name: 'c' }, at);
    expect(getDefaultProfileName(at)).toBe('c');
  });

  test('deleting an unknown profile is profile_not_found', () => {
    createProfile({ name: 'a' }, at);
    const before = tmp.bytes();
    expect(thrown(() => deleteProfile('x', at)).code).toBe(ConfigErrorCodes.profileNotFound);
    expect(tmp.bytes().equals(before)).toBe(true);
  });
});

describe('AIIDA_PATH', () => {
  test('the environment variable is used when no path is passed', () => {
    const saved = process.env.AIIDA_PATH;
    process.env.AIIDA_PATH = tmp.aiidaPath;
    try {
      createProfile({ name: 'env' });
      expect(getProfile('env', at).aiidaPath).toBe(tmp.aiidaPath);
      expect(getProfile('env').name).toBe('env');
    } finally {
      if (saved === undefined) delete process.env.AIIDA_PATH;
      else process.env.AIIDA_PATH = saved;
    }
  });
});
