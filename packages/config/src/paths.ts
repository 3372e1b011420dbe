import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/** Name of the folder under `AIIDA_PATH` that holds the config file, daemons and storage. */
export const CONFIG_DIR_NAME = '.aiida';
/** Name of the config file inside the config folder. */
export const CONFIG_FILE_NAME = 'config.json';

/** The part of a profile that locates its files: its name and the `AIIDA_PATH` it came from. */
export interface ProfileLocation {
  name: string;
  aiidaPath: string;
}

/**
 * The `AIIDA_PATH` to use: the argument, else the environment variable `AIIDA_PATH`, else the
 * home directory (as in AiiDA). Always absolute.
 */
export function resolveAiidaPath(aiidaPath?: string): string {
  const chosen = aiidaPath ?? nonEmpty(process.env.AIIDA_PATH) ?? homedir();
  return resolve(chosen);
}

/** The config folder, `<aiidaPath>/.aiida`. */
export function getConfigDir(aiidaPath?: string): string {
  return join(resolveAiidaPath(aiidaPath), CONFIG_DIR_NAME);
}

/** The config file, `<aiidaPath>/.aiida/config.json`. */
export function getConfigFilePath(aiidaPath?: string): string {
  return join(getConfigDir(aiidaPath), CONFIG_FILE_NAME);
}

/** The daemon folder of a profile, `<cfg>/daemon/<profile>`: state file, socket, logs. */
export function getDaemonDir(profile: ProfileLocation): string {
  return join(getConfigDir(profile.aiidaPath), 'daemon', profile.name);
}

/** The daemon's log folder of a profile, `<cfg>/daemon/<profile>/log`. */
export function getDaemonLogDir(profile: ProfileLocation): string {
  return join(getDaemonDir(profile), 'log');
}

/** The storage folder of a profile, `<cfg>/storage/<profile>`. */
export function getStorageDir(profile: ProfileLocation): string {
  return join(getConfigDir(profile.aiidaPath), 'storage', profile.name);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
