// openEngine's default dispatcher: the profile's RabbitMQ broker, connected on first use.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RabbitBroker } from '@aiida/broker';
import { createProfile } from '@aiida/config';
import { openEngine, silentLogger } from '@aiida/engine';

describe("openEngine's default broker", () => {
  let aiidaPath: string;

  beforeAll(() => {
    aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-engine-broker-'));
  });
  afterAll(() => rmSync(aiidaPath, { recursive: true, force: true }));

  it('publishes the continue task of a submitted process to the profile queue', async () => {
    const profile = createProfile({ name: 'dispatch', pluginBaseDir: aiidaPath }, { aiidaPath });
    const engine = await openEngine(profile, { logger: silentLogger });
    const broker = new RabbitBroker({ profile, logger: { info() {}, warn() {}, error() {} } });
    try {
      const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
      expect((await engine.getProcess(pk)).dispatchedAt).not.toBeNull();
      await broker.connect({ timeout: 5 });
      expect(await broker.queueCounts()).toMatchObject({ tasks: 1 });
    } finally {
      await engine.close();
      await broker.deleteTopology().catch(() => {});
      await broker.close();
    }
  });

  it('with the broker unreachable, submit still commits the process, undispatched', async () => {
    const profile = createProfile(
      { name: 'nobroker', pluginBaseDir: aiidaPath, broker: { port: 1 } },
      { aiidaPath },
    );
    const engine = await openEngine(profile, { logger: silentLogger });
    try {
      const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 2 });
      const row = await engine.getProcess(pk);
      expect(row).toMatchObject({ state: 'created', dispatchedAt: null });
    } finally {
      await engine.close();
    }
  });
});
