import { ConfigError, ConfigErrorCodes, isConfigError } from '@aiida/config';

describe('ConfigError', () => {
  test('carries its code, details and cause', () => {
    const cause = new SyntaxError('bad');
    const error = new ConfigError(ConfigErrorCodes.configInvalid, 'broken', {
      cause,
      filePath: '/x/config.json',
      jsonPaths: ['a.b'],
    });
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.name).toBe('ConfigError');
    expect(error.code).toBe('config_invalid');
    expect(error.cause).toBe(cause);
    expect(error.filePath).toBe('/x/config.json');
    expect(error.jsonPaths).toEqual(['a.b']);
    expect(isConfigError(error)).toBe(true);
  });

  test('the brand check recognises a copy from another module instance', () => {
    const foreign = Object.assign(new Error('x'), { code: 'option_unknown' });
    Object.defineProperty(foreign, Symbol.for('@aiida/config.ConfigError'), { value: true });
    expect(isConfigError(foreign)).toBe(true);
    expect(foreign instanceof ConfigError).toBe(true);
    expect(isConfigError(new Error('x'))).toBe(false);
    expect(isConfigError(null)).toBe(false);
    expect(isConfigError('config_invalid')).toBe(false);
  });

  test('codes are the stable strings @aiida/ipc mirrors', () => {
    expect(ConfigErrorCodes).toMatchObject({
      configInvalid: 'config_invalid',
      configUnreadable: 'config_unreadable',
      configVersionUnsupported: 'config_version_unsupported',
      profileNotFound: 'profile_not_found',
      profileWithoutBroker: 'profile_without_broker',
      profileExists: 'profile_exists',
      profileNameInvalid: 'profile_name_invalid',
      optionUnknown: 'option_unknown',
      optionInvalid: 'option_invalid',
    });
  });
});
