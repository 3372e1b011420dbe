import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createProfile, setOption } from '@aiida/config';
import {
  EngineErrorCodes,
  type EngineLogger,
  loadPlugins,
  openEngine,
  ProcessRegistry,
  readEngineOptions,
} from '@aiida/engine';
import { FakeBroker, FakeWorker, openTestStore, tempDir, testEngine } from './helpers.js';

const GOOD_PLUGIN = `
export function register(registry, { calculation, z }) {
  registry.register(
    calculation({
      name: 'plug.double',
      inputs: z.object({ x: z.number() }),
      outputs: z.object({ doubled: z.number() }),
      run: async ({ x }) => ({ doubled: 2 * x }),
    }),
  );
}
`;

// A default export of definitions; the schemas only need safeParse.
const ARRAY_PLUGIN = `
const anything = { safeParse: (value) => ({ success: true, data: value }) };
export default [
  { kind: 'calculation', name: 'plug.echo', inputs: anything, outputs: anything, run: async (inputs) => inputs },
];
`;

const BROKEN_PLUGIN = `
throw new Error('this plugin is broken on purpose');
`;

function recordingLogger() {
  const errors: string[] = [];
  const logger: EngineLogger = {
    debug: () => {},
    info: () => {},
    warn: () => {},
    error: (message) => errors.push(message),
  };
  return { logger, errors };
}

describe('plugins', () => {
  let tmp: ReturnType<typeof tempDir>;

  beforeEach(() => {
    tmp = tempDir();
    mkdirSync(join(tmp.dir, 'node_modules', 'aiida-plug-pkg'), { recursive: true });
    writeFileSync(
      join(tmp.dir, 'node_modules', 'aiida-plug-pkg', 'package.json'),
      JSON.stringify({ name: 'aiida-plug-pkg', type: 'module', main: 'index.js' }),
    );
    writeFileSync(join(tmp.dir, 'node_modules', 'aiida-plug-pkg', 'index.js'), ARRAY_PLUGIN);
    writeFileSync(join(tmp.dir, 'good-plugin.mjs'), GOOD_PLUGIN);
    writeFileSync(join(tmp.dir, 'broken-plugin.mjs'), BROKEN_PLUGIN);
  });
  afterEach(() => tmp.remove());

  test('loads plugins by relative path and by package name, resolved from the base dir', async () => {
    const registry = new ProcessRegistry();
    const { logger, errors } = recordingLogger();
    const failures = await loadPlugins(
      registry,
      ['./good-plugin.mjs', 'aiida-plug-pkg'],
      tmp.dir,
      logger,
    );
    expect(failures).toEqual([]);
    expect(errors).toEqual([]);
    expect(registry.names()).toEqual(expect.arrayContaining(['plug.double', 'plug.echo']));
    const store = openTestStore(tmp.dir);
    const engine = testEngine(store, { registry });
    try {
      expect(await engine.run('plug.double', { x: 21 })).toEqual({ doubled: 42 });
      expect(await engine.run('plug.echo', { a: 1 })).toEqual({ a: 1 });
    } finally {
      await engine.close();
    }
  });

  test('a plugin that fails to import is reported and logged; the rest still loads', async () => {
    const registry = new ProcessRegistry();
    const { logger, errors } = recordingLogger();
    const failures = await loadPlugins(
      registry,
      ['./broken-plugin.mjs', 'no-such-plugin-package', './good-plugin.mjs'],
      tmp.dir,
      logger,
    );
    expect(failures.map((f) => f.spec)).toEqual(['./broken-plugin.mjs', 'no-such-plugin-package']);
    expect(failures[0]?.message).toContain('this plugin is broken on purpose');
    expect(failures[1]?.message).toMatch(/^resolve failed/);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toContain('./broken-plugin.mjs');
    expect(registry.has('plug.double')).toBe(true);
    expect(registry.pluginErrors).toHaveLength(2);

    // Submitting a type that is not known here names the failed plugins; nothing is stored.
    const store = openTestStore(tmp.dir);
    const engine = testEngine(store, { registry });
    try {
      await expect(engine.submit('broken.type', {})).rejects.toMatchObject({
        code: EngineErrorCodes.pluginImportFailed,
        message: expect.stringContaining('this plugin is broken on purpose'),
      });
      expect(await engine.listProcesses()).toEqual([]);
    } finally {
      await engine.close();
    }
  });

  test('a worker whose plugin failed: processes of its types end excepted with the import error', async () => {
    const store = openTestStore(tmp.dir);
    // The submitter has the plugin...
    const submitterRegistry = new ProcessRegistry();
    await loadPlugins(submitterRegistry, ['./good-plugin.mjs'], tmp.dir);
    const broker = new FakeBroker();
    const submitter = testEngine(store, { registry: submitterRegistry, broker });
    // ...the worker's copy of it is broken.
    const workerRegistry = new ProcessRegistry();
    await loadPlugins(workerRegistry, ['./broken-plugin.mjs'], tmp.dir, recordingLogger().logger);
    const worker = new FakeWorker(broker, {
      store,
      registry: workerRegistry,
      ownerId: 'w1',
      leaseTimeout: 5,
      maxAttempts: 3,
    });
    try {
      const { pk } = await submitter.submit('plug.double', { x: 1 });
      const row = await submitter.waitForProcess(pk, { timeout: 10 });
      expect(row.state).toBe('excepted');
      expect(row.exception).toContain('plugin_import_failed');
      expect(row.exception).toContain('this plugin is broken on purpose');
      // The worker runs on.
      const ok = await submitter.submit('core.arithmetic.add', { x: 1, y: 1 });
      expect((await submitter.waitForProcess(ok.pk, { timeout: 10 })).state).toBe('finished');
      await worker.idle();
    } finally {
      worker.stop();
      await submitter.close();
    }
  });

  test('openEngine reads engine.plugins and the lease options from the profile', async () => {
    const aiidaPath = join(tmp.dir, 'aiida');
    mkdirSync(aiidaPath);
    setOption('daemon.worker_heartbeat_interval', 2, { aiidaPath });
    const profile = createProfile(
      {
        name: 'plugtest',
        pluginBaseDir: tmp.dir,
        options: {
          'engine.plugins': ['./good-plugin.mjs'],
          'engine.max_attempts': 2,
          'daemon.lease_timeout': 7,
        },
      },
      { aiidaPath },
    );
    expect(readEngineOptions(profile)).toEqual({
      plugins: ['./good-plugin.mjs'],
      maxAttempts: 2,
      maxInputBytes: 4 * 1024 * 1024,
      leaseTimeout: 7,
      heartbeatInterval: 2,
    });
    const engine = await openEngine(profile, { logger: recordingLogger().logger });
    try {
      expect(engine.pluginErrors).toEqual([]);
      expect(await engine.run('plug.double', { x: 4 })).toEqual({ doubled: 8 });
      expect(profile.storage.backend).toBe('core.sqlite');
      if (profile.storage.backend === 'core.sqlite') {
        expect(engine.store.location).toBe(profile.storage.config.filepath);
      }
    } finally {
      await engine.close();
    }
  });
});
