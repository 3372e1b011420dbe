import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A throwaway AIIDA_PATH for one test; `remove()` deletes it. */
export interface TempAiidaPath {
  aiidaPath: string;
  configDir: string;
  configFile: string;
  /** Raw bytes of our config file (aiida-ts.json). */
  bytes(): Buffer;
  /** Names in the config folder (to see leftover temp or lock files). */
  entries(): string[];
  remove(): void;
}

export function makeTempAiidaPath(): TempAiidaPath {
  const aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-config-test-'));
  const configDir = join(aiidaPath, '.aiida');
  const configFile = join(configDir, 'aiida-ts.json');
  return {
    aiidaPath,
    configDir,
    configFile,
    bytes: () => readFileSync(configFile),
    entries: () => readdirSync(configDir).sort(),
    remove: () => rmSync(aiidaPath, { recursive: true, force: true }),
  };
}
