// Issue 9, "Several hosts" (chaos, serial: it makes network namespaces and runs three daemons): one
// core.psql profile run by daemons of 2 workers on three "hosts", each a Linux network namespace
// with a UTS namespace (its own hostname, so a worker's owner id names its host) and its own
// AIIDA_PATH holding the same profile, as separate machines would have. A host reaches RabbitMQ and
// PostgreSQL through socat forwarders in the root namespace, listening on the root side of the
// host's veth pair: the services keep listening on 127.0.0.1 only, and setting that veth end down
// cuts the host off from both at once, as a pulled cable would (the forwarders' own connections to
// the services stay up, so the services see nothing but silence).
//
// 3,000 processes (adds and multiply_add workflows) are submitted from the root namespace; mid-run
// one host's link goes down. Its processes are taken over by the others after the lease timeout;
// the link comes back once they are. A trigger in the test's database records every claim (pk,
// epoch, owner, attempt), every terminal transition, and which host's role wrote each update, so
// who ran each attempt and who wrote what is read from the store, not from the workers.
//
// What the cut-off host does with a process taken over from it depends on where the cut caught
// it: a write inside a transaction dies with the session the server ended; a body whose lease
// renewal failed is aborted; a result or renewal that reaches the store late is refused by fencing
// (the store no longer lists it as the owner). The test asserts what holds in every case: nothing
// it wrote for such a process after the takeover landed, and its workers gave each up. It reports
// how many writes fencing refused (in practice some in most runs, not in every one).
import { execFile } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  getConfigDir,
  getConfigFilePath,
  getDaemonDir,
  getDaemonLogDir,
  getProfile,
  type Profile,
} from '@aiida/config';
import {
  assertCanMakeHosts,
  canConnect,
  createHost,
  freeNetwork,
  type NetnsHost,
  removeHosts,
  setLink,
} from '../support/netns.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { childPids, stopPid } from '../support/processes.js';
import { logTails } from '../support/test-profile.js';
import { waitFor } from '../support/wait-for.js';
import { type E2E, setupE2E, waitForTerminal, wrongArithmeticResults } from './helpers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLI = join(HERE, '../../packages/cli/dist/bin.js');
const PROFILE = 'hosts';
const HOSTS = 3;
const WORKERS = 2;
const ADDS = 2000;
const WORKFLOWS = 1000;
/** Each workflow submits one add child. */
const TOTAL = ADDS + 2 * WORKFLOWS;
/** Seconds a submitted add lasts, so that a host holds processes when it is cut off. */
const ADD_SLEEP = 0.3;
const LEASE = 5;
/**
 * Adds that last long enough to be running on the victim when its link comes back (submitted first,
 * so every host starts some): their results and lease renewals then reach the store late.
 */
const LONG_ADDS = 60;
const LONG_SLEEP = 30;
/** A worker's log line on a write the store refused because another owner holds the process. */
const REFUSAL =
  /result was refused|the store no longer lists this worker as its owner|lost: held by/;
/** A worker's log line on a process it gave up (abandoned, lease lost, or a write refused). */
const GAVE_UP = /: abandoned|lease lost|result was refused/;
const TERMINAL = "('finished', 'excepted', 'killed')";

/** One host of the test: its namespace, its copy of the profile, its daemon. */
interface Host {
  net: NetnsHost;
  aiidaPath: string;
  profile: Profile;
  /** Pids of its supervisor and workers seen so far (stopped by pid at the end). */
  pids: Set<number>;
  /** The PostgreSQL role it logs in with (a member of the database's owner role). */
  role: string;
}

let db: TestDatabase | undefined;
let e2e: E2E | undefined;
const nets: NetnsHost[] = [];
const hosts: Host[] = [];

beforeAll(async () => {
  await assertCanMakeHosts();
  db = await createTestDatabase();
  e2e = await setupE2E({
    name: PROFILE,
    storage: db.storage,
    plugins: [],
    options: { 'daemon.lease_timeout': LEASE, 'daemon.worker_heartbeat_interval': 0.5 },
  });
  // The engine opened the store, so the schema exists: add the audit trigger.
  await db.admin(AUDIT_SQL);
  const octet = await freeNetwork(HOSTS);
  for (let i = 1; i <= HOSTS; i++) {
    const net = await createHost(
      i,
      octet,
      [
        { port: 5672, target: '127.0.0.1:5672' },
        { port: 5432, target: '127.0.0.1:5432' },
      ],
      nets,
    );
    const aiidaPath = mkdtempSync(join(tmpdir(), `aiida-host${i}-`));
    const login = await db.memberRole(`h${i}`);
    copyProfile(e2e.tp.aiidaPath, aiidaPath, net.gateway, login);
    const profile = getProfile(PROFILE, { aiidaPath });
    hosts.push({
      net,
      aiidaPath,
      profile,
      pids: new Set(),
      role: login.username,
    });
  }
}, 120_000);

afterAll(async () => {
  const problems: string[] = [];
  for (const host of hosts) {
    rememberPids(host);
    // The link may still be down after a failure: bring it up so the daemon can stop cleanly.
    await setLink(host.net, 'up').catch(() => {});
    try {
      if (daemonPidOf(host) !== undefined) await aiidaOnHost(host, 'daemon', 'stop', '-t', '20');
    } catch {}
    for (const pid of host.pids) {
      await stopPid(pid, 3).catch((e: Error) => problems.push(e.message));
    }
  }
  await removeHosts(nets).catch((e: Error) => problems.push(e.message));
  for (const host of hosts) rmSync(host.aiidaPath, { recursive: true, force: true });
  await e2e?.cleanup();
  await db?.drop();
  if (problems.length > 0) throw new Error(problems.join('; '));
}, 120_000);

/**
 * Records, in tables of the test's database: every claim (the epoch changes) with its owner and
 * attempt; every update with the role that wrote it (each host logs in with a role of its own, so
 * this says which host wrote); every transition into a terminal state; every change of a terminal
 * row's result.
 * `SECURITY DEFINER`: the function belongs to the superuser, so the profile's role can fire it.
 */
const AUDIT_SQL = `
  CREATE TABLE test_claims (
    pk BIGINT, epoch INTEGER, owner TEXT, attempts INTEGER, writer TEXT, at BIGINT
  );
  CREATE TABLE test_writes (pk BIGINT, epoch INTEGER, state TEXT, writer TEXT, at BIGINT);
  CREATE TABLE test_terminal (pk BIGINT, epoch INTEGER, state TEXT, at BIGINT);
  CREATE TABLE test_terminal_changes (pk BIGINT, old_state TEXT, new_state TEXT, at BIGINT);
  CREATE FUNCTION test_audit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
  DECLARE
    now_ms BIGINT := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
  BEGIN
    IF NEW.epoch <> OLD.epoch THEN
      INSERT INTO test_claims
        VALUES (NEW.pk, NEW.epoch, NEW.owner, NEW.attempts, session_user, now_ms);
    END IF;
    INSERT INTO test_writes VALUES (NEW.pk, NEW.epoch, NEW.state, session_user, now_ms);
    IF OLD.state IN ${TERMINAL} THEN
      IF NEW.state <> OLD.state OR NEW.outputs IS DISTINCT FROM OLD.outputs
         OR NEW.exit_status IS DISTINCT FROM OLD.exit_status THEN
        INSERT INTO test_terminal_changes VALUES (NEW.pk, OLD.state, NEW.state, now_ms);
      END IF;
    ELSIF NEW.state IN ${TERMINAL} THEN
      INSERT INTO test_terminal VALUES (NEW.pk, NEW.epoch, NEW.state, now_ms);
    END IF;
    RETURN NEW;
  END $$;
  CREATE TRIGGER test_audit AFTER UPDATE ON processes FOR EACH ROW EXECUTE FUNCTION test_audit();
`;

/**
 * Writes the profile of `from` into a new AIIDA_PATH with the broker and the database at
 * `gateway` (the host's forwarders) and the host's own database login; the same uuid, hence the
 * same queues and store.
 */
function copyProfile(
  from: string,
  to: string,
  gateway: string,
  login: { username: string; password: string },
): void {
  mkdirSync(getConfigDir(to), { recursive: true, mode: 0o700 });
  const config = JSON.parse(readFileSync(getConfigFilePath(from), 'utf8'));
  const entry = config.profiles[PROFILE];
  entry.process_control.config.broker_host = gateway;
  entry.storage.config.database_hostname = gateway;
  entry.storage.config.database_username = login.username;
  entry.storage.config.database_password = login.password;
  writeFileSync(getConfigFilePath(to), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  // AiiDA's own config.json, if the profile's creation wrote one, goes along unchanged.
  const aiidaJson = join(getConfigDir(from), 'config.json');
  if (existsSync(aiidaJson)) copyFileSync(aiidaJson, join(getConfigDir(to), 'config.json'));
}

/** Runs `aiida` inside the host's namespaces (network and UTS: its hostname is the namespace's). */
async function aiidaOnHost(host: Host, ...args: string[]): Promise<string> {
  const env: NodeJS.ProcessEnv = { ...process.env, AIIDA_PATH: host.aiidaPath };
  delete env.NODE_OPTIONS;
  const { stdout } = await promisify(execFile)(
    'ip',
    [
      'netns',
      'exec',
      host.net.name,
      'unshare',
      '--uts',
      'sh',
      '-c',
      'hostname "$0" && exec "$@"',
      host.net.name,
      process.execPath,
      CLI,
      '-p',
      PROFILE,
      ...args,
    ],
    { env, timeout: 90_000 },
  );
  return stdout;
}

/**
 * The pid in a host's daemon state file, if there is one. Each host's daemon files are in its
 * own folder, named by its hostname (the namespace's), and its state file says that host wrote
 * it: the daemon is reached with `aiida` run on the host (`aiidaOnHost`), as its user would.
 */
function daemonPidOf(host: Host): number | undefined {
  try {
    const path = join(getDaemonDir(host.profile, host.net.name), 'daemon.json');
    return (JSON.parse(readFileSync(path, 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

function rememberPids(host: Host): void {
  try {
    const pid = daemonPidOf(host);
    if (pid) {
      host.pids.add(pid);
      for (const child of childPids(pid)) host.pids.add(child);
    }
  } catch {}
}

/** Every log line of a host's workers (all files of its log folder). */
function workerLogLines(host: Host): string[] {
  const dir = getDaemonLogDir(host.profile, host.net.name);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.startsWith('worker'))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'));
}

function allLogTails(): string {
  return hosts
    .map((h) => `===== ${h.net.name} =====\n${logTails(h.profile, 25, h.net.name)}`)
    .join('\n');
}

interface Claim {
  pk: number;
  epoch: number;
  owner: string;
  attempts: number;
  writer: string;
  at: number;
}

async function claims(): Promise<Claim[]> {
  const r = await db!.admin(
    'SELECT pk, epoch, owner, attempts, writer, at FROM test_claims ORDER BY at',
  );
  return r.rows.map((row) => ({
    pk: Number(row.pk),
    epoch: row.epoch,
    owner: row.owner,
    attempts: row.attempts,
    writer: row.writer,
    at: Number(row.at),
  }));
}

/** The database's sessions (state, what they wait for, their last statement), for a failure. */
async function sessions(): Promise<string> {
  const r = await db!.admin(
    `SELECT state, wait_event_type AS wait, wait_event AS event,
            round(extract(epoch FROM clock_timestamp() - state_change))::int AS for_s,
            left(regexp_replace(query, '\\s+', ' ', 'g'), 70) AS query
       FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
  );
  return JSON.stringify(r.rows);
}

async function dbNow(): Promise<number> {
  const r = await db!.admin('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now');
  return Number(r.rows[0].now);
}

test(`three hosts, ${ADDS} adds and ${WORKFLOWS} multiply_add; one host cut off mid-run: taken over, nothing it writes late lands, one correct result each`, async () => {
  const { engine } = e2e!;
  const victim = hosts[0]!;
  const onVictim = (owner: string | null) => owner?.startsWith(`${victim.net.name}:`) ?? false;
  try {
    for (const host of hosts) {
      await aiidaOnHost(host, 'daemon', 'start', String(WORKERS));
      rememberPids(host);
      const { status } = JSON.parse(await aiidaOnHost(host, 'daemon', 'status', '--json')) as {
        status: { workers: { state: string }[] };
      };
      expect(status.workers.filter((w) => w.state === 'ready')).toHaveLength(WORKERS);
    }
    const submitted = await engine.submitMany([
      ...Array.from({ length: ADDS }, (_, i) => ({
        type: 'core.arithmetic.add',
        inputs: { x: i, y: 2 * i + 1, sleep: i < LONG_ADDS ? LONG_SLEEP : ADD_SLEEP },
      })),
      ...Array.from({ length: WORKFLOWS }, (_, i) => ({
        type: 'core.arithmetic.multiply_add',
        inputs: { x: i, y: 3, z: 7 },
      })),
    ]);
    expect(submitted).toHaveLength(ADDS + WORKFLOWS);

    // Every host takes work, and the victim holds processes when it is cut off.
    await waitFor(
      async () => {
        const owners = new Set((await claims()).map((c) => c.owner.split(':')[0]));
        if (hosts.every((h) => owners.has(h.net.name))) return true;
        throw new Error(`claims by ${[...owners].join(', ') || 'no host'}`);
      },
      { what: 'every host to claim a process', timeout: 60, interval: 0.2 },
    );
    await waitFor(
      async () => {
        const r = await db!.admin(
          `SELECT count(*)::int AS n FROM processes WHERE owner LIKE $1 AND state NOT IN ${TERMINAL}`,
          [`${victim.net.name}:%`],
        );
        return r.rows[0].n >= 20 || undefined;
      },
      { what: 'the victim to hold 20 processes', timeout: 60, interval: 0.05 },
    );
    await setLink(victim.net, 'down');
    const cutAt = await dbNow();
    // The cut bites: nothing inside the victim reaches its forwarders any more.
    expect(await canConnect(victim.net, victim.net.gateway, 5432, 2)).toBe(false);
    expect(await canConnect(victim.net, victim.net.gateway, 5672, 2)).toBe(false);
    // The others still reach theirs.
    expect(await canConnect(hosts[1]!.net, hosts[1]!.net.gateway, 5432, 2)).toBe(true);

    // The others take the victim's processes over once its leases expire: wait until no
    // unfinished process is owned by the victim and at least one was claimed from it.
    await waitFor(
      async () => {
        const held = await db!.admin(
          `SELECT count(*)::int AS n FROM processes WHERE owner LIKE $1 AND state NOT IN ${TERMINAL}`,
          [`${victim.net.name}:%`],
        );
        const taken = takenOver(await claims(), onVictim).filter((c) => c.at > cutAt);
        if (held.rows[0].n === 0 && taken.length > 0) return true;
        throw new Error(
          `${held.rows[0].n} still held by the victim, ${taken.length} taken over; ` +
            `sessions: ${await sessions()}`,
        );
      },
      { what: "the other hosts to take the victim's processes over", timeout: 90, interval: 0.5 },
    );
    await setLink(victim.net, 'up');
    const upAt = await dbNow();
    await waitFor(() => canConnect(victim.net, victim.net.gateway, 5432, 2), {
      what: 'the victim to reach its forwarders again',
      timeout: 20,
    });

    await waitForTerminal(engine, TOTAL, {
      timeout: 240,
      interval: 0.5,
      what: `all ${TOTAL} processes to end`,
    });
    const rows = await e2e!.rows();
    expect(rows.size).toBe(TOTAL);
    expect(wrongArithmeticResults(rows.values())).toEqual([]);

    // Exactly one committed result each: one transition into a terminal state per process, and no
    // terminal row changed afterwards.
    const terminal = await db!.admin(
      'SELECT pk, count(*)::int AS n FROM test_terminal GROUP BY pk',
    );
    expect(terminal.rows.length).toBe(TOTAL);
    expect(terminal.rows.filter((r) => r.n !== 1)).toEqual([]);
    expect((await db!.admin('SELECT * FROM test_terminal_changes')).rows).toEqual([]);

    // Bodies ran again only for processes the victim held: every process with more than one
    // attempt had an earlier attempt owned by the victim.
    const all = await claims();
    const byPk = new Map<number, Claim[]>();
    for (const c of all) byPk.set(c.pk, [...(byPk.get(c.pk) ?? []), c]);
    const rerun = [...rows.values()].filter((r) => r.attempts > 1 || r.ownerLosses > 0);
    expect(rerun.length).toBeGreaterThan(0);
    const rerunNotFromVictim = rerun.filter((r) => {
      const history = (byPk.get(r.pk) ?? []).sort((a, b) => a.epoch - b.epoch);
      // The claim of each later attempt follows one of an earlier attempt by the victim.
      return history.some(
        (c, i) =>
          c.attempts > 1 &&
          !history.slice(0, i).some((p) => p.attempts === c.attempts - 1 && onVictim(p.owner)),
      );
    });
    expect(rerunNotFromVictim.map((r) => `${r.pk}: ${JSON.stringify(byPk.get(r.pk))}`)).toEqual([]);
    // Everything the victim lost ended under a lease granted after the takeover: the epoch of
    // each terminal transition of a taken-over process is at least the takeover claim's. (The
    // victim may own it again by then: a workflow that parks releases its lease, and once its
    // link is back the victim's workers may claim it anew, at a later epoch.)
    const takeovers = takenOver(all, onVictim);
    const takeoverEpoch = new Map<number, number>();
    for (const c of takeovers) if (!takeoverEpoch.has(c.pk)) takeoverEpoch.set(c.pk, c.epoch);
    const terminalEpochs = new Map<number, number>(
      (await db!.admin('SELECT pk, epoch FROM test_terminal')).rows.map((r) => [
        Number(r.pk),
        r.epoch,
      ]),
    );
    const endedUnderStaleLease = [...takeoverEpoch].filter(
      ([pk, epoch]) => (terminalEpochs.get(pk) ?? 0) < epoch,
    );
    expect(endedUnderStaleLease).toEqual([]);
    const reclaimedByVictim = [...takeoverEpoch.keys()].filter((pk) =>
      onVictim(byPk.get(pk)!.find((c) => c.epoch === terminalEpochs.get(pk))?.owner ?? null),
    );

    // The victim's owners lost their leases, and nothing the victim wrote with a lease it had
    // lost landed: no update of a taken-over process, later than the claim that took it over, by
    // the victim's role at an epoch the victim did not hold (a write under a later claim of its
    // own, once its link was back, is a valid one).
    const landedLate = await db!.admin(
      `SELECT w.pk, w.epoch, w.state, w.at FROM test_writes w
         JOIN unnest($1::bigint[], $2::bigint[]) AS t(pk, at) ON w.pk = t.pk AND w.at > t.at
        WHERE w.writer = $3
          AND NOT EXISTS (SELECT 1 FROM test_claims c
                           WHERE c.pk = w.pk AND c.epoch = w.epoch AND c.owner LIKE $4)`,
      [takeovers.map((c) => c.pk), takeovers.map((c) => c.at), victim.role, `${victim.net.name}:%`],
    );
    expect(landedLate.rows).toEqual([]);
    // The victim wrote processes before the cut, and wrote to the store again once its link was
    // back (its workers' registry heartbeats: the work may all be done by then), so the check
    // above watched a host that writes.
    const victimWrites = await db!.admin(
      'SELECT count(*)::int AS before FROM test_writes WHERE writer = $1 AND at < $2',
      [victim.role, cutAt],
    );
    expect(victimWrites.rows[0].before).toBeGreaterThan(0);
    await waitFor(
      async () => {
        const r = await db!.admin(
          'SELECT count(*)::int AS n FROM workers WHERE hostname = $1 AND last_heartbeat_at > $2',
          [victim.net.name, upAt],
        );
        return r.rows[0].n > 0 || undefined;
      },
      { what: "the victim's workers to heartbeat in the store again", timeout: 30, interval: 0.5 },
    );
    // Its workers gave the taken-over processes up: each one they held was abandoned (a store call
    // failed), lost (a renewal failed after the lease ran out) or refused by fencing.
    const gaveUp = await waitFor(
      () => {
        const lines = workerLogLines(victim).filter((l) => GAVE_UP.test(l));
        const pks = new Set(lines.map((l) => Number(/process (\d+)/.exec(l)?.[1])));
        return takeovers.some((c) => pks.has(c.pk)) ? lines : undefined;
      },
      { what: "the victim's workers to give up a process taken over", timeout: 60, interval: 0.5 },
    );
    const refused = gaveUp.filter((l) => REFUSAL.test(l));
    console.log(
      `link down for ${((upAt - cutAt) / 1000).toFixed(1)} s; ${takeoverEpoch.size} processes taken ` +
        `over from ${victim.net.name} (${reclaimedByVictim.length} claimed anew by it once its ` +
        `link was back, and ended there), ${rerun.length} ran again; its workers logged ` +
        `${gaveUp.filter((l) => /: abandoned/.test(l)).length} abandoned, ` +
        `${gaveUp.filter((l) => /could not be reached/.test(l)).length} given up when a renewal ` +
        `failed, ${refused.length} writes refused by fencing\n${refused.slice(0, 3).join('\n')}`,
    );

    for (const host of hosts) {
      rememberPids(host);
      await aiidaOnHost(host, 'daemon', 'stop', '-t', '30');
    }
  } catch (error) {
    if (error instanceof Error) error.message = `${error.message}\n\n${allLogTails()}`;
    throw error;
  }
}, 420_000);

/**
 * Claims by another owner of a process whose previous owner was the victim and was lost (the
 * attempt number went up): the process was taken over. A workflow the victim parked and another
 * host claimed when its child woke it keeps its attempt number and is not counted.
 */
function takenOver(all: Claim[], onVictim: (owner: string | null) => boolean): Claim[] {
  const last = new Map<number, Claim>();
  const out: Claim[] = [];
  for (const c of [...all].sort((a, b) => a.pk - b.pk || a.epoch - b.epoch)) {
    const before = last.get(c.pk);
    if (before && onVictim(before.owner) && !onVictim(c.owner) && c.attempts > before.attempts) {
      out.push(c);
    }
    last.set(c.pk, c);
  }
  return out;
}
