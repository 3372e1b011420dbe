// `aiida web` of a profile with two hosts (issue 14): two daemons of one PostgreSQL profile as
// hosts alpha and beta (AIIDA_HOSTNAME), the dashboard served on alpha. Its JSON API, its event
// stream and /metrics show alpha's daemon in full (from its control socket) and both hosts'
// workers from the store's registry; when beta dies, its workers show stale there too.
import type { ChildProcess } from 'node:child_process';
import { createTestDatabase, type TestDatabase } from '../../../tests/support/postgres.js';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import { CliSandbox, collect, freePort, waitForOutput } from './cli.js';
import {
  aiidaOn,
  HOSTS_PROFILE,
  makeHostsProfile,
  simulatedHost,
  startHostDaemon,
} from './hosts.js';

interface DaemonJson {
  running: boolean;
  status?: { hostname: string; pid: number; workers: { pid: number | null; cpu: number | null }[] };
  cluster: {
    thisHost: string;
    workers: number;
    staleWorkers: number;
    hosts: {
      hostname: string;
      thisHost: boolean;
      liveWorkers: number;
      slotsTotal: number;
      workers: { pid: number; stale: boolean; lastHeartbeatAt: string }[];
    }[];
  } | null;
  clusterMessage?: unknown;
}

let db: TestDatabase;
let sandbox: CliSandbox | undefined;
/** Supervisors, workers and `aiida web` started here, stopped by pid whatever happened. */
let started: number[] = [];
let web: ChildProcess | undefined;

beforeEach(async () => {
  db = await createTestDatabase();
  started = [];
});

afterEach(async () => {
  if (web?.pid && isAlive(web.pid)) await stopPid(web.pid, 5);
  await Promise.all(started.filter(isAlive).map((pid) => stopPid(pid, 10)));
  await sandbox?.cleanUp();
  await db.drop();
});

/** The value of the sample `name{labels}` in a Prometheus text, or undefined without one. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The first `daemon` event of the stream at `url` that `accept` takes, read as the page reads it. */
async function daemonEvent(
  url: string,
  accept: (view: DaemonJson) => boolean,
): Promise<DaemonJson> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 20_000);
  try {
    const response = await fetch(url, { signal: abort.signal });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the event stream ended');
      buffer += value;
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = /^data: (.*)$/m.exec(frame)?.[1];
        if (/^event: daemon$/m.test(frame) && data) {
          const view = JSON.parse(data) as DaemonJson;
          if (accept(view)) return view;
        }
        end = buffer.indexOf('\n\n');
      }
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

test('the dashboard on alpha shows its daemon in full and both hosts from the registry, in /api/daemon, the event stream and /metrics; a dead beta shows stale', async () => {
  sandbox = new CliSandbox('aiida-web-hosts-');
  makeHostsProfile(sandbox, db);
  const alpha = simulatedHost('alpha', sandbox);
  const beta = simulatedHost('beta', sandbox);
  const a = await startHostDaemon(alpha, started);
  const b = await startHostDaemon(beta, started);

  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  web = sandbox.spawn(['-p', HOSTS_PROFILE, 'web', '--port', String(port)], alpha.env);
  const done = collect(web, 200, ['web']);
  await waitForOutput(web, `at ${base}/`);

  const daemonJson = async () => {
    const response = await fetch(`${base}/api/daemon`);
    expect(response.status).toBe(200);
    return (await response.json()) as DaemonJson;
  };
  const both = await waitFor(
    async () => {
      const view = await daemonJson();
      return view.running && view.cluster?.workers === 4 ? view : false;
    },
    { timeout: 20, what: "alpha's daemon and 4 registered workers in /api/daemon" },
  );
  // This host's daemon in full, from its control socket.
  expect(both.status!.hostname).toBe('alpha');
  expect(both.status!.pid).toBe(a.pid);
  expect(both.status!.workers.map((w) => w.pid).sort()).toEqual([...a.workerPids].sort());
  // Every host from the registry, this one flagged.
  const cluster = both.cluster!;
  expect(cluster.thisHost).toBe('alpha');
  expect(cluster.staleWorkers).toBe(0);
  expect(cluster.hosts.map((h) => [h.hostname, h.thisHost, h.liveWorkers])).toEqual([
    ['alpha', true, 2],
    ['beta', false, 2],
  ]);
  expect(cluster.hosts[1]!.workers.map((w) => w.pid).sort()).toEqual([...b.workerPids].sort());
  expect(cluster.hosts[1]!.slotsTotal).toBeGreaterThan(0);

  // The page's live updates carry the same view.
  const live = await daemonEvent(`${base}/api/events`, (v) => v.cluster?.workers === 4);
  expect(live.status?.hostname).toBe('alpha');
  expect(live.cluster!.hosts.map((h) => h.hostname)).toEqual(['alpha', 'beta']);

  // /metrics: this host's workers from its daemon, every host's from the registry.
  const metrics = await (await fetch(`${base}/metrics`)).text();
  expect(metrics).toContain('# TYPE aiida_cluster_workers gauge');
  expect(sample(metrics, 'aiida_cluster_workers', 'host="alpha",state="live"')).toBe(2);
  expect(sample(metrics, 'aiida_cluster_workers', 'host="beta",state="live"')).toBe(2);
  expect(sample(metrics, 'aiida_cluster_workers', 'host="beta",state="stale"')).toBe(0);
  expect(sample(metrics, 'aiida_cluster_slots_total', 'host="beta"')).toBe(
    cluster.hosts[1]!.slotsTotal,
  );
  expect(metrics).toMatch(/^aiida_cluster_registry_up 1$/m);
  expect(metrics).toMatch(/^aiida_daemon_up 1$/m);
  expect(sample(metrics, 'aiida_daemon_workers', 'state="ready"')).toBe(2);

  // beta dies at once (no clean exit, its rows stay): after daemon.lease_timeout its workers are
  // stale in the dashboard and in /metrics; alpha's daemon is untouched.
  for (const pid of [b.pid, ...b.workerPids]) process.kill(pid, 'SIGSTOP');
  for (const pid of [b.pid, ...b.workerPids]) process.kill(pid, 'SIGKILL');
  const stale = await waitFor(
    async () => {
      const view = await daemonJson();
      return view.cluster?.staleWorkers === 2 ? view : false;
    },
    { timeout: 30, what: "beta's 2 workers to show stale in /api/daemon" },
  );
  expect(stale.running).toBe(true);
  expect(stale.status!.pid).toBe(a.pid);
  expect(stale.cluster!.hosts.map((h) => [h.hostname, h.liveWorkers, h.workers.length])).toEqual([
    ['alpha', 2, 2],
    ['beta', 0, 2],
  ]);
  expect(stale.cluster!.hosts[1]!.workers.every((w) => w.stale)).toBe(true);
  const after = await (await fetch(`${base}/metrics`)).text();
  expect(sample(after, 'aiida_cluster_workers', 'host="beta",state="stale"')).toBe(2);
  expect(sample(after, 'aiida_cluster_workers', 'host="beta",state="live"')).toBe(0);
  expect(sample(after, 'aiida_cluster_workers', 'host="alpha",state="live"')).toBe(2);
  expect(sample(after, 'aiida_cluster_slots_total', 'host="beta"')).toBe(0);

  web.kill('SIGINT');
  expect((await done).code).toBe(0);
  const stop = await aiidaOn(alpha, ['daemon', 'stop']);
  expect(stop.code).toBe(0);
}, 200_000);
