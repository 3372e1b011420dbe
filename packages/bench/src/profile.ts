import { execFile } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import pg from 'pg';
import { BenchProfile } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { log } from './log.js';
import { addItems, OursThroughput, submitInBatches } from './ours.js';
import { PG_ADMIN } from './pg-admin.js';
import { pollUntil, signalPid } from './procs.js';
import { profiledDaemon } from './profiled-daemon.js';
import type { ProfileSummary } from './results.js';
import { oursVariants } from './variants.js';

/** Where the raw `.cpuprofile` files of the last run are kept (they open in Chrome DevTools). */
export const PROFILES_DIR = join(tmpdir(), 'aiida-bench-profiles');

/** The parts of a V8 `.cpuprofile` the summary reads. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives: a package, a node internal area, or V8 itself. */
function areaOf(url: string, fn: string): string | null {
  if (fn === '(idle)' || fn === '(root)') return null;
  if (fn === '(garbage collector)') return 'V8: garbage collector';
  if (fn === '(program)') return 'V8/native (program)';
  if (url === '') return 'native / builtins';
  if (url.startsWith('node:internal/modules') || url.startsWith('node:internal/main')) {
    return 'node: module loading';
  }
  if (url.startsWith('node:')) {
    const parts = url.replace('node:internal/', 'node:').split('/');
    return `node: ${parts[0]!.replace('node:', '')}`;
  }
  const pkg = /\/packages\/([^/]+)\/dist\//.exec(url);
  if (pkg) return `@aiida/${pkg[1]}`;
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  return 'other';
}

/** A source URL relative to the repository or node_modules, for tables. */
export function shortUrl(url: string, repoRoot: string): string {
  if (url.startsWith('file://')) url = url.slice('file://'.length);
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  if (url.startsWith('/')) return relative(repoRoot, url);
  return url;
}

/** Self time by function and by area, idle left out. */
export function summarizeCpuProfile(
  profile: CpuProfile,
  what: string,
  file: string,
  repoRoot: string,
): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // The nearest caller in our packages or a dependency: says who asked for native/node time.
  const via = (id: number): string => {
    for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
      const { functionName, url, lineNumber } = byId.get(p)!.callFrame;
      if (url && !url.startsWith('node:')) {
        return `${functionName || '(anonymous)'} ${shortUrl(url, repoRoot)}:${lineNumber + 1}`;
      }
    }
    return '';
  };
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  const fns = new Map<string, { fn: string; where: string; via: string; us: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const area = areaOf(url, functionName);
    if (area === null) continue;
    // The profiler's own start/stop (inspector dispatch from the measuring code) is not measured work.
    if (!url && /bench\/dist\/(profile|children\/cpu-profiler)\.js/.test(via(id))) continue;
    total += us;
    areas.set(area, (areas.get(area) ?? 0) + us);
    const fn = functionName || '(anonymous)';
    const where = url ? `${shortUrl(url, repoRoot)}:${lineNumber + 1}` : area;
    const caller = !url || url.startsWith('node:') ? via(id) : '';
    const key = `${fn}@${where}@${caller}`;
    const entry = fns.get(key) ?? { fn, where, via: caller, us: 0 };
    entry.us += us;
    fns.set(key, entry);
  }
  const share = (us: number) => (total > 0 ? us / total : 0);
  return {
    what,
    file,
    totalMs: total / 1000,
    top: [...fns.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, 15)
      .map((e) => ({
        fn: e.fn,
        where: e.where,
        via: e.via,
        selfMs: e.us / 1000,
        share: share(e.us),
      })),
    byArea: [...areas]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, selfMs: us / 1000, share: share(us) })),
  };
}

/** The `.cpuprofile` node wrote for `pid` into `dir` (names carry the pid). */
function profileOf(dir: string, pid: number): string | undefined {
  return readdirSync(dir).find(
    (f) => f.endsWith('.cpuprofile') && f.split('.').includes(String(pid)),
  );
}

function load(dir: string, file: string): CpuProfile {
  return JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
}

/** Runs `work` under the CPU profiler of this process (node:inspector) and returns the profile. */
async function profileInProcess(work: () => Promise<void>): Promise<CpuProfile> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 500 });
    await session.post('Profiler.start');
    await work();
    const { profile } = await session.post('Profiler.stop');
    return profile as unknown as CpuProfile;
  } finally {
    session.disconnect();
  }
}

/** Transaction and row counters of one database (pg_stat_database), as the superuser. */
async function databaseCounters(
  database: string,
): Promise<{ commits: number; rolledBack: number; tuplesWritten: number; scans: number }> {
  const client = new pg.Client({ ...PG_ADMIN, database });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ c: string; r: string; w: string }>(
      'select xact_commit as c, xact_rollback as r, ' +
        'tup_inserted + tup_updated + tup_deleted as w from pg_stat_database where datname = $1',
      [database],
    );
    // Every statement that reads or writes a table by key or by scan counts one here.
    const scans = await client.query<{ s: string | null }>(
      'select sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) as s from pg_stat_user_tables',
    );
    const row = rows[0];
    return {
      commits: Number(row?.c ?? 0),
      rolledBack: Number(row?.r ?? 0),
      tuplesWritten: Number(row?.w ?? 0),
      scans: Number(scans.rows[0]?.s ?? 0),
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Seconds between ISO timestamps at the start of log lines matching `a` and `b`. */
function logGap(text: string, a: RegExp, b: RegExp): number | null {
  const lines = text.split('\n');
  const at = (re: RegExp) => {
    const line = lines.find((l) => re.test(l));
    return line ? Date.parse(line.slice(0, 24)) : Number.NaN;
  };
  const gap = (at(b) - at(a)) / 1000;
  return Number.isFinite(gap) ? gap : null;
}

/** Wall time of `node <args>` until it exits, in ms (median of `runs`). */
async function nodeRunTime(args: string[], runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      execFile(process.execPath, args, (error) => (error ? reject(error) : resolve()));
    });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/**
 * Start-up costs that every worker pays before it can connect: starting node, and importing the
 * modules of the worker program (without running it), against starting node with a script that
 * does nothing (PM2's worker in the control benchmark). Median of 5 each.
 */
async function startupCosts(repoRoot: string): Promise<ProfileSummary> {
  const worker = join(repoRoot, 'packages', 'worker', 'dist');
  const importWorker = `await import(${JSON.stringify(join(worker, 'engine-runner.js'))}); await import(${JSON.stringify(join(worker, 'program.js'))}); await import(${JSON.stringify(join(repoRoot, 'packages', 'broker', 'dist', 'index.js'))});`;
  const bare = await nodeRunTime(['-e', '0'], 5);
  const imports = await nodeRunTime(['--input-type=module', '-e', importWorker], 5);
  return {
    what:
      `start-up costs (wall, median of 5): node -e 0 ${bare.toFixed(0)} ms; node importing the ` +
      `worker's modules (engine runner, program, broker; nothing run) ${imports.toFixed(0)} ms, ` +
      `so ${(imports - bare).toFixed(0)} ms of module loading before a worker can even connect`,
    file: '',
    totalMs: 0,
    top: [],
    byArea: [],
  };
}

/**
 * CPU profiles of where our time goes: a worker running N trivial processes, the supervisor
 * through start/status/revive/stop, a worker's start-up, the `aiida daemon status` command, and
 * `submitMany` in this process. Also the wall-clock phases of a start from the daemon's logs.
 */
export async function benchProfiles(config: BenchConfig): Promise<ProfileSummary[]> {
  const dir = mkdtempSync(join(tmpdir(), 'aiida-bench-prof-'));
  const keep = PROFILES_DIR;
  const daemon = profiledDaemon(config.repoRoot, dir, 'cpu');

  const summaries: ProfileSummary[] = [];
  const add = (pid: number, what: string) => {
    const file = profileOf(dir, pid);
    if (!file) {
      log(`no CPU profile for pid ${pid} (${what})`);
      return;
    }
    summaries.push(summarizeCpuProfile(load(dir, file), what, file, config.repoRoot));
  };
  try {
    // 1. A worker running N trivial processes, on each storage and transport pair chosen.
    for (const variant of oursVariants(config.systems)) {
      const first = variant.idPrefix === '';
      const tp = new OursThroughput(`bench-prof-tp-${variant.system}`, config.concurrency, daemon, {
        variant,
      });
      let workerPid = 0;
      let supervisorPid = 0;
      let commits: string | undefined;
      try {
        await tp.setup(1);
        const status = await tp.bp.client.getStatus();
        workerPid = status.workers[0]!.pid!;
        supervisorPid = status.pid;
        const storage = tp.bp.profile.storage;
        const database = storage.backend === 'core.psql' ? storage.config.database_name : null;
        const before = database ? await databaseCounters(database) : null;
        await tp.runOnce(config.throughputN);
        if (database && before) {
          // PostgreSQL publishes a backend's counters when it goes idle, at most a second late.
          await new Promise((r) => setTimeout(r, 1500));
          const after = await databaseCounters(database);
          const per = (k: keyof typeof after) => (after[k] - before[k]) / config.throughputN;
          commits =
            `PostgreSQL during those ${config.throughputN} processes of ${variant.label} ` +
            "(pg_stat_database of the profile's database, all its connections): " +
            `${per('commits').toFixed(2)} transactions ` +
            `committed, ${per('rolledBack').toFixed(2)} rolled back, ${per('tuplesWritten').toFixed(1)} ` +
            `rows inserted/updated/deleted, ${per('scans').toFixed(1)} table scans (index or ` +
            'sequential: about one per statement that reads or writes rows) per process';
        }
      } finally {
        await tp.dispose();
      }
      // The first pair keeps the titles of earlier reports.
      const on = first ? '' : ` of ${variant.label}`;
      add(
        workerPid,
        `worker${on}: start, ${config.throughputN} core.arithmetic.add (1 worker), stop`,
      );
      add(supervisorPid, `supervisor during that throughput run${on}`);
      if (commits) summaries.push({ what: commits, file: '', totalMs: 0, top: [], byArea: [] });
    }
    // The rest profiles the daemon's control and start-up, the same on every store.
    if (!config.systems.includes('ours-sqlite')) return summaries;

    // 2. Control: start 4, 200 status calls, the status command, a revival, stop.
    const bp = BenchProfile.create({ name: 'bench-prof-ctl', ...daemon });
    let ctlSupervisor = 0;
    let idleWorker = 0;
    let revived = 0;
    const cli = join(config.repoRoot, 'packages', 'cli', 'dist', 'bin.js');
    try {
      await bp.startDaemon(4);
      let status = await bp.client.getStatus();
      ctlSupervisor = status.pid;
      idleWorker = status.workers[1]!.pid!;
      const clientProfile = await profileInProcess(async () => {
        for (let i = 0; i < config.statusCalls; i++) await bp.client.getStatus();
      });
      writeFileSync(join(dir, 'bench-getStatus.cpuprofile'), JSON.stringify(clientProfile));
      summaries.push(
        summarizeCpuProfile(
          clientProfile,
          `getStatus() x ${config.statusCalls} in the calling process (the client side)`,
          'bench-getStatus.cpuprofile',
          config.repoRoot,
        ),
      );
      await new Promise<void>((resolve, reject) => {
        execFile(
          process.execPath,
          ['--cpu-prof', `--cpu-prof-dir=${dir}`, cli, '-p', bp.profile.name, 'daemon', 'status'],
          { env: bp.env },
          (error) => (error ? reject(error) : resolve()),
        );
      });
      const victim = status.workers[0]!.pid!;
      await new Promise((r) => setTimeout(r, 1500));
      signalPid(victim, 'SIGKILL');
      status = await pollUntil(
        async () => {
          const s = await bp.client.getStatus();
          const w = s.workers[0]!;
          return w.pid !== null && w.pid !== victim && w.state === 'ready' ? s : undefined;
        },
        { timeout: 30, interval: 5, what: 'the revived worker' },
      );
      revived = status.workers[0]!.pid!;
      await bp.stopDaemon();
      // Wall-clock phases of this start, from the daemon's own logs.
      const supLog = readFileSync(bp.client.supervisorLogFile, 'utf8');
      const w1 = readFileSync(bp.client.workerLogFile(1), 'utf8');
      const phases = {
        'supervisor start to worker 1 forked': logGap(
          supLog,
          /supervisor starting/,
          /worker 1 started/,
        ),
        'worker 1 forked to its ready': logGap(w1, /supervisor: started/, /supervisor: ready/),
        'worker 1: fork to first log line of the runner': logGap(
          w1,
          /supervisor: started/,
          /taking work/,
        ),
        'all forked to supervisor ready': logGap(supLog, /worker 3 started/, /supervisor ready/),
      };
      summaries.push({
        what: `wall-clock phases of one start of 4 (from the daemon logs, seconds): ${Object.entries(
          phases,
        )
          .map(([k, v]) => `${k} ${v === null ? 'n/a' : v.toFixed(3)}`)
          .join('; ')}`,
        file: 'supervisor.log, worker-1.log',
        totalMs: 0,
        top: [],
        byArea: [],
      });
    } finally {
      await bp.dispose();
    }
    add(ctlSupervisor, `supervisor: start 4, ${config.statusCalls} status calls, a revival, stop`);
    add(idleWorker, 'an idle worker from fork to stop (its start-up)');
    add(revived, 'a revived worker from fork to stop');
    // `node --cpu-prof` names its file CPU.<date>.<time>.<pid>...; the wrappers write <role>.<pid>.
    const cliFile = readdirSync(dir).find((f) => f.startsWith('CPU.') && f.endsWith('.cpuprofile'));
    if (cliFile) {
      summaries.push(
        summarizeCpuProfile(
          load(dir, cliFile),
          'aiida daemon status (whole command)',
          cliFile,
          config.repoRoot,
        ),
      );
    }

    summaries.push(await startupCosts(config.repoRoot));

    // 3. submitMany in this process (no daemon): the submit side (SQLite).
    const sub = BenchProfile.create({ name: 'bench-prof-submit' });
    try {
      await sub.getEngine();
      await submitInBatches(sub, addItems(200));
      const profile = await profileInProcess(() =>
        submitInBatches(sub, addItems(config.throughputN)),
      );
      const file = 'bench-submitMany.cpuprofile';
      writeFileSync(join(dir, file), JSON.stringify(profile));
      summaries.push(
        summarizeCpuProfile(
          profile,
          `submitMany of ${config.throughputN} in the bench process (no workers)`,
          file,
          config.repoRoot,
        ),
      );
    } finally {
      await sub.dispose();
    }
  } finally {
    // Keep the raw profiles beside the results (they open in Chrome DevTools), then clean up.
    try {
      rmSync(keep, { recursive: true, force: true });
      for (const f of readdirSync(dir)) {
        if (!f.endsWith('.cpuprofile')) continue;
        mkdirSync(keep, { recursive: true });
        copyFileSync(join(dir, f), join(keep, f));
      }
    } catch {}
    rmSync(dir, { recursive: true, force: true });
  }
  return summaries;
}
