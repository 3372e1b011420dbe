// The main job, `aiida demo`, through the built bin: a fresh profile in a folder of its own, a
// daemon of 2 workers, calculations and workflows, a summary, the daemon stopped, exit code 0.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getProfile } from '@aiida/config';
import { sqliteFilepath } from '../../../tests/support/test-profile.js';
import { CliSandbox, collect, shown } from './cli.js';

describe('aiida demo', () => {
  let sandbox: CliSandbox;
  let demoPath: string;

  beforeAll(() => {
    sandbox = new CliSandbox('aiida-cli-demo-');
    demoPath = mkdtempSync(join(tmpdir(), 'aiida-cli-demo-path-'));
  });
  afterAll(async () => {
    await sandbox.cleanUp();
    rmSync(demoPath, { recursive: true, force: true });
  });

  it('runs calculations and workflows to the right results on a daemon of 2 workers, then stops it', async () => {
    const child = sandbox.spawn([
      'demo',
      '--calculations',
      '30',
      '--workflows',
      '6',
      '--sleep',
      '0.5',
      '--aiida-path',
      demoPath,
      '--keep',
    ]);
    const result = await collect(child, 240, ['demo']);
    expect(shown(result)).toContain('Success: The demo passed');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('Starting the daemon with 2 workers... OK');
    expect(result.stdout).toMatch(
      /^Report: Submitted 30 calculations \(core\.arithmetic\.add\) and 6 workflows \(core\.arithmetic\.multiply_add\)/m,
    );
    expect(result.stdout).toMatch(/^36\/36 done \[#{20}\] 0 failed/m);
    expect(result.stdout).toMatch(/^core\.arithmetic\.add\s+30\s+30\s+0\s+0\s+0$/m);
    expect(result.stdout).toMatch(/^core\.arithmetic\.multiply_add\s+6\s+6\s+0\s+0\s+0$/m);
    expect(result.stdout).toContain(
      'Processes run:   42 (36 submitted + 6 submitted by workflows)',
    );
    expect(result.stdout).toContain('Results checked: 36 of 36 correct');
    expect(result.stdout).toMatch(/Stopping the daemon\.\.\. OK\n/);
    expect(result.stderr).toBe('');

    // It used the folder it was given, left the profile there, and no daemon runs.
    const profile = getProfile(undefined, { aiidaPath: demoPath });
    expect(existsSync(sqliteFilepath(profile))).toBe(true);
    const demoSandboxStatus = await sandbox.run(['daemon', 'status', '--json'], {
      env: { AIIDA_PATH: demoPath },
    });
    expect(demoSandboxStatus.code).toBe(3);
    const deleted = await sandbox.run(['profile', 'delete', profile.name, '--delete-data', '-y'], {
      env: { AIIDA_PATH: demoPath },
    });
    expect(deleted.code).toBe(0);
  });
});
