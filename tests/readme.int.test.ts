// The README's two commands, run as a newcomer would, on a fresh clone of this repository's
// committed HEAD: `bash scripts/demo.sh` (install, build, the main job) and `bash .ci/run`
// (install, build, lint, tests). The second is narrowed to the unit layer with AIIDA_TEST_LAYERS:
// run in full it would start this very suite again inside itself.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const repoRoot = join(import.meta.dirname, '..');

function runScript(
  cwd: string,
  command: string[],
  env: NodeJS.ProcessEnv,
  timeoutSeconds: number,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', command, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
    });
    child.stderr.on('data', (chunk) => {
      output += chunk;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${command.join(' ')} ran over ${timeoutSeconds} s; output:\n${output.slice(-4000)}`,
        ),
      );
    }, timeoutSeconds * 1000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("the README's two commands on a fresh clone", () => {
  let clone: string;

  beforeAll(() => {
    clone = mkdtempSync(join(tmpdir(), 'aiida-readme-clone-'));
    const cloned = spawnSync('git', ['clone', '-q', repoRoot, clone], { encoding: 'utf8' });
    if (cloned.status !== 0) throw new Error(`git clone failed: ${cloned.stderr}`);
  });
  afterAll(() => {
    rmSync(clone, { recursive: true, force: true });
  });

  it('the README names exactly these two commands in its quick start', () => {
    const readme = readFileSync(join(clone, 'README.md'), 'utf8');
    const quickStart = readme.slice(readme.indexOf('## Quick start'));
    const block = quickStart.slice(
      quickStart.indexOf('```sh') + 5,
      quickStart.indexOf('```', quickStart.indexOf('```sh') + 5),
    );
    const commands = block
      .split('\n')
      .filter((line) => line.trim() !== '' && !line.trim().startsWith('#'));
    expect(commands).toEqual(['bash scripts/demo.sh', 'bash .ci/run']);
  });

  it('bash scripts/demo.sh installs, builds and runs the main job to a correct summary', async () => {
    const result = await runScript(
      clone,
      ['scripts/demo.sh', '--calculations', '20', '--workflows', '4', '--sleep', '0.2'],
      process.env,
      600,
    );
    expect(result.output).toContain('Starting the daemon with 2 workers... OK');
    expect(result.output).toContain('Results checked: 24 of 24 correct');
    expect(result.output).toContain('Stopping the daemon... OK');
    expect(result.code).toBe(0);
  }, 620_000);

  it('bash .ci/run installs, builds, lints and runs the tests, ending in one totals line', async () => {
    const result = await runScript(
      clone,
      ['.ci/run'],
      { ...process.env, CI: 'true', AIIDA_TEST_LAYERS: 'unit' },
      600,
    );
    const lines = result.output.trimEnd().split('\n');
    const last = lines[lines.length - 1] ?? '';
    expect(last).toMatch(/^\d+ passed, 0 failed$/);
    expect(Number(last.split(' ')[0])).toBeGreaterThan(100);
    expect(result.code).toBe(0);
  }, 620_000);
});
