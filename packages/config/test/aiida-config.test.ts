// Beside Python AiiDA: its config.json (fixtures written from aiida-core's config schemas and
// migrations, versions 5, 9, 10 and a future 11) is never written, and import reads its broker.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConfigErrorCodes,
  createProfile,
  deleteProfile,
  getAiidaConfigFilePath,
  getBrokerUrl,
  getConfigFilePath,
  getOption,
  getProfile,
  importAiidaProfile,
  listProfiles,
  readAiidaBrokerSettings,
  readAiidaProcessControl,
  setDefaultProfile,
  setOption,
  unsetOption,
} from '@aiida/config';
import { makeTempAiidaPath, type TempAiidaPath } from './temp-aiida-path.js';
import { thrown } from './thrown.js';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

let tmp: TempAiidaPath;
let at: { aiidaPath: string };
beforeEach(() => {
  tmp = makeTempAiidaPath();
  at = { aiidaPath: tmp.aiidaPath };
  mkdirSync(tmp.configDir, { recursive: true, mode: 0o700 });
});
afterEach(() => tmp.remove());

/** Puts an AiiDA config fixture in place as AiiDA's config.json; returns its bytes. */
function aiidaConfig(version: number): Buffer {
  const target = getAiidaConfigFilePath(tmp.aiidaPath);
  copyFileSync(join(fixtures, `aiida-config-v${version}.json`), target);
  return readFileSync(target);
}

describe.each([9, 10, 11, 5])("AiiDA's config.json of version %i", (version) => {
  test('stays byte-identical while we create, change and delete profiles and options', () => {
    const before = aiidaConfig(version);
    const same = () => expect(readFileSync(getAiidaConfigFilePath(tmp.aiidaPath))).toEqual(before);
    expect(listProfiles(at)).toEqual([]);
    createProfile({ name: 'research' }, at);
    same();
    setOption('daemon.timeout', 30, at);
    setOption('daemon.default_workers', '3', { ...at, profile: 'research' });
    same();
    createProfile({ name: 'second' }, at);
    setDefaultProfile('second', at);
    unsetOption('daemon.timeout', at);
    same();
    deleteProfile('research', at);
    same();
    expect(getConfigFilePath(tmp.aiidaPath)).toBe(join(tmp.configDir, 'aiida-ts.json'));
    expect(JSON.parse(tmp.bytes().toString('utf8')).CONFIG_VERSION.CURRENT).toBe(1);
    // AiiDA's options are not ours: its daemon.timeout of 20 does not leak into our profiles.
    expect(getOption('daemon.timeout', { profile: getProfile('second', at) })).toBe(10);
  });
});

describe('readAiidaBrokerSettings', () => {
  test.each([9, 10, 11])('reads process_control.config of a version %i file', (version) => {
    aiidaConfig(version);
    const read = readAiidaBrokerSettings('research', at);
    expect(read).toEqual({
      profile: 'research',
      filePath: getAiidaConfigFilePath(tmp.aiidaPath),
      configVersion: version,
      broker: {
        protocol: 'amqps',
        username: 'aiida',
        password: 's3cret-pw',
        host: 'rabbit.example.org',
        port: 5671,
        virtualHost: 'aiida-vhost',
        parameters: { heartbeat: 300, frame_max: 131072 },
      },
    });
  });

  test("AiiDA's default profile when none is named; AiiDA's defaults for keys left out", () => {
    aiidaConfig(9);
    expect(readAiidaBrokerSettings(undefined, at).profile).toBe('research');
    expect(readAiidaBrokerSettings('local', at).broker).toEqual({
      protocol: 'amqp',
      username: 'guest',
      password: 'guest',
      host: '127.0.0.1',
      port: 5672,
      virtualHost: '',
      parameters: { heartbeat: 600 },
    });
  });

  test('a version 5 file keeps the broker keys at the top of the profile', () => {
    aiidaConfig(5);
    expect(readAiidaBrokerSettings('old', at).broker).toMatchObject({
      username: 'old-user',
      password: 'old-pw',
      host: '10.0.0.5',
      virtualHost: 'legacy',
      parameters: { heartbeat: 600 },
    });
  });

  test('no file: config_unreadable naming the path and AIIDA_PATH', () => {
    const error = thrown(() => readAiidaBrokerSettings('research', at));
    expect(error.code).toBe(ConfigErrorCodes.configUnreadable);
    expect(error.message).toContain(
      `There is no AiiDA config file at ${join(tmp.configDir, 'config.json')}`,
    );
    expect(error.message).toContain('AIIDA_PATH');
  });

  test('an unknown profile lists the AiiDA profiles', () => {
    aiidaConfig(10);
    const error = thrown(() => readAiidaBrokerSettings('nope', at));
    expect(error.code).toBe(ConfigErrorCodes.profileNotFound);
    expect(error.message).toMatch(
      /^AiiDA profile 'nope' not found in AiiDA's config file .*config\.json\. Its profiles: local, presto, research\.$/,
    );
  });

  test('a profile without RabbitMQ is profile_without_broker', () => {
    aiidaConfig(10);
    const error = thrown(() => readAiidaBrokerSettings('presto', at));
    expect(error.code).toBe(ConfigErrorCodes.profileWithoutBroker);
    expect(error.message).toContain("AiiDA profile 'presto'");
    expect(error.message).toContain('process_control.backend is null');
  });

  test('a bad broker value names its JSON path and does not show the password', () => {
    const file = getAiidaConfigFilePath(tmp.aiidaPath);
    const data = JSON.parse(readFileSync(join(fixtures, 'aiida-config-v9.json'), 'utf8'));
    data.profiles.research.process_control.config.broker_port = 'x';
    writeFileSync(file, JSON.stringify(data));
    const before = readFileSync(file);
    const error = thrown(() => readAiidaBrokerSettings('research', at));
    expect(error.code).toBe(ConfigErrorCodes.configInvalid);
    expect(error.message).toContain('profiles.research.process_control.config.broker_port');
    expect(error.message).not.toContain('s3cret-pw');
    expect(readFileSync(file)).toEqual(before);
  });

  test('a file that is not JSON is config_invalid and left alone', () => {
    const file = getAiidaConfigFilePath(tmp.aiidaPath);
    writeFileSync(file, '{"CONFIG_VERSION": ');
    const error = thrown(() => readAiidaBrokerSettings('research', at));
    expect(error.code).toBe(ConfigErrorCodes.configInvalid);
    expect(error.message).toContain("AiiDA's config file");
    expect(readFileSync(file, 'utf8')).toBe('{"CONFIG_VERSION": ');
  });
});

describe('readAiidaProcessControl', () => {
  test('a profile without a broker (backend null) reads as broker null; one with RabbitMQ as before', () => {
    const before = aiidaConfig(10);
    expect(readAiidaProcessControl('presto', at)).toEqual({
      profile: 'presto',
      filePath: getAiidaConfigFilePath(tmp.aiidaPath),
      configVersion: 10,
      broker: null,
    });
    expect(readAiidaProcessControl('research', at)).toEqual(
      readAiidaBrokerSettings('research', at),
    );
    expect(readFileSync(getAiidaConfigFilePath(tmp.aiidaPath))).toEqual(before);
  });

  test('a backend that is neither RabbitMQ nor none is still profile_without_broker', () => {
    const file = getAiidaConfigFilePath(tmp.aiidaPath);
    const data = JSON.parse(readFileSync(join(fixtures, 'aiida-config-v10.json'), 'utf8'));
    data.profiles.presto.process_control.backend = 'core.zmq';
    writeFileSync(file, JSON.stringify(data));
    const error = thrown(() => readAiidaProcessControl('presto', at));
    expect(error.code).toBe(ConfigErrorCodes.profileWithoutBroker);
    expect(error.message).toContain('process_control.backend is "core.zmq"');
  });
});

describe('importAiidaProfile', () => {
  test.each([9, 10, 11])(
    'an AiiDA profile without a broker (config v%i) gives a core.store profile; its file unchanged',
    (version) => {
      const before = aiidaConfig(version);
      const { profile, source } = importAiidaProfile({ aiidaProfile: 'presto', name: 'nb' }, at);
      expect(source).toMatchObject({ profile: 'presto', configVersion: version, broker: null });
      expect(profile.name).toBe('nb');
      expect(profile.broker.backend).toBe('core.store');
      expect(getProfile('nb', at).broker.backend).toBe('core.store');
      expect(profile.storage.backend).toBe('core.sqlite');
      expect(readFileSync(getAiidaConfigFilePath(tmp.aiidaPath))).toEqual(before);
    },
  );

  test("creates our profile with AiiDA's broker and leaves AiiDA's file as it was", () => {
    const before = aiidaConfig(10);
    const { profile, source } = importAiidaProfile({ aiidaProfile: 'research' }, at);
    expect(source.profile).toBe('research');
    expect(profile.name).toBe('research');
    expect(getBrokerUrl(getProfile('research', at))).toBe(
      'amqps://aiida:s3cret-pw@rabbit.example.org:5671/aiida-vhost?heartbeat=300&frame_max=131072',
    );
    expect(profile.broker.config.queueType).toBe('classic');
    expect(profile.broker.backend).toBe('core.rabbitmq');
    expect(profile.uuid).not.toBe('4a3e9c2b-1f0d-4e8a-9b7c-6d5e4f3a2b1c');
    expect(readFileSync(getAiidaConfigFilePath(tmp.aiidaPath))).toEqual(before);
  });

  test('under another name, with a queue type', () => {
    aiidaConfig(9);
    const { profile } = importAiidaProfile(
      { aiidaProfile: 'local', name: 'mine', queueType: 'quorum' },
      at,
    );
    expect(profile.name).toBe('mine');
    expect(profile.broker.config).toMatchObject({ host: '127.0.0.1', queueType: 'quorum' });
  });

  test('a name we already have is profile_exists, and nothing changes', () => {
    aiidaConfig(9);
    createProfile({ name: 'research' }, at);
    const ours = tmp.bytes();
    const error = thrown(() => importAiidaProfile({ aiidaProfile: 'research' }, at));
    expect(error.code).toBe(ConfigErrorCodes.profileExists);
    expect(tmp.bytes()).toEqual(ours);
  });
});

describe('a config.json written by an earlier version of this package', () => {
  const legacy = {
    CONFIG_VERSION: { CURRENT: 1, OLDEST_COMPATIBLE: 1 },
    profiles: {
      dev: {
        PROFILE_UUID: '0b5f2d8e-5a55-4a53-9d0a-2b7c3c1e9f10',
        storage: { backend: 'core.sqlite', config: { filepath: '/x/aiida.sqlite' } },
        process_control: { backend: 'core.rabbitmq', config: {} },
        plugin_base_dir: '/x',
        options: {},
      },
    },
    default_profile: 'dev',
    options: {},
  };

  test('is named, with what to do, when we have no profiles; and left alone', () => {
    const file = getAiidaConfigFilePath(tmp.aiidaPath);
    writeFileSync(file, JSON.stringify(legacy, null, 4));
    const before = readFileSync(file);
    const error = thrown(() => getProfile(undefined, at));
    expect(error.code).toBe(ConfigErrorCodes.profileNotFound);
    expect(error.message).toContain(
      `but ${file} holds profiles that an earlier version of this package wrote there (dev); ` +
        "rename that file to aiida-ts.json to use them (it is not Python AiiDA's).",
    );
    expect(readFileSync(file)).toEqual(before);
  });

  test("AiiDA's own file is not mistaken for one", () => {
    aiidaConfig(9);
    const error = thrown(() => getProfile('x', at));
    expect(error.message).toContain('There are no profiles yet; create one first.');
  });
});
