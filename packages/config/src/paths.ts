import { statSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { ConfigError, ConfigErrorCodes } from './errors.js';

/** Name of the folder under `AIIDA_PATH` that holds the config files, daemons and storage. */
export const CONFIG_DIR_NAME = '.aiida';
/**
 * Name of our config file inside the config folder. Python AiiDA keeps its own `config.json` in
 * the same folder; we never write that file (see the package README for why).
 */
export const CONFIG_FILE_NAME = 'aiida-ts.json';
/** Name of Python AiiDA's config file in the config folder: read (never written) by import. */
export const AIIDA_CONFIG_FILE_NAME = 'config.json';

/** The part of a profile that locates its files: its name and the `AIIDA_PATH` it came from. */
export interface ProfileLocation {
  name: string;
  aiidaPath: string;
}

/**
 * The config folder that an `AIIDA_PATH` value selects, by Python AiiDA's rules
 * (`aiida.manage.configuration.settings`):
 *
 * - the value is a list separated by `:` (the platform's path delimiter); empty entries are
 *   skipped; `~` at the start of an entry is the home directory;
 * - an entry whose last component is `.aiida` is the config folder itself; any other entry is a
 *   folder that holds `.aiida`;
 * - the first entry whose config folder exists (as a folder) wins; if none exists, the last
 *   entry's is used (and created on the first write);
 * - with no entries at all (unset, empty, or only separators) it is `~/.aiida`.
 *
 * `value` defaults to the environment variable `AIIDA_PATH`. Always absolute.
 */
export function resolveConfigDirFromList(
  value: string | undefined = process.env.AIIDA_PATH,
): string {
  const entries = (value ?? '').split(delimiter).filter((entry) => entry !== '');
  let chosen: string | undefined;
  for (const entry of entries) {
    chosen = configDirOfEntry(entry);
    if (isFolder(chosen)) break;
  }
  return chosen ?? join(homedir(), CONFIG_DIR_NAME);
}

/**
 * The `AIIDA_PATH` to use, as the folder that holds `.aiida`: for an argument, that one folder
 * (either the folder holding `.aiida` or the `.aiida` folder itself); else the environment
 * variable `AIIDA_PATH` read by AiiDA's rules ({@link resolveConfigDirFromList}); else the home
 * directory. Always absolute.
 */
export function resolveAiidaPath(aiidaPath?: string): string {
  const configDir =
    aiidaPath === undefined || aiidaPath === ''
      ? resolveConfigDirFromList()
      : configDirOfEntry(aiidaPath);
  return dirname(configDir);
}

/** The config folder, `<aiidaPath>/.aiida`. */
export function getConfigDir(aiidaPath?: string): string {
  return join(resolveAiidaPath(aiidaPath), CONFIG_DIR_NAME);
}

/** Our config file, `<aiidaPath>/.aiida/aiida-ts.json`. */
export function getConfigFilePath(aiidaPath?: string): string {
  return join(getConfigDir(aiidaPath), CONFIG_FILE_NAME);
}

/** Python AiiDA's config file in the same folder, `<aiidaPath>/.aiida/config.json`. */
export function getAiidaConfigFilePath(aiidaPath?: string): string {
  return join(getConfigDir(aiidaPath), AIIDA_CONFIG_FILE_NAME);
}

/**
 * Environment variable that overrides this host's name for the daemon's files and the worker
 * registry: for tests and containers that simulate several hosts on one machine (or hosts whose
 * `os.hostname()` is not stable). Unset or empty: `os.hostname()`.
 */
export const HOSTNAME_ENV = 'AIIDA_HOSTNAME';

/** What a host name must look like to name a folder: letters, digits, `.`, `_`, `-`. */
const HOSTNAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$/;

/**
 * This host's name as the daemon knows it: `AIIDA_HOSTNAME` if set, else `os.hostname()`. It
 * names the host's daemon folder ({@link getDaemonDir}) and is recorded in the state file and the
 * worker registry. Throws `ConfigError` `config_invalid` for a name that can't be a folder name.
 */
export function getHostname(env: NodeJS.ProcessEnv = process.env): string {
  const override = env[HOSTNAME_ENV];
  const name = override === undefined || override === '' ? hostname() : override;
  if (!HOSTNAME_PATTERN.test(name) || name === '.' || name === '..') {
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `${override ? `${HOSTNAME_ENV}=${JSON.stringify(name)}` : `the host name ${JSON.stringify(name)}`} ` +
        'cannot name a folder: use letters, digits, ".", "_" and "-" only (at most 253 characters)' +
        (override ? '' : `, or set ${HOSTNAME_ENV} to such a name`),
    );
  }
  return name;
}

/**
 * The folder of a profile's daemons on every host, `<cfg>/daemon/<profile>`: one subfolder per
 * host ({@link getDaemonDir}), so that a config folder shared between hosts (the same
 * `AIIDA_PATH` on NFS) keeps each host's daemon files apart.
 */
export function getProfileDaemonDir(profile: ProfileLocation): string {
  return join(getConfigDir(profile.aiidaPath), 'daemon', profile.name);
}

/**
 * This host's daemon folder of a profile, `<cfg>/daemon/<profile>/<hostname>`: its lock, state
 * file, control socket and logs. `hostname` defaults to {@link getHostname}.
 */
export function getDaemonDir(profile: ProfileLocation, hostname: string = getHostname()): string {
  return join(getProfileDaemonDir(profile), hostname);
}

/** This host's daemon log folder of a profile, `<cfg>/daemon/<profile>/<hostname>/log`. */
export function getDaemonLogDir(profile: ProfileLocation, hostname?: string): string {
  return join(getDaemonDir(profile, hostname), 'log');
}

/** The storage folder of a profile, `<cfg>/storage/<profile>`. */
export function getStorageDir(profile: ProfileLocation): string {
  return join(getConfigDir(profile.aiidaPath), 'storage', profile.name);
}

/** One `AIIDA_PATH` entry's config folder: the entry itself if it is named `.aiida`. */
function configDirOfEntry(entry: string): string {
  const path = resolve(expandHome(entry));
  return basename(path) === CONFIG_DIR_NAME ? path : join(path, CONFIG_DIR_NAME);
}

function expandHome(entry: string): string {
  if (entry === '~') return homedir();
  if (entry.startsWith('~/')) return join(homedir(), entry.slice(2));
  return entry;
}

function isFolder(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
