import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { connect } from 'node:net';
import { cpus, loadavg, release, totalmem } from 'node:os';
import pg from 'pg';
import { ioredisVersion, REDIS } from './peers.js';
import { PG_ADMIN } from './pg-admin.js';
import { pm2Version } from './pm2-home.js';

const require = createRequire(import.meta.url);

/** The machine the figures come from. */
export function describeMachine(): Record<string, unknown> {
  const list = cpus();
  let memAvailable: number | null = null;
  try {
    const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (match) memAvailable = Number(match[1]) * 1024;
  } catch {}
  return {
    nproc: list.length,
    cpuModel: list[0]?.model.trim() ?? 'unknown',
    memoryBytes: totalmem(),
    memoryAvailableBytes: memAvailable,
    kernel: release(),
    loadAverage: loadavg().map((l) => Number(l.toFixed(2))),
  };
}

function run(command: string, args: string[]): string | null {
  try {
    return execFileSync(command, args, { encoding: 'utf8', timeout: 15_000, stdio: 'pipe' }).trim();
  } catch {
    return null;
  }
}

/** `redis_version` from `INFO server`, over a plain socket (RESP), or null. */
function redisVersion(): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect(REDIS.port, REDIS.host);
    let text = '';
    const done = (value: string | null) => {
      socket.destroy();
      resolve(value);
    };
    socket.setTimeout(3000, () => done(null));
    socket.on('error', () => done(null));
    socket.on('connect', () => socket.write('*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n'));
    socket.on('data', (chunk) => {
      text += chunk.toString('utf8');
      const match = /redis_version:([^\r\n]+)/.exec(text);
      if (match) done(match[1]!);
    });
  });
}

/** The local PostgreSQL's `server_version`, or null if it does not answer. */
async function postgresVersion(): Promise<string | null> {
  const client = new pg.Client({
    ...PG_ADMIN,
    database: 'postgres',
    connectionTimeoutMillis: 3000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('show server_version');
    return rows[0]?.server_version ?? null;
  } catch {
    return null;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function packageVersion(name: string): string {
  try {
    return (require(`${name}/package.json`) as { version: string }).version;
  } catch {
    return 'not installed';
  }
}

/** Versions of everything measured. */
export async function collectVersions(repoRoot: string): Promise<Record<string, string>> {
  const rabbit =
    run('rabbitmq-diagnostics', ['-q', 'server_version']) ?? run('rabbitmqctl', ['version']);
  return {
    node: process.version,
    rabbitmq: rabbit?.split('\n').at(-1) ?? 'unknown',
    redis: (await redisVersion()) ?? 'unknown',
    bullmq: packageVersion('bullmq'),
    ioredis: ioredisVersion() ?? 'not installed',
    pm2: pm2Version(),
    'rabbitmq-client': packageVersion('rabbitmq-client'),
    postgresql: (await postgresVersion()) ?? 'unknown',
    'graphile-worker': packageVersion('graphile-worker'),
    pg: packageVersion('pg'),
    commit: run('git', ['-C', repoRoot, 'rev-parse', '--short', 'HEAD']) ?? 'unknown',
  };
}
