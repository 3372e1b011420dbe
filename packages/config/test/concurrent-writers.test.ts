import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createProfile, getOption } from '@aiida/config';
import { makeTempAiidaPath, type TempAiidaPath } from './temp-aiida-path.js';

// The writers are real processes running the built package, so build it first (`pnpm build`).
const packageDir = fileURLToPath(new URL('..', import.meta.url));
const distEntry = join(packageDir, 'dist', 'index.js');
const WRITES_PER_PROCESS = 20;

const CHILD_SCRIPT = `
import { existsSync } from 'node:fs';
import { setOption } from ${JSON.stringify(pathToFileURL(distEntry).href)};
const [aiidaPath, option, goFile] = process.argv.slice(2);
process.stdout.write('ready\\n');
const deadline = Date.now() + 20_000;
while (!existsSync(goFile)) {
  if (Date.now() > deadline) throw new Error('no go signal within 20 s');
  await new Promise((r) => setTimeout(r, 2));
}
const start = Date.now();
for (let k = 0; k < ${WRITES_PER_PROCESS}; k++) {
  setOption(option, k + 2, { aiidaPath, profile: 'p' + String(k).padStart(2, '0') });
}
process.stdout.write(JSON.stringify({ start, end: Date.now() }) + '\\n');
`;

let tmp: TempAiidaPath;
const children: ChildProcess[] = [];

beforeEach(() => {
  tmp = makeTempAiidaPath();
});
afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL');
    }
  }
  tmp.remove();
});

function assertFreshBuild(): void {
  if (!existsSync(distEntry)) {
    throw new Error(`${distEntry} is missing: run \`pnpm build\` in packages/config first.`);
  }
  const built = statSync(distEntry).mtimeMs;
  const srcDir = join(packageDir, 'src');
  const stale = readdirSync(srcDir).filter((f) => statSync(join(srcDir, f)).mtimeMs > built);
  if (stale.length > 0) {
    throw new Error(`dist is older than src (${stale.join(', ')}): run \`pnpm build\` first.`);
  }
}

interface Writer {
  child: ChildProcess;
  ready: Promise<void>;
  done: Promise<{ start: number; end: number }>;
}

function startWriter(script: string, option: string, goFile: string): Writer {
  const child = spawn(process.execPath, [script, tmp.aiidaPath, option, goFile], {
    env: { ...process.env, AIIDA_PATH: tmp.aiidaPath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk) => {
    stderr += chunk;
  });
  let onReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  child.stdout?.on('data', (chunk) => {
    stdout += chunk;
    if (stdout.startsWith('ready\n')) onReady();
  });
  const done = new Promise<{ start: number; end: number }>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`writer ${child.pid} did not finish within 30 s; stderr: ${stderr}`));
    }, 30_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`writer exited with ${code ?? signal}; stderr:\n${stderr}`));
        return;
      }
      const last = stdout.trim().split('\n').pop() ?? '';
      resolve(JSON.parse(last));
    });
  });
  // An early exit must not leave `ready` pending forever.
  done.then(onReady, onReady);
  return { child, ready, done };
}

test('two processes writing 20 options each at the same time lose none', async () => {
  assertFreshBuild();
  const at = { aiidaPath: tmp.aiidaPath };
  for (let k = 0; k < WRITES_PER_PROCESS; k++) {
    createProfile({ name: `p${String(k).padStart(2, '0')}` }, at);
  }
  const script = join(tmp.aiidaPath, 'writer.mjs');
  writeFileSync(script, CHILD_SCRIPT);
  const goFile = join(tmp.aiidaPath, 'go');

  const a = startWriter(script, 'daemon.default_workers', goFile);
  const b = startWriter(script, 'engine.max_attempts', goFile);
  await Promise.all([a.ready, b.ready]);
  writeFileSync(goFile, '');
  const [spanA, spanB] = await Promise.all([a.done, b.done]);

  // The writers really overlapped in time, so the lock was contended.
  expect(Math.max(spanA.start, spanB.start)).toBeLessThan(Math.min(spanA.end, spanB.end));

  const lost: string[] = [];
  for (let k = 0; k < WRITES_PER_PROCESS; k++) {
    const profile = `p${String(k).padStart(2, '0')}`;
    if (getOption('daemon.default_workers', { ...at, profile }) !== k + 2) {
      lost.push(`${profile}/daemon.default_workers`);
    }
    if (getOption('engine.max_attempts', { ...at, profile }) !== k + 2) {
      lost.push(`${profile}/engine.max_attempts`);
    }
  }
  expect(lost).toEqual([]);
  expect(tmp.entries()).toEqual(['aiida-ts.json']);
  expect(statSync(tmp.configFile).mode & 0o777).toBe(0o600);
});
