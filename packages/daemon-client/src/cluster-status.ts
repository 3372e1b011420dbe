import { getHostname, getOption, type Profile } from '@aiida/config';
import type { ProcessStore } from '@aiida/engine';
import { ErrorCodes } from '@aiida/ipc';
import { DaemonException } from './errors.js';

/** One worker of {@link ClusterStatus}, from the store's worker registry. */
export interface ClusterWorker {
  /** The worker's id, the owner it writes on its leases (`<host>:<pid>:<random>`). */
  workerId: string;
  pid: number;
  /** Slots in use at its last heartbeat. */
  slotsUsed: number;
  slotsTotal: number;
  /** When it registered (ISO 8601, the store's clock). */
  startedAt: string;
  /** Its last heartbeat (ISO 8601, the store's clock). */
  lastHeartbeatAt: string;
  /**
   * True when its last heartbeat is older than `daemon.lease_timeout`: the worker is gone or
   * stalled (its leases have expired too), or its host is cut off from the store.
   */
  stale: boolean;
}

/** One host of {@link ClusterStatus}. */
export interface ClusterHost {
  hostname: string;
  /** True for the host this client runs on (`AIIDA_HOSTNAME`, else `os.hostname()`). */
  thisHost: boolean;
  /** Its workers, oldest first. */
  workers: ClusterWorker[];
  /** Workers that are not stale. */
  liveWorkers: number;
  /** Sum of `slotsUsed` and of `slotsTotal` over the workers that are not stale. */
  slotsUsed: number;
  slotsTotal: number;
}

/** What {@link DaemonClient.getClusterStatus} returns: every host's workers, from the store. */
export interface ClusterStatus {
  profile: string;
  /** The profile's store backend: `core.sqlite` (one machine) or `core.psql`. */
  backend: string;
  /** This host's name. */
  thisHost: string;
  /** `daemon.lease_timeout`: seconds without a heartbeat after which a worker is stale. */
  staleAfter: number;
  /** Hosts by name; a host appears while at least one of its workers is registered. */
  hosts: ClusterHost[];
  /** Workers of every host, and how many of them are stale. */
  workers: number;
  staleWorkers: number;
}

/** Options of {@link readClusterStatus} and `DaemonClient.getClusterStatus`. */
export interface ClusterStatusOptions {
  /**
   * An open store of the profile to read the registry from, left open (a long-lived reader such
   * as the dashboard polls through its engine's store). Without it, the store is opened for the
   * call and closed after it.
   */
  store?: Pick<ProcessStore, 'backend' | 'listWorkers'>;
}

/**
 * Reads the worker registry of the profile's store (which every host's workers write) and groups
 * it by host. Needs no daemon on this host: it opens the store (the engine is loaded only here),
 * or reads through `options.store`. Throws {@link DaemonException} `store_error` when the store
 * can't be opened or read, or `store_version_unsupported` for a store of a newer version.
 */
export async function readClusterStatus(
  profile: Profile,
  options: ClusterStatusOptions = {},
): Promise<ClusterStatus> {
  const staleAfter = getOption('daemon.lease_timeout', { profile, aiidaPath: profile.aiidaPath });
  const thisHost = getHostname();
  const { openProcessStore, isEngineError } = await import('@aiida/engine');
  let records: Awaited<ReturnType<ProcessStore['listWorkers']>>;
  let backend: string;
  try {
    if (options.store) {
      backend = options.store.backend;
      records = await options.store.listWorkers({ staleAfterSeconds: staleAfter });
    } else {
      const store = await openProcessStore(profile);
      try {
        backend = store.backend;
        records = await store.listWorkers({ staleAfterSeconds: staleAfter });
      } finally {
        await store.close().catch(() => undefined);
      }
    }
  } catch (error) {
    const code =
      isEngineError(error) && error.code === ErrorCodes.storeVersionUnsupported
        ? ErrorCodes.storeVersionUnsupported
        : ErrorCodes.storeError;
    throw new DaemonException(
      `Cannot read the worker registry of profile '${profile.name}': ${(error as Error).message}`,
      { code, cause: error },
    );
  }
  const byHost = new Map<string, ClusterHost>();
  for (const r of records) {
    let host = byHost.get(r.hostname);
    if (!host) {
      host = {
        hostname: r.hostname,
        thisHost: r.hostname === thisHost,
        workers: [],
        liveWorkers: 0,
        slotsUsed: 0,
        slotsTotal: 0,
      };
      byHost.set(r.hostname, host);
    }
    host.workers.push({
      workerId: r.workerId,
      pid: r.pid,
      slotsUsed: r.slotsUsed,
      slotsTotal: r.slotsTotal,
      startedAt: r.startedAt,
      lastHeartbeatAt: r.lastHeartbeatAt,
      stale: r.stale,
    });
    if (!r.stale) {
      host.liveWorkers++;
      host.slotsUsed += r.slotsUsed;
      host.slotsTotal += r.slotsTotal;
    }
  }
  const hosts = [...byHost.values()].sort((a, b) =>
    a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0,
  );
  return {
    profile: profile.name,
    backend,
    thisHost,
    staleAfter,
    hosts,
    workers: records.length,
    staleWorkers: records.filter((r) => r.stale).length,
  };
}
