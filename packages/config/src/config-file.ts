import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import lockfile from 'proper-lockfile';
import {
  CONFIG_OLDEST_COMPATIBLE_VERSION,
  CONFIG_VERSION,
  type ConfigFile,
  configFileSchema,
  emptyConfig,
} from './config-schema.js';
import { ConfigError, ConfigErrorCodes } from './errors.js';
import { formatProblems, zodIssuesToProblems } from './format-issues.js';
import { CONFIG_MIGRATIONS, type ConfigMigration, migrateConfigData } from './migrations.js';
import { getConfigDir, getConfigFilePath } from './paths.js';

/** Where to find the config file. */
export interface ConfigLocationOptions {
  /** `AIIDA_PATH` to use instead of the environment variable / home directory. */
  aiidaPath?: string;
}

/** Tuning of the write lock; the defaults suit interactive use and tests alike. */
export interface ConfigLockOptions {
  /** How long a writer waits for the lock before failing, in seconds. @default 30 */
  lockTimeout?: number;
  /** Age after which a lock left by a crashed writer is broken, in seconds. @default 10 */
  staleTimeout?: number;
}

/** Options of {@link readConfig}. */
export interface ReadConfigOptions extends ConfigLocationOptions {
  /** Migrations to apply (tests inject their own). @default CONFIG_MIGRATIONS */
  migrations?: readonly ConfigMigration[];
}

const FILE_MODE = 0o600;
const DIR_MODE = 0o700;

/**
 * Reads, migrates (in memory) and validates our config file, `aiida-ts.json`. A missing file is an empty config.
 * Never writes, truncates or repairs the file: a bad file is a {@link ConfigError} naming the
 * file, the JSON path and what was expected.
 */
export function readConfig(opts: ReadConfigOptions = {}): ConfigFile {
  return readConfigAt(getConfigFilePath(opts.aiidaPath), opts.migrations);
}

function readConfigAt(
  filePath: string,
  migrations: readonly ConfigMigration[] = CONFIG_MIGRATIONS,
): ConfigFile {
  let text: string;
  try {
    text = readFileSync(filePath, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return emptyConfig();
    throw new ConfigError(
      ConfigErrorCodes.configUnreadable,
      `Cannot read the config file ${filePath}: ${(error as Error).message}. Check that it is a readable file.`,
      { cause: error, filePath },
    );
  }
  return parseConfigText(text, filePath, migrations);
}

/**
 * Parses the text of a config file the way {@link readConfig} does; `filePath` is only used in
 * error messages.
 */
export function parseConfigText(
  text: string,
  filePath: string,
  migrations: readonly ConfigMigration[] = CONFIG_MIGRATIONS,
): ConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `The config file ${filePath} is not valid JSON: ${(error as Error).message}. ` +
        'Fix it by hand; it was left unchanged.',
      { cause: error, filePath, jsonPaths: [''] },
    );
  }
  const migrated = migrateConfigData(raw, migrations, CONFIG_VERSION);
  if (migrated.kind === 'too_new') {
    throw new ConfigError(
      ConfigErrorCodes.configVersionUnsupported,
      `The config file ${filePath} has version ${migrated.fileVersion}, newer than version ` +
        `${CONFIG_VERSION} that this @aiida/config understands. Upgrade @aiida/config (and the ` +
        'tools that use it), or point AIIDA_PATH at another folder; the file was left unchanged.',
      { filePath, jsonPaths: ['CONFIG_VERSION.CURRENT'] },
    );
  }
  if (migrated.kind === 'no_path') {
    throw new ConfigError(
      ConfigErrorCodes.configVersionUnsupported,
      `The config file ${filePath} has version ${migrated.fileVersion}, which this @aiida/config ` +
        `can't migrate to version ${CONFIG_VERSION}. The file was left unchanged.`,
      { filePath, jsonPaths: ['CONFIG_VERSION.CURRENT'] },
    );
  }
  const parsed = configFileSchema.safeParse(migrated.data, { reportInput: true });
  if (!parsed.success) {
    const problems = zodIssuesToProblems(parsed.error.issues);
    throw new ConfigError(
      ConfigErrorCodes.configInvalid,
      `The config file ${filePath} is invalid:\n${formatProblems(problems)}\n` +
        'Fix it by hand; it was left unchanged.',
      { cause: parsed.error, filePath, jsonPaths: problems.map((p) => p.path) },
    );
  }
  return parsed.data;
}

/**
 * Changes our config file (`aiida-ts.json`, never AiiDA's `config.json`) safely: takes the write
 * lock, re-reads the file inside it (so changes of concurrent writers are kept), lets `mutate` change the config in place, validates the result
 * and replaces the file atomically (temporary file in the same folder, fsync, rename). Creates
 * the folder (0700) and the file (0600) on first write. When `mutate` changes nothing, nothing
 * is written. Returns what `mutate` returned.
 */
export function updateConfig<T>(
  mutate: (config: ConfigFile) => T,
  opts: ConfigLocationOptions & ConfigLockOptions = {},
): T {
  const dir = getConfigDir(opts.aiidaPath);
  const filePath = getConfigFilePath(opts.aiidaPath);
  ensureConfigDir(dir, filePath);
  const release = acquireLock(filePath, opts);
  try {
    const config = readConfigAt(filePath);
    const before = JSON.stringify(config);
    const result = mutate(config);
    if (JSON.stringify(config) === before) return result;
    config.CONFIG_VERSION = {
      CURRENT: CONFIG_VERSION,
      OLDEST_COMPATIBLE: CONFIG_OLDEST_COMPATIBLE_VERSION,
    };
    const checked = configFileSchema.safeParse(config, { reportInput: true });
    if (!checked.success) {
      // A bug in a caller, not in the file: the file is left as it was.
      throw new ConfigError(
        ConfigErrorCodes.configInvalid,
        `Refusing to write an invalid config to ${filePath}:\n` +
          formatProblems(zodIssuesToProblems(checked.error.issues)),
        { cause: checked.error, filePath },
      );
    }
    writeFileAtomic(filePath, `${JSON.stringify(checked.data, null, 4)}\n`);
    return result;
  } finally {
    release();
  }
}

function ensureConfigDir(dir: string, filePath: string): void {
  try {
    const created = mkdirSync(dir, { recursive: true, mode: DIR_MODE });
    // The umask may have narrowed the mode; a folder we created gets exactly 0700.
    if (created !== undefined) chmodSync(dir, DIR_MODE);
    if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a folder`);
  } catch (error) {
    throw new ConfigError(
      ConfigErrorCodes.configUnwritable,
      `Cannot create the config folder ${dir}: ${(error as Error).message}.`,
      { cause: error, filePath },
    );
  }
}

function acquireLock(filePath: string, opts: ConfigLockOptions): () => void {
  const lockTimeoutMs = (opts.lockTimeout ?? 30) * 1000;
  const staleMs = Math.max((opts.staleTimeout ?? 10) * 1000, 2000);
  const lockOptions = {
    realpath: false,
    stale: staleMs,
    lockfilePath: `${filePath}.lock`,
    // The lock is only held inside one synchronous call, so its refresh timer never runs
    // while held; nothing to do if it was reported compromised afterwards.
    onCompromised: () => {},
  };
  const deadline = Date.now() + lockTimeoutMs;
  let wait = 5;
  for (;;) {
    try {
      return lockfile.lockSync(filePath, lockOptions);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') {
        throw new ConfigError(
          ConfigErrorCodes.configUnwritable,
          `Cannot lock the config file ${filePath}: ${(error as Error).message}.`,
          { cause: error, filePath },
        );
      }
      if (Date.now() >= deadline) {
        throw new ConfigError(
          ConfigErrorCodes.configLocked,
          `Another process has held the lock on ${filePath} (${filePath}.lock) for more than ` +
            `${lockTimeoutMs / 1000} s. Try again; if no other process is writing the config, ` +
            'remove the lock folder.',
          { cause: error, filePath },
        );
      }
      sleepSync(wait + Math.random() * wait);
      wait = Math.min(wait * 2, 100);
    }
  }
}

function writeFileAtomic(filePath: string, content: string): void {
  const dir = dirname(filePath);
  const tmpPath = join(
    dir,
    `.${basename(filePath)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`,
  );
  try {
    const fd = openSync(tmpPath, 'wx', FILE_MODE);
    try {
      const bytes = Buffer.from(content, 'utf8');
      let written = 0;
      while (written < bytes.length) {
        written += writeSync(fd, bytes, written, bytes.length - written);
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    chmodSync(tmpPath, FILE_MODE);
    renameSync(tmpPath, filePath);
    fsyncDir(dir);
  } catch (error) {
    rmSync(tmpPath, { force: true });
    throw new ConfigError(
      ConfigErrorCodes.configUnwritable,
      `Cannot write the config file ${filePath}: ${(error as Error).message}. It was left unchanged.`,
      { cause: error, filePath },
    );
  }
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Not every platform lets a folder be fsynced; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

function sleepSync(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}
