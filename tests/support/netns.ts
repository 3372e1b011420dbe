// "Hosts" for tests: Linux network namespaces with a veth pair to the root namespace, and socat
// forwarders in the root namespace that let a namespace reach the root's RabbitMQ and PostgreSQL.
// Root only. Every name carries the run's tag, so `scripts/run-tests.mjs` can remove what a killed
// run left behind.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { runTag } from './postgres.js';
import { childPids, isAlive, stopPid } from './processes.js';
import { waitFor } from './wait-for.js';

const run = promisify(execFile);

/** The run's tag: the run id's last 8 letters and digits (veth names have at most 15 bytes). */
export function runNetnsTag(runId?: string): string {
  return runTag(8, runId);
}

/**
 * Prefix of every namespace a test run creates: `aiidat-<tag>-`. `scripts/run-tests.mjs` deletes
 * the namespaces of its run with this prefix (the veth pairs go with them).
 */
export function runNetnsPrefix(runId?: string): string {
  return `aiidat-${runNetnsTag(runId)}-`;
}

/**
 * Fails with a clear message unless this process is root and `ip` and `socat` are installed: the
 * namespace tests need all three (CI runs as root and `.ci/run` installs socat).
 */
export async function assertCanMakeHosts(): Promise<void> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(
      'this test makes network namespaces (ip netns add) and must run as root; ' +
        `it runs as uid ${process.getuid?.() ?? '?'}`,
    );
  }
  for (const [tool, hint] of [
    ['ip', 'the iproute2 package'],
    ['socat', 'the socat package (.ci/run installs it)'],
  ] as const) {
    try {
      await run('sh', ['-c', `command -v ${tool}`]);
    } catch {
      throw new Error(`this test needs '${tool}' on the PATH: install ${hint}`);
    }
  }
}

/** A forwarded service: where a namespace connects, and where it lands in the root namespace. */
export interface Forward {
  /** Port on the host's root-side address. */
  port: number;
  /** `host:port` in the root namespace. */
  target: string;
}

/** A namespace with its link, addresses and forwarders. */
export interface NetnsHost {
  /** Namespace name (`ip netns exec <name> ...`). */
  name: string;
  /** The veth end in the root namespace: setting it down cuts the host off. */
  rootLink: string;
  /** The veth end inside the namespace. */
  hostLink: string;
  /** Address of the root side, where the host reaches the forwarders. */
  gateway: string;
  /** Address of the host itself. */
  address: string;
  /** Pids of the forwarders (each the leader of its own process group). */
  forwarderPids: number[];
}

/** `ip` with arguments; rejects with its stderr. */
export async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args, { timeout: 20_000 });
  return stdout;
}

/** Addresses of the root namespace (to pick a /24 that nothing uses). */
async function usedNetworks(): Promise<string[]> {
  const out = await ip('-o', '-4', 'addr', 'show');
  return [...out.matchAll(/inet (\d+\.\d+\.\d+)\.\d+\//g)].map((m) => m[1]!);
}

/**
 * A second octet `b` such that none of 10.b.1.0/24 ... 10.b.count.0/24 is in use on this machine,
 * picked at random so that runs do not reuse each other's networks.
 */
export async function freeNetwork(count: number): Promise<number> {
  const used = new Set(await usedNetworks());
  for (let tries = 0; tries < 50; tries++) {
    const b = 100 + Math.floor(Math.random() * 150);
    const nets = Array.from({ length: count }, (_, i) => `10.${b}.${i + 1}`);
    if (nets.every((n) => !used.has(n))) return b;
  }
  throw new Error('no free 10.x.0.0/16 network for the test hosts (50 tries)');
}

/**
 * Creates host `index` (1-based): namespace `<prefix>h<index>`, loopback up, a veth pair with
 * 10.<octet>.<index>.1/24 on the root side and .2/24 inside, and one socat forwarder per `forwards`
 * entry listening on the root side's address. Everything is registered in `hosts` as soon as it
 * exists, so {@link removeHosts} cleans up after a failure half-way.
 */
export async function createHost(
  index: number,
  octet: number,
  forwards: readonly Forward[],
  hosts: NetnsHost[],
): Promise<NetnsHost> {
  const tag = runNetnsTag();
  const host: NetnsHost = {
    name: `${runNetnsPrefix()}h${index}`,
    rootLink: `at${tag}r${index}`,
    hostLink: `at${tag}n${index}`,
    gateway: `10.${octet}.${index}.1`,
    address: `10.${octet}.${index}.2`,
    forwarderPids: [],
  };
  hosts.push(host);
  await ip('netns', 'add', host.name);
  await ip('-n', host.name, 'link', 'set', 'lo', 'up');
  await ip('link', 'add', host.rootLink, 'type', 'veth', 'peer', 'name', host.hostLink);
  await ip('link', 'set', host.hostLink, 'netns', host.name);
  await ip('addr', 'add', `${host.gateway}/24`, 'dev', host.rootLink);
  await ip('link', 'set', host.rootLink, 'up');
  await ip('-n', host.name, 'addr', 'add', `${host.address}/24`, 'dev', host.hostLink);
  await ip('-n', host.name, 'link', 'set', host.hostLink, 'up');
  for (const forward of forwards) {
    const child = startForwarder(host.gateway, forward);
    host.forwarderPids.push(child.pid!);
  }
  // Ready when a connection from inside the namespace reaches every forwarder.
  for (const forward of forwards) {
    await waitFor(() => canConnect(host, host.gateway, forward.port, 1), {
      what: `${host.name} to reach ${host.gateway}:${forward.port}`,
      timeout: 15,
      interval: 0.1,
    });
  }
  return host;
}

/**
 * `socat` listening on `address:port` (root namespace) and forwarding each connection to
 * `target`, in a process group of its own (its per-connection children are in it too).
 */
function startForwarder(address: string, forward: Forward): ChildProcess {
  const child = spawn(
    'socat',
    [`TCP-LISTEN:${forward.port},bind=${address},fork,reuseaddr`, `TCP:${forward.target},nodelay`],
    { detached: true, stdio: 'ignore' },
  );
  child.unref();
  if (child.pid === undefined) throw new Error(`socat could not start for ${address}`);
  return child;
}

/**
 * True when a TCP connection from inside `host` to `address:port` is established within
 * `timeout` seconds (socat, closed at once).
 */
export async function canConnect(
  host: NetnsHost,
  address: string,
  port: number,
  timeout: number,
): Promise<boolean> {
  try {
    await run(
      'ip',
      [
        'netns',
        'exec',
        host.name,
        'socat',
        '-u',
        'OPEN:/dev/null',
        `TCP:${address}:${port},connect-timeout=${timeout}`,
      ],
      { timeout: (timeout + 5) * 1000 },
    );
    return true;
  } catch {
    return false;
  }
}

/** Sets the host's link (its root-side veth end) down or up. */
export async function setLink(host: NetnsHost, state: 'up' | 'down'): Promise<void> {
  await ip('link', 'set', host.rootLink, state);
}

/**
 * Removes what {@link createHost} made: forwarders (their process groups, by pid), then the
 * namespaces (their veth pairs go with them). Stop the processes running inside first.
 * Best effort for each item, bounded in time; throws at the end listing what could not be removed.
 */
export async function removeHosts(hosts: readonly NetnsHost[]): Promise<void> {
  const problems: string[] = [];
  for (const host of hosts) {
    for (const pid of host.forwarderPids) {
      const children = childPids(pid);
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {}
      for (const p of [pid, ...children]) {
        await stopPid(p, 2).catch((e: Error) => problems.push(e.message));
      }
    }
    try {
      await ip('netns', 'del', host.name);
    } catch (error) {
      if (!/No such file|not found/i.test((error as Error).message)) {
        problems.push(`netns ${host.name}: ${(error as Error).message}`);
      }
    }
    // A veth end left in the root namespace (the namespace was never made) is removed too.
    await ip('link', 'del', host.rootLink).catch(() => {});
  }
  const left = hosts.flatMap((h) => h.forwarderPids.filter(isAlive));
  if (left.length > 0) problems.push(`forwarders still alive: ${left.join(', ')}`);
  if (problems.length > 0) throw new Error(`test hosts not fully removed: ${problems.join('; ')}`);
}
