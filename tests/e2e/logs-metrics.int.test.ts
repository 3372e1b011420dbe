// Acceptance (issue 14, logs and the daemon's metrics): with `logging.format json` every line of
// every daemon log file is a JSON object with level and time, and pk where a process is concerned;
// `logging.level warn` leaves no info line in any log file (the broker's lines included);
// `aiida daemon logshow` renders JSON lines as text; `daemon.metrics_port` serves /metrics that
// parse and list both workers.
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { getDaemonLogDir } from '@aiida/config';
import { waitFor } from '../support/wait-for.js';
import { type E2E, setupE2E, waitForTerminal, withLogs } from './helpers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = join(HERE, '../../packages/cli/dist/bin.js');

interface Family {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string>; value?: string }[];
}

/** The Prometheus text parser the web package's tests use (its devDependency). */
function parsePrometheus(text: string): Family[] {
  const require = createRequire(join(HERE, '../../packages/web/package.json'));
  const parse = require('parse-prometheus-text-format') as (text: string) => Family[];
  return parse(text);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

/** Every line of every log file of the daemon, with its file name. */
function logLines(e2e: E2E): { file: string; line: string }[] {
  const dir = getDaemonLogDir(e2e.tp.profile);
  const files = readdirSync(dir).sort();
  expect(files).toEqual(expect.arrayContaining(['supervisor.log', 'worker-0.log', 'worker-1.log']));
  return files.flatMap((file) =>
    readFileSync(join(dir, file), 'utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => ({ file, line })),
  );
}

/** Submits adds and one process that throws; waits for all of them to end. */
async function runSome(e2e: E2E): Promise<number> {
  const { engine } = e2e;
  const adds = await engine.submitMany(
    Array.from({ length: 20 }, (_, i) => ({ type: 'core.arithmetic.add', inputs: { x: i, y: 1 } })),
  );
  const throws = await engine.submit('test.throws', { message: 'deliberate failure 14' });
  await waitForTerminal(engine, adds.length + 1, {
    timeout: 60,
    interval: 0.25,
    what: 'the adds and the throwing process to end',
  });
  expect((await engine.getProcess(throws.pk))?.state).toBe('excepted');
  return throws.pk;
}

describe('logging.format json, debug level, and daemon.metrics_port', () => {
  let e2e: E2E;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    e2e = await setupE2E({
      name: 'logs-json',
      options: { 'logging.format': 'json', 'logging.level': 'debug', 'daemon.metrics_port': port },
    });
  });
  afterAll(async () => {
    await e2e?.cleanup();
  });

  test('every log line is JSON with level, time and pk; logshow renders them; /metrics lists both workers', async () => {
    await withLogs(e2e, async () => {
      const { client } = e2e;
      await client.startDaemon({ numberWorkers: 2 });
      const excepted = await runSome(e2e);

      // /metrics from the supervisor: parses, both workers, the counters of this run.
      const status = await client.getStatus();
      const pids = status.workers.map((w) => String(w.pid)).sort();
      expect(pids).toHaveLength(2);
      const families = await waitFor(
        async () => {
          const response = await fetch(`http://127.0.0.1:${port}/metrics`);
          expect(response.status).toBe(200);
          expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
          const parsed = parsePrometheus(await response.text());
          const ended = parsed.find((f) => f.name === 'aiida_daemon_processes_ended_total');
          const value = (state: string) =>
            Number(ended?.metrics.find((m) => m.labels?.state === state)?.value ?? 0);
          // Heartbeats carry the counters: wait for the one after the last process ended.
          if (value('finished') < 20 || value('excepted') < 1) throw new Error('not counted yet');
          return parsed;
        },
        { timeout: 10, interval: 0.25, what: 'the counters of the run in /metrics' },
      );
      const byName = new Map(families.map((f) => [f.name, f]));
      const memory = byName.get('aiida_worker_memory_bytes');
      expect(memory?.type).toBe('GAUGE');
      expect(memory?.metrics.map((m) => m.labels?.pid).sort()).toEqual(pids);
      expect(
        byName
          .get('aiida_worker_slots_total')
          ?.metrics.map((m) => m.labels?.worker)
          .sort(),
      ).toEqual(['0', '1']);
      expect(byName.get('aiida_daemon_workers')?.metrics).toEqual([
        expect.objectContaining({ labels: { state: 'ready' }, value: '2' }),
      ]);
      const claims = Number(byName.get('aiida_daemon_claims_total')?.metrics[0]?.value);
      expect(byName.get('aiida_daemon_claims_total')?.type).toBe('COUNTER');
      expect(claims).toBeGreaterThanOrEqual(21);
      expect(byName.has('aiida_daemon_lease_losses_total')).toBe(true);
      expect(byName.has('aiida_daemon_reconciler_redispatches_total')).toBe(true);
      expect((await fetch(`http://127.0.0.1:${port}/other`)).status).toBe(404);

      // A worker killed and revived: its counts stay in the totals (counters never go down).
      const victim = status.workers[0]?.pid as number;
      process.kill(victim, 'SIGKILL');
      const after = await waitFor(
        async () => {
          const parsed = parsePrometheus(
            await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(),
          );
          const ready = parsed.find((f) => f.name === 'aiida_daemon_workers')?.metrics;
          const revived = parsed
            .find((f) => f.name === 'aiida_worker_memory_bytes')
            ?.metrics.map((m) => m.labels?.pid);
          return (
            ready?.length === 1 &&
            ready[0]?.labels?.state === 'ready' &&
            ready[0]?.value === '2' &&
            revived?.length === 2 &&
            !revived.includes(String(victim)) &&
            parsed
          );
        },
        { timeout: 20, interval: 0.25, what: 'the killed worker to be revived in /metrics' },
      );
      const total = (list: Family[], name: string) =>
        list
          .find((f) => f.name === name)
          ?.metrics.reduce((sum, m) => sum + Number(m.value ?? 0), 0) ?? 0;
      expect(total(after, 'aiida_daemon_claims_total')).toBe(claims);
      expect(total(after, 'aiida_daemon_processes_ended_total')).toBe(
        total(families, 'aiida_daemon_processes_ended_total'),
      );
      expect(
        Number(
          after
            .find((f) => f.name === 'aiida_worker_restarts')
            ?.metrics.find((m) => m.labels?.worker === '0')?.value,
        ),
      ).toBe(1);

      await client.stopDaemon();

      // Every line of every log file: one JSON object with level and time; pk where a process is.
      const lines = logLines(e2e);
      const bad: string[] = [];
      let withPk = 0;
      let aboutExcepted = 0;
      for (const { file, line } of lines) {
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          bad.push(`${file}: not JSON: ${line}`);
          continue;
        }
        if (typeof entry.level !== 'string' || typeof entry.time !== 'string') {
          bad.push(`${file}: no level or time: ${line}`);
        } else if (Number.isNaN(Date.parse(entry.time))) bad.push(`${file}: bad time: ${line}`);
        const about = /\bprocess (\d+)\b/.exec(String(entry.msg ?? ''));
        if (about) {
          if (entry.pk !== Number(about[1])) bad.push(`${file}: no pk: ${line}`);
          else withPk++;
          if (entry.pk === excepted) aboutExcepted++;
        }
      }
      expect(bad).toEqual([]);
      expect(lines.length).toBeGreaterThan(20);
      // Debug level: each process's end is logged, with its pk (the excepted one too).
      expect(withPk).toBeGreaterThanOrEqual(21);
      expect(aboutExcepted).toBeGreaterThanOrEqual(1);
      // The worker lines carry the worker's id.
      const workerLines = lines.filter((l) => l.file.startsWith('worker-'));
      expect(workerLines.some((l) => /"worker":"[^"]+:\d+:/.test(l.line))).toBe(true);

      // logshow renders them as text lines: the log of a worker that ended a process (on
      // core.store one worker may have claimed them all).
      const ranOne = workerLines.find((l) => /"msg":"process \d+: finished"/.test(l.line));
      expect(ranOne).toBeDefined();
      const workerIndex = /^worker-(\d+)\.log/.exec(ranOne!.file)![1]!;
      const env = { ...process.env, AIIDA_PATH: e2e.tp.aiidaPath };
      const shown = await promisify(execFile)(
        process.execPath,
        [CLI, 'daemon', 'logshow', '--worker', workerIndex, '-n', '1000'],
        { env },
      );
      const rendered = shown.stdout.split('\n').filter((l) => /^\d{4}-\d\d-\d\dT/.test(l));
      expect(rendered.length).toBeGreaterThan(5);
      for (const line of rendered) {
        expect(line).toMatch(/^\S+Z (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) /);
        expect(line.startsWith('{')).toBe(false);
      }
      expect(shown.stdout).toMatch(/DEBUG process \d+: finished \{.*"pk":\d+/);
      const raw = await promisify(execFile)(
        process.execPath,
        [CLI, 'daemon', 'logshow', '--raw', '-n', '3'],
        { env },
      );
      expect(raw.stdout.split('\n').filter((l) => l.startsWith('{')).length).toBe(3);
    });
  }, 120_000);
});

describe('logging.level warn', () => {
  let e2e: E2E;
  beforeAll(async () => {
    e2e = await setupE2E({ name: 'logs-warn', options: { 'logging.level': 'warn' } });
  });
  afterAll(async () => {
    await e2e?.cleanup();
  });

  test('no info line in any log file: supervisor, workers, broker', async () => {
    await withLogs(e2e, async () => {
      await e2e.client.startDaemon({ numberWorkers: 2 });
      await runSome(e2e);
      await e2e.client.stopDaemon();
      const lines = logLines(e2e);
      // Text format: the supervisor's lines are `<time> LEVEL message`; a worker's own lines
      // (the broker's included) are `level: message`, info and debug on stdout.
      const info = lines.filter(
        ({ line }) =>
          /^\S+Z (INFO|DEBUG) /.test(line) ||
          / stdout\| /.test(line) ||
          / (info|debug): /.test(line) ||
          / supervisor: (started|ready|exited)/.test(line),
      );
      expect(info).toEqual([]);
    });
  }, 120_000);
});
