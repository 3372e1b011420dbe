import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stopOurPid } from './procs.js';

const require = createRequire(import.meta.url);

/** The subset of PM2's programmatic API the bench uses (one instance per PM2 home). */
interface Pm2Api {
  connect(cb: (err: Error | null) => void): void;
  start(options: Record<string, unknown>, cb: (err: Error | null, procs: unknown) => void): void;
  list(cb: (err: Error | null, list: Pm2Process[]) => void): void;
  stop(what: string | number, cb: (err: Error | null, procs: unknown) => void): void;
  killDaemon(cb: (err: Error | null, res: unknown) => void): void;
  disconnect(): void;
}

/** One process as `list()` describes it. */
export interface Pm2Process {
  pid: number;
  pm_id: number;
  name: string;
  pm2_env?: { status?: string; restart_time?: number };
}

type Pm2Constructor = new (opts: Record<string, unknown>) => Pm2Api;

function promisify<T>(run: (cb: (err: Error | null, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    run((err, value) => (err ? reject(err) : resolve(value)));
  });
}

/** Path of PM2's command-line entry (for `pm2 jlist` as a whole command). */
export function pm2Bin(): string {
  return join(dirname(require.resolve('pm2/package.json')), 'bin', 'pm2');
}

/** PM2's version, from its package.json. */
export function pm2Version(): string {
  return (require('pm2/package.json') as { version: string }).version;
}

/**
 * A PM2 home in a temporary folder, and the PM2 daemon in it. The daemon is started by `connect`
 * (PM2 spawns it detached) and stopped by `kill` through the API; its pid (from `pm2.pid`) and its
 * workers' pids are checked afterwards and stopped by pid if anything is left.
 */
export class Pm2Home {
  readonly home: string;
  private api: Pm2Api | undefined;
  private seenPids = new Set<number>();

  constructor() {
    this.home = mkdtempSync(join(tmpdir(), 'aiida-bench-pm2-'));
    // PM2 reads PM2_HOME when its module loads; the CLI children get it from the environment.
    process.env.PM2_HOME = this.home;
  }

  /** Environment for `pm2` command-line children. */
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, PM2_HOME: this.home };
  }

  /** Pid of the PM2 daemon, from `<home>/pm2.pid`, or null. */
  daemonPid(): number | null {
    try {
      const pid = Number(readFileSync(join(this.home, 'pm2.pid'), 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /** Connects a fresh API instance, which launches the daemon if it is not running. */
  async connect(): Promise<void> {
    const { custom } = require('pm2') as { custom: Pm2Constructor };
    const api = new custom({ pm2_home: this.home, daemon_mode: true });
    await promisify<void>((cb) => api.connect((err) => cb(err, undefined)));
    this.api = api;
    const pid = this.daemonPid();
    if (pid !== null) this.seenPids.add(pid);
  }

  private get connected(): Pm2Api {
    if (!this.api) throw new Error('PM2 API not connected');
    return this.api;
  }

  /** Starts `instances` forks of `script` and resolves when all sent `ready` (`wait_ready`). */
  async start(script: string, instances: number): Promise<void> {
    await promisify((cb) =>
      this.connected.start(
        {
          script,
          name: 'bench-worker',
          instances,
          exec_mode: 'fork',
          wait_ready: true,
          listen_timeout: 10_000,
          autorestart: true,
          merge_logs: true,
        },
        cb,
      ),
    );
  }

  /** PM2's programmatic `list()`. */
  async list(): Promise<Pm2Process[]> {
    const list = await promisify<Pm2Process[]>((cb) => this.connected.list(cb));
    for (const proc of list) if (proc.pid > 0) this.seenPids.add(proc.pid);
    return list;
  }

  /** `pm2 stop all` through the API: resolves when every process has exited. */
  async stopAll(): Promise<void> {
    await promisify((cb) => this.connected.stop('all', cb));
  }

  /** `pm2 kill` through the API, then disconnect; anything left is stopped by pid. */
  async kill(): Promise<void> {
    const daemon = this.daemonPid();
    if (daemon !== null) this.seenPids.add(daemon);
    if (this.api) {
      try {
        await promisify((cb) => this.api!.killDaemon(cb));
      } catch {}
      try {
        this.api.disconnect();
      } catch {}
      this.api = undefined;
    }
    for (const pid of this.seenPids) await stopOurPid(pid, 3);
    this.seenPids.clear();
  }

  /** Kills the daemon (if needed) and removes the folder. */
  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.home, { recursive: true, force: true });
  }
}
