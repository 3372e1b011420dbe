import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchProfile } from './aiida-env.js';
import type { BenchConfig } from './config.js';
import { fmt, log } from './log.js';
import { Pm2Home, pm2Bin } from './pm2-home.js';
import { pollUntil, signalPid, sleep } from './procs.js';
import { type Figure, figure } from './results.js';
import { median, nowMs, summarize } from './stats.js';
import { type OursVariant, oursVariants } from './variants.js';

const WORKERS = 4;
const PM2_WORKER = fileURLToPath(new URL('./children/pm2-worker.js', import.meta.url));
/** Poll interval while waiting for a revived worker, for both sides. */
const REVIVE_POLL_MS = 5;

/** The samples of one side of the control benchmark, one entry per repetition. */
interface ControlSamples {
  start: number[];
  status: number[];
  statusCli: number[];
  revive: number[];
  stop: number[];
  /** `aiida --version` (ours) against `node -e 0` (the peer side of this figure). */
  version: number[];
}

function emptySamples(): ControlSamples {
  return { start: [], status: [], statusCli: [], revive: [], stop: [], version: [] };
}

/**
 * Ours with the warm spare on (`daemon.warm_spare`, off by default): the revival figure is the
 * spare's promotion. The spare starts after the workers are ready, so start is unaffected.
 */
const OUR_OPTIONS = { 'daemon.warm_spare': true };

/** Runs `node <args>` to completion and returns its wall time in ms; throws on a non-zero exit. */
function timeCommand(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    execFile(process.execPath, args, { env, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      const elapsed = nowMs() - t0;
      if (error) {
        reject(new Error(`${args.join(' ')} failed: ${error.message}\n${stderr}`));
      } else if (stdout.trim().length === 0) {
        reject(new Error(`${args.join(' ')} printed nothing`));
      } else resolve(elapsed);
    });
  });
}

/** Times `calls` sequential calls of `call` and returns the median, in ms (after a warm-up). */
async function medianCallTime(call: () => Promise<unknown>, calls: number): Promise<number> {
  for (let i = 0; i < 10; i++) await call();
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = nowMs();
    await call();
    times.push(nowMs() - t0);
  }
  return median(times);
}

/** One repetition of ours: start 4, status x200, CLI status x5, revive one, stop. */
async function oursOnce(
  bp: BenchProfile,
  config: BenchConfig,
  out: ControlSamples,
  nodeBaseline: number[],
): Promise<void> {
  const cli = join(config.repoRoot, 'packages', 'cli', 'dist', 'bin.js');
  let t0 = nowMs();
  const started = await bp.client.startDaemon({ numberWorkers: WORKERS });
  out.start.push(nowMs() - t0);
  bp.noteDaemonPid(started.pid);

  out.status.push(await medianCallTime(() => bp.client.getStatus(), config.statusCalls));

  const cliTimes: number[] = [];
  for (let i = 0; i < config.cliRuns; i++) {
    cliTimes.push(await timeCommand([cli, '-p', bp.profile.name, 'daemon', 'status'], bp.env));
  }
  out.statusCli.push(median(cliTimes));

  // `aiida --version` against `node -e 0`, alternating, whole processes.
  const versionTimes: number[] = [];
  const nodeTimes: number[] = [];
  for (let i = 0; i < config.cliRuns; i++) {
    versionTimes.push(await timeCommand([cli, '--version'], bp.env));
    nodeTimes.push(await timeCommand(['-e', 'console.log(0)'], bp.env));
  }
  out.version.push(median(versionTimes));
  nodeBaseline.push(median(nodeTimes));

  // The spare is started once the workers are ready: revive from the steady state, with it in
  // standby (a kill before that revives as without a spare).
  await pollUntil(async () => (await bp.client.getStatus()).spare?.state === 'standby', {
    timeout: 30,
    interval: 20,
    what: 'the warm spare to be in standby',
  });
  // The supervisor revives a worker at once unless it died within a second of being ready.
  const before = await bp.client.getStatus();
  const victim = before.workers[0]!;
  if (victim.pid === null) throw new Error('worker 0 has no pid');
  const readySince = victim.startedAt ? Date.parse(victim.startedAt) : Date.now();
  if (Date.now() - readySince < 1500) await sleep(1500 - (Date.now() - readySince));
  t0 = nowMs();
  signalPid(victim.pid, 'SIGKILL');
  await pollUntil(
    async () => {
      const status = await bp.client.getStatus();
      const slot = status.workers.find((w) => w.index === victim.index);
      return slot && slot.pid !== null && slot.pid !== victim.pid && slot.state === 'ready';
    },
    { timeout: 30, interval: REVIVE_POLL_MS, what: `worker ${victim.index} to be revived` },
  );
  out.revive.push(nowMs() - t0);

  t0 = nowMs();
  await bp.stopDaemon();
  out.stop.push(nowMs() - t0);
}

/** One repetition of PM2: connect + start 4 with wait_ready, list x200, jlist x5, revive, stop. */
async function pm2Once(pm2: Pm2Home, config: BenchConfig, out: ControlSamples): Promise<void> {
  const bin = pm2Bin();
  try {
    let t0 = nowMs();
    await pm2.connect();
    await pm2.start(PM2_WORKER, WORKERS);
    out.start.push(nowMs() - t0);
    const first = await pm2.list();
    const online = first.filter((p) => p.pm2_env?.status === 'online');
    if (online.length !== WORKERS) {
      throw new Error(`PM2 reports ${online.length} of ${WORKERS} workers online after start`);
    }

    out.status.push(await medianCallTime(() => pm2.list(), config.statusCalls));

    const cliTimes: number[] = [];
    for (let i = 0; i < config.cliRuns; i++) {
      cliTimes.push(await timeCommand([bin, 'jlist'], pm2.env));
    }
    out.statusCli.push(median(cliTimes));

    const victim = (await pm2.list()).find((p) => p.pm_id === online[0]!.pm_id)!;
    t0 = nowMs();
    signalPid(victim.pid, 'SIGKILL');
    await pollUntil(
      async () => {
        const proc = (await pm2.list()).find((p) => p.pm_id === victim.pm_id);
        return proc && proc.pid > 0 && proc.pid !== victim.pid && proc.pm2_env?.status === 'online';
      },
      { timeout: 30, interval: REVIVE_POLL_MS, what: `PM2 worker ${victim.pm_id} to be revived` },
    );
    out.revive.push(nowMs() - t0);

    t0 = nowMs();
    await pm2.stopAll();
    out.stop.push(nowMs() - t0);
  } finally {
    await pm2.kill();
  }
}

/**
 * The pairs also timed in the control section: those of `--systems` whose transport is the store
 * (no broker to connect to, so a worker is ready once its store and wake-up channel are open).
 * SQLite + RabbitMQ is always timed, as before.
 */
export function controlVariants(systems: readonly string[]): OursVariant[] {
  return oursVariants(systems).filter((v) => v.transport === 'core.store');
}

/**
 * Daemon control against PM2, rotating which goes first in each repetition: start 4 workers
 * until all are ready, one status call, the status command, revival after `kill -9`, stop. Ours
 * on SQLite + RabbitMQ, and each core.store pair of `--systems` (start and revival reported).
 */
export async function benchControl(config: BenchConfig): Promise<Figure[]> {
  const ours = emptySamples();
  const peer = emptySamples();
  const variants = controlVariants(config.systems);
  const extra = new Map(variants.map((v) => [v.system, emptySamples()]));
  const bp = BenchProfile.create({ name: 'bench-control', options: OUR_OPTIONS });
  const pm2 = new Pm2Home();
  const others: { variant: OursVariant; bp: BenchProfile }[] = [];
  try {
    for (const variant of variants) {
      others.push({
        variant,
        bp: await BenchProfile.open({
          name: `bench-control-${variant.system}`,
          options: OUR_OPTIONS,
          storage: variant.storage,
          transport: variant.transport,
        }),
      });
    }
    const sides = ['ours', 'pm2', ...variants.map((v) => v.system)];
    for (let rep = 0; rep < config.reps; rep++) {
      const shift = rep % sides.length;
      const order = [...sides.slice(shift), ...sides.slice(0, shift)];
      for (const who of order) {
        if (who === 'ours') await oursOnce(bp, config, ours, peer.version);
        else if (who === 'pm2') await pm2Once(pm2, config, peer);
        else {
          const other = others.find((o) => o.variant.system === who)!;
          // Their `--version` runs are not compared with anything: a scratch baseline.
          await oursOnce(other.bp, config, extra.get(who)!, []);
        }
      }
      log(
        `control rep ${rep + 1}/${config.reps}: start ${fmt(ours.start.at(-1)!)} vs ${fmt(peer.start.at(-1)!)} ms, ` +
          `status ${fmt(ours.status.at(-1)!)} vs ${fmt(peer.status.at(-1)!)} ms, ` +
          `cli ${fmt(ours.statusCli.at(-1)!)} vs ${fmt(peer.statusCli.at(-1)!)} ms, ` +
          `revive ${fmt(ours.revive.at(-1)!)} vs ${fmt(peer.revive.at(-1)!)} ms, ` +
          `stop ${fmt(ours.stop.at(-1)!)} vs ${fmt(peer.stop.at(-1)!)} ms, ` +
          `--version ${fmt(ours.version.at(-1)!)} vs node -e 0 ${fmt(peer.version.at(-1)!)} ms` +
          [...extra]
            .map(
              ([system, s]) =>
                `; ${system} start ${fmt(s.start.at(-1)!)} ms, revive ${fmt(s.revive.at(-1)!)} ms`,
            )
            .join(''),
      );
    }
  } finally {
    for (const other of others) await other.bp.dispose();
    await bp.dispose();
    await pm2.dispose();
  }
  return [
    ...controlFigures(ours, peer),
    ...others.flatMap(({ variant }) =>
      storeControlFigures(variant, extra.get(variant.system)!, peer),
    ),
  ];
}

/** Start and revival of a core.store pair against PM2 (the same PM2 samples as the others). */
export function storeControlFigures(
  variant: Pick<OursVariant, 'idPrefix' | 'label'>,
  ours: Pick<ControlSamples, 'start' | 'revive'>,
  peer: Pick<ControlSamples, 'start' | 'revive'>,
): Figure[] {
  const section = 'Daemon control (4 workers) vs PM2';
  const make = (id: 'start' | 'revive', title: string, note?: string): Figure => {
    const f = figure({
      id: `control.${variant.idPrefix}${id}`,
      section,
      title: `${variant.label}: ${title}`,
      unit: 'ms',
      better: 'lower',
      ours: summarize(ours[id]),
      peerName: 'PM2',
      peer: summarize(peer[id]),
      note,
    });
    f.goal = {
      text: 'faster than PM2 (ratio < 1)',
      met: f.ratio === undefined ? null : f.ratio < 1,
    };
    return f;
  };
  return [
    make(
      'start',
      'start 4 workers until all ready',
      'cold, as above; no broker: a worker is ready once its store and wake-up channel are open',
    ),
    make('revive', 'revival after kill -9 of a worker until ready (polled every 5 ms)'),
  ];
}

function controlFigures(ours: ControlSamples, peer: ControlSamples): Figure[] {
  const section = 'Daemon control (4 workers) vs PM2';
  const make = (
    id: keyof ControlSamples,
    title: string,
    goalText: string,
    goalMet: (ratio: number) => boolean,
    note?: string,
    peerName = 'PM2',
  ): Figure => {
    const f = figure({
      id: `control.${id}`,
      section,
      title,
      unit: 'ms',
      better: 'lower',
      ours: summarize(ours[id]),
      peerName,
      peer: summarize(peer[id]),
      note,
    });
    f.goal = { text: goalText, met: f.ratio === undefined ? null : goalMet(f.ratio) };
    return f;
  };
  return [
    make(
      'start',
      'start 4 workers until all ready (startDaemon vs pm2 connect + start, wait_ready)',
      'at most 0.7 of PM2 (ratio <= 0.7; issue 11)',
      (r) => r <= 0.7,
      "cold: neither daemon runs before; our workers load the engine and connect to RabbitMQ before ready, PM2's send ready at once",
    ),
    make(
      'status',
      'one status call (getStatus vs pm2 list(), median of 200 per repetition)',
      'at most half of PM2 (ratio <= 0.5)',
      (r) => r <= 0.5,
    ),
    make(
      'statusCli',
      'status command (aiida daemon status vs pm2 jlist, whole process)',
      'at most half of PM2 (ratio <= 0.5)',
      (r) => r <= 0.5,
    ),
    make(
      'revive',
      'revival after kill -9 of a worker until ready (polled every 5 ms)',
      'at most PM2 (ratio <= 1; issue 11)',
      (r) => r <= 1,
      'ours with daemon.warm_spare on (off by default): the killed worker is replaced by the spare, killed once it is in standby',
    ),
    make(
      'stop',
      'stop with 4 idle workers (stopDaemon vs pm2 stop all)',
      'at most half of PM2 (ratio <= 0.5; issue 11)',
      (r) => r <= 0.5,
      'stopDaemon also stops the supervisor (and the warm spare); pm2 stop all leaves the PM2 daemon running',
    ),
    make(
      'version',
      'aiida --version vs node -e 0 (whole process)',
      'at most 1.5 x node -e 0 (ratio <= 1.5; issue 11)',
      (r) => r <= 1.5,
      'the peer is `node -e console.log(0)`, run alternately with `aiida --version` in our repetitions',
      'node -e 0',
    ),
  ];
}
