// Issue 9, several hosts: two daemons of one PostgreSQL profile, as two hosts (AIIDA_HOSTNAME),
// first with an AIIDA_PATH each, then sharing one (a home folder on NFS). Their daemon files stay
// apart; `daemon status --all-hosts` lists 2 hosts x 2 workers from the store's registry; a killed
// host's workers show stale, from either host, and the other host's worker takes over the
// reconciler's election.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getDaemonDir } from '@aiida/config';
import { createTestDatabase, type TestDatabase } from '../../../tests/support/postgres.js';
import { isAlive, stopPid } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';
import { CliSandbox, shown } from './cli.js';
import {
  aiidaOn as aiida,
  copyConfig,
  type Host,
  makeHostsProfile,
  HOSTS_PROFILE as PROFILE,
  type StatusJson,
  simulatedHost,
  startHostDaemon,
} from './hosts.js';

interface ClusterJson {
  thisHost: string;
  staleAfter: number;
  backend: string;
  hosts: {
    hostname: string;
    thisHost: boolean;
    liveWorkers: number;
    workers: { pid: number; workerId: string; stale: boolean; slotsTotal: number }[];
  }[];
  workers: number;
  staleWorkers: number;
}

let db: TestDatabase;
let sandboxes: CliSandbox[] = [];
/** Supervisors and workers started here, stopped by pid at the end whatever happened. */
let started: number[] = [];

beforeEach(async () => {
  db = await createTestDatabase();
  sandboxes = [];
  started = [];
});

afterEach(async () => {
  await Promise.all(started.filter(isAlive).map((pid) => stopPid(pid, 10)));
  for (const sandbox of sandboxes) await sandbox.cleanUp();
  await db.drop();
});

async function clusterAsSeenBy(host: Host): Promise<{ code: number | null; json: ClusterJson }> {
  const result = await aiida(host, ['daemon', 'status', '--all-hosts', '--json']);
  try {
    return { code: result.code, json: JSON.parse(result.stdout) as ClusterJson };
  } catch {
    throw new Error(`daemon status --all-hosts --json printed no JSON\n${shown(result)}`);
  }
}

const startDaemon = (host: Host) => startHostDaemon(host, started);

/** Text of every worker log of a host's daemon of the profile. */
function workerLogs(profileIn: CliSandbox, hostname: string): string {
  const dir = join(
    getDaemonDir({ name: PROFILE, aiidaPath: profileIn.aiidaPath }, hostname),
    'log',
  );
  if (!existsSync(dir)) return '';
  return readdirSync(dir)
    .filter((f) => f.startsWith('worker-'))
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
}

const ELECTED = 'elected to run the reconciler';

test.each([
  ['an AIIDA_PATH each', false],
  ['one shared AIIDA_PATH', true],
])(
  'two hosts with %s: files apart, 2 hosts x 2 workers in --all-hosts, a killed host goes stale and the other takes over the reconciler',
  async (_layout, shared) => {
    const home1 = new CliSandbox('aiida-hosts-');
    sandboxes.push(home1);
    makeHostsProfile(home1, db);
    let home2 = home1;
    if (!shared) {
      home2 = new CliSandbox('aiida-hosts-');
      sandboxes.push(home2);
      copyConfig(home1, home2);
    }
    const alpha = simulatedHost('alpha', home1);
    const beta = simulatedHost('beta', home2);

    // Nothing runs yet: the registry is empty, and that is "not running" (exit 3).
    const empty = await clusterAsSeenBy(alpha);
    expect(empty.code).toBe(3);
    expect(empty.json).toMatchObject({ backend: 'core.psql', workers: 0, hosts: [] });

    // alpha starts first, so one of its workers wins the reconciler's election.
    const a = await startDaemon(alpha);
    await waitFor(() => workerLogs(home1, 'alpha').includes(ELECTED), {
      timeout: 30,
      what: "one of alpha's workers to be elected reconciler",
    });
    const b = await startDaemon(beta);

    // Each host's files are in its own folder, whatever the layout.
    const alphaDir = getDaemonDir({ name: PROFILE, aiidaPath: home1.aiidaPath }, 'alpha');
    const betaDir = getDaemonDir({ name: PROFILE, aiidaPath: home2.aiidaPath }, 'beta');
    const stateOf = (dir: string) =>
      JSON.parse(readFileSync(join(dir, 'daemon.json'), 'utf8')) as {
        pid: number;
        hostname: string;
        socketPath: string;
      };
    expect(stateOf(alphaDir)).toMatchObject({ pid: a.pid, hostname: 'alpha' });
    expect(stateOf(betaDir)).toMatchObject({ pid: b.pid, hostname: 'beta' });
    expect(stateOf(alphaDir).socketPath).not.toBe(stateOf(betaDir).socketPath);
    for (const dir of [alphaDir, betaDir]) {
      expect(readdirSync(join(dir, 'log')).sort()).toEqual([
        'supervisor.log',
        'worker-0.log',
        'worker-1.log',
      ]);
    }
    if (shared) {
      // One profile folder holding one folder per host, nothing of a host at its top.
      expect(readdirSync(join(alphaDir, '..')).sort()).toEqual(['alpha', 'beta']);
    }
    // Each host's `daemon status` talks to its own daemon.
    for (const [host, mine] of [
      [alpha, a],
      [beta, b],
    ] as const) {
      const status = JSON.parse(
        (await aiida(host, ['daemon', 'status', '--json'])).stdout,
      ) as StatusJson;
      expect(status.status?.pid).toBe(mine.pid);
    }
    // Only one worker of both hosts leads.
    expect(workerLogs(home2, 'beta')).not.toContain(ELECTED);

    // --all-hosts, from either host: 2 hosts x 2 workers, the registry's pids are the daemons'.
    for (const viewer of [alpha, beta]) {
      const { code, json } = await waitFor(
        async () => {
          const seen = await clusterAsSeenBy(viewer);
          return seen.json.workers === 4 ? seen : false;
        },
        { timeout: 20, what: `4 workers in the registry, as ${viewer.name} sees it` },
      );
      expect(code).toBe(0);
      expect(json.thisHost).toBe(viewer.name);
      expect(json.staleWorkers).toBe(0);
      expect(json.hosts.map((h) => [h.hostname, h.thisHost, h.liveWorkers])).toEqual([
        ['alpha', viewer === alpha, 2],
        ['beta', viewer === beta, 2],
      ]);
      expect(json.hosts[0]!.workers.map((w) => w.pid).sort()).toEqual([...a.workerPids].sort());
      expect(json.hosts[1]!.workers.map((w) => w.pid).sort()).toEqual([...b.workerPids].sort());
      expect(json.hosts[0]!.workers.every((w) => w.workerId.startsWith(`alpha:${w.pid}:`))).toBe(
        true,
      );
    }
    const table = await aiida(beta, ['daemon', 'status', '--all-hosts']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/this host: beta; 2 hosts, 4 live and 0 stale workers/);
    expect(table.stdout.split('\n').filter((l) => /^alpha\s.*live$/.test(l))).toHaveLength(2);
    expect(table.stdout.split('\n').filter((l) => /^beta\*\s.*live$/.test(l))).toHaveLength(2);

    // alpha dies at once (as a host that loses power): no clean exit, its rows stay.
    // All frozen first, so that no worker sees its supervisor go and drains (leaving the registry).
    for (const pid of [a.pid, ...a.workerPids]) process.kill(pid, 'SIGSTOP');
    for (const pid of [a.pid, ...a.workerPids]) process.kill(pid, 'SIGKILL');
    await waitFor(() => [a.pid, ...a.workerPids].every((pid) => !isAlive(pid)), {
      what: "alpha's daemon to be gone",
    });
    let lastSeen: ClusterJson | undefined;
    const stale = await waitFor(
      async () => {
        const seen = await clusterAsSeenBy(beta);
        lastSeen = seen.json;
        return seen.json.staleWorkers === 2 ? seen : false;
      },
      { timeout: 30, what: "alpha's 2 workers to show stale" },
    ).catch((error: Error) => {
      throw new Error(`${error.message}\nlast --all-hosts: ${JSON.stringify(lastSeen, null, 1)}`);
    });
    expect(stale.code).toBe(0); // beta's workers still live
    expect(stale.json.hosts.map((h) => [h.hostname, h.liveWorkers])).toEqual([
      ['alpha', 0],
      ['beta', 2],
    ]);
    expect(stale.json.hosts[0]!.workers.every((w) => w.stale)).toBe(true);
    expect(stale.json.hosts[1]!.workers.every((w) => !w.stale)).toBe(true);
    // alpha's own view works with its daemon down, and says the same.
    const fromAlpha = await clusterAsSeenBy(alpha);
    expect(fromAlpha.json.thisHost).toBe('alpha');
    expect(fromAlpha.json.hosts.map((h) => [h.hostname, h.liveWorkers])).toEqual([
      ['alpha', 0],
      ['beta', 2],
    ]);
    const staleTable = await aiida(alpha, ['daemon', 'status', '--all-hosts']);
    expect(staleTable.stdout.split('\n').filter((l) => /^alpha\*\s.*stale$/.test(l))).toHaveLength(
      2,
    );
    // The leader's lease lapsed with alpha: a worker of beta is elected.
    await waitFor(() => workerLogs(home2, 'beta').includes(ELECTED), {
      timeout: 30,
      what: "a worker of beta to take over the reconciler's election",
    });

    // beta stops cleanly: its workers leave the registry; alpha's stale rows stay.
    const stop = await aiida(beta, ['daemon', 'stop']);
    expect(stop.code).toBe(0);
    const after = await clusterAsSeenBy(beta);
    expect(after.code).toBe(3);
    expect(after.json.hosts.map((h) => [h.hostname, h.workers.length, h.liveWorkers])).toEqual([
      ['alpha', 2, 0],
    ]);
  },
  240_000,
);
