/**
 * @aiida/config: profiles, the option registry and `$AIIDA_PATH/.aiida/aiida-ts.json` (beside
 * Python AiiDA's `config.json`, which is only ever read), plus the paths of a profile's files.
 * This list is the package's whole public API.
 */

export {
  type AiidaBrokerSettings,
  type AiidaConfigLocationOptions,
  type AiidaProcessControl,
  type ImportAiidaProfileInput,
  importAiidaProfile,
  readAiidaBrokerSettings,
  readAiidaProcessControl,
} from './aiida-config.js';
export {
  type BrokerSettings,
  brokerSettingsSchema,
  defaultBrokerSettings,
} from './broker-settings.js';
export { getBrokerUrl, getRedactedBrokerUrl } from './broker-url.js';
export {
  type ConfigLocationOptions,
  type ConfigLockOptions,
  parseConfigText,
  type ReadConfigOptions,
  readConfig,
  updateConfig,
} from './config-file.js';
export {
  CONFIG_OLDEST_COMPATIBLE_VERSION,
  CONFIG_VERSION,
  type ConfigFile,
  configFileSchema,
  type ProfileFile,
} from './config-schema.js';
export {
  ConfigError,
  type ConfigErrorCode,
  ConfigErrorCodes,
  type ConfigErrorDetails,
  isConfigError,
} from './errors.js';
export type { ValueProblem } from './format-issues.js';
export {
  type AiidaLogger,
  type CreateLoggerOptions,
  createLogger,
  defaultTextLine,
  type LogEntry,
  type LogFormat,
  type LogLevel,
  parseLogLine,
  renderLogLine,
} from './logger.js';
export {
  CONFIG_MIGRATIONS,
  type ConfigMigration,
  type MigrationOutcome,
  migrateConfigData,
} from './migrations.js';
export {
  type GetOptionOptions,
  getOption,
  listOptionValues,
  type ResolvedOption,
  type SetOptionOptions,
  setOption,
  unsetOption,
} from './option-store.js';
export {
  assertOptionName,
  formatOptionValue,
  type OptionSource,
  parseOptionValue,
} from './option-values.js';
export {
  isOptionName,
  LEASE_HEARTBEAT_RATIO,
  OPTION_NAMES,
  OPTIONS,
  type OptionDefinition,
  type OptionName,
  type OptionScope,
  type OptionUnit,
  type OptionValue,
} from './options.js';
export {
  AIIDA_CONFIG_FILE_NAME,
  CONFIG_DIR_NAME,
  CONFIG_FILE_NAME,
  getAiidaConfigFilePath,
  getConfigDir,
  getConfigFilePath,
  getDaemonDir,
  getDaemonLogDir,
  getHostname,
  getProfileDaemonDir,
  getStorageDir,
  HOSTNAME_ENV,
  type ProfileLocation,
  resolveAiidaPath,
  resolveConfigDirFromList,
} from './paths.js';
export {
  assertValidProfileName,
  PROFILE_NAME_PATTERN,
  profileNameProblem,
} from './profile-name.js';
export {
  type CreateProfileInput,
  createProfile,
  deleteProfile,
  describeStorage,
  getDefaultProfileName,
  getProfile,
  listProfiles,
  PROCESS_CONTROL_BACKENDS,
  type ProcessControlBackend,
  type Profile,
  type PsqlStorageConfig,
  type StorageSettings,
  setDefaultProfile,
  setProcessControlBackend,
} from './profiles.js';
