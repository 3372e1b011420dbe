import type { ClusterStatus, DaemonStatus } from '@aiida/daemon-client';
import type { ProcessDurations, ProcessSummary } from '@aiida/engine';
import { Counter, Gauge, type Metric, type MetricObjectWithValues, Registry } from 'prom-client';
import type { DashboardDaemon, DashboardEngine } from './ports.js';

/** Bucket bounds, in seconds, of the two duration histograms. */
export const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600];

/** What one scrape reads, once, before the metrics are rendered. */
interface Snapshot {
  summary: ProcessSummary;
  durations: ProcessDurations;
  daemon: DaemonStatus | undefined;
  cluster: ClusterStatus | undefined;
}

/** The `/metrics` endpoint: a prom-client registry fed from the store and the daemon. */
export interface MetricsEndpoint {
  /** The registry (its metrics are filled by {@link MetricsEndpoint.scrape}). */
  readonly registry: Registry;
  /** Reads the store and the daemon once, and renders the Prometheus text format. */
  scrape(): Promise<string>;
  readonly contentType: string;
}

/** A histogram whose buckets the store computed (prom-client's `Histogram` only observes). */
function storeHistogram(
  name: string,
  help: string,
  pick: () => { bounds: number[]; counts: number[]; count: number; sum: number } | undefined,
): Metric {
  const metric = {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async (): Promise<MetricObjectWithValues<never>> => {
      const h = pick();
      const values: {
        metricName: string;
        labels: Record<string, string | number>;
        value: number;
      }[] = [];
      if (h) {
        h.bounds.forEach((le, i) => {
          values.push({ metricName: `${name}_bucket`, labels: { le }, value: h.counts[i] ?? 0 });
        });
        values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h.count });
        values.push({ metricName: `${name}_sum`, labels: {}, value: h.sum });
        values.push({ metricName: `${name}_count`, labels: {}, value: h.count });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values } as never;
    },
  };
  return metric as unknown as Metric;
}

/**
 * Builds the metrics of a profile: processes by state and type (gauges), processes ended, claims
 * and lease losses (counters, read from the store: deleting processes lowers them, which
 * Prometheus treats as a counter reset), this host's daemon's workers with CPU, memory and slots,
 * every host's workers (live and stale) and slots from the store's worker registry, and the
 * histograms of time from submission to start and from start to end.
 */
export function createMetricsEndpoint(
  engine: Pick<DashboardEngine, 'store' | 'summarizeProcesses' | 'processDurations'>,
  daemon: Pick<DashboardDaemon, 'getStatus' | 'getClusterStatus'> | undefined,
): MetricsEndpoint {
  const registry = new Registry();
  let snap: Snapshot | undefined;

  const processes = new Gauge({
    name: 'aiida_processes',
    help: 'Processes in the store, by state and type.',
    labelNames: ['state', 'type'],
    registers: [registry],
  });
  const paused = new Gauge({
    name: 'aiida_processes_paused',
    help: 'Paused processes in the store, by type.',
    labelNames: ['type'],
    registers: [registry],
  });
  const ended = (state: string) =>
    new Counter({
      name: `aiida_processes_${state}_total`,
      help: `Processes that ended ${state}, by type (rows in the store).`,
      labelNames: ['type'],
      registers: [registry],
    });
  const endedCounters = {
    finished: ended('finished'),
    excepted: ended('excepted'),
    killed: ended('killed'),
  };
  const claims = new Counter({
    name: 'aiida_process_claims_total',
    help: 'Leases granted on processes (claims), summed over the store.',
    registers: [registry],
  });
  const leaseLosses = new Counter({
    name: 'aiida_process_lease_losses_total',
    help: 'Times a worker lost its lease on a process it held, summed over the store.',
    registers: [registry],
  });
  const daemonUp = new Gauge({
    name: 'aiida_daemon_up',
    help: '1 when the daemon of the profile answers, else 0.',
    registers: [registry],
  });
  const workers = new Gauge({
    name: 'aiida_daemon_workers',
    help: 'Workers of the daemon, by state.',
    labelNames: ['state'],
    registers: [registry],
  });
  const workerGauge = (name: string, help: string) =>
    new Gauge({ name, help, labelNames: ['worker', 'pid'], registers: [registry] });
  const workerCpu = workerGauge('aiida_worker_cpu_percent', 'CPU use of a worker, % of one core.');
  const workerMemory = workerGauge('aiida_worker_memory_bytes', 'Resident memory of a worker.');
  const slotsUsed = workerGauge('aiida_worker_slots_used', 'Process slots a worker uses.');
  const slotsTotal = workerGauge('aiida_worker_slots_total', 'Process slots a worker has.');
  const restarts = workerGauge('aiida_worker_restarts', 'Times a worker slot was restarted.');
  const clusterUp = new Gauge({
    name: 'aiida_cluster_registry_up',
    help: "1 when the store's worker registry (every host's workers) could be read, else 0.",
    registers: [registry],
  });
  const hostWorkers = new Gauge({
    name: 'aiida_cluster_workers',
    help: "Workers of each host in the store's worker registry, live or stale (no heartbeat for daemon.lease_timeout).",
    labelNames: ['host', 'state'],
    registers: [registry],
  });
  const hostGauge = (name: string, help: string) =>
    new Gauge({ name, help, labelNames: ['host'], registers: [registry] });
  const hostSlotsUsed = hostGauge(
    'aiida_cluster_slots_used',
    "Process slots in use on each host, summed over its live workers in the store's registry.",
  );
  const hostSlotsTotal = hostGauge(
    'aiida_cluster_slots_total',
    "Process slots of each host, summed over its live workers in the store's registry.",
  );
  registry.registerMetric(
    storeHistogram(
      'aiida_process_queue_seconds',
      'Time from submission to the first start of a process.',
      () => snap && { bounds: snap.durations.bounds, ...snap.durations.queued },
    ),
  );
  registry.registerMetric(
    storeHistogram(
      'aiida_process_run_seconds',
      'Time from the first start to the end of a process.',
      () => snap && { bounds: snap.durations.bounds, ...snap.durations.run },
    ),
  );

  const fill = (s: Snapshot) => {
    processes.reset();
    paused.reset();
    for (const c of Object.values(endedCounters)) c.reset();
    for (const row of s.summary.counts) {
      processes.inc({ state: row.state, type: row.type }, row.count);
      if (row.paused > 0) paused.inc({ type: row.type }, row.paused);
      if (row.state === 'finished' || row.state === 'excepted' || row.state === 'killed') {
        endedCounters[row.state].inc({ type: row.type }, row.count);
      }
    }
    claims.reset();
    claims.inc(s.summary.claims);
    leaseLosses.reset();
    leaseLosses.inc(s.summary.ownerLosses);
    for (const g of [workers, workerCpu, workerMemory, slotsUsed, slotsTotal, restarts]) g.reset();
    daemonUp.set(s.daemon ? 1 : 0);
    if (s.daemon) {
      for (const w of s.daemon.workers) {
        workers.inc({ state: w.state }, 1);
        const labels = { worker: String(w.index), pid: String(w.pid ?? '') };
        if (w.cpu !== null) workerCpu.set(labels, w.cpu);
        if (w.memory !== null) workerMemory.set(labels, w.memory);
        slotsUsed.set(labels, w.slotsUsed);
        slotsTotal.set(labels, w.slotsTotal);
        restarts.set(labels, w.restarts);
      }
    }
    for (const g of [hostWorkers, hostSlotsUsed, hostSlotsTotal]) g.reset();
    clusterUp.set(s.cluster ? 1 : 0);
    for (const h of s.cluster?.hosts ?? []) {
      hostWorkers.set({ host: h.hostname, state: 'live' }, h.liveWorkers);
      hostWorkers.set({ host: h.hostname, state: 'stale' }, h.workers.length - h.liveWorkers);
      hostSlotsUsed.set({ host: h.hostname }, h.slotsUsed);
      hostSlotsTotal.set({ host: h.hostname }, h.slotsTotal);
    }
  };

  // Scrapes run one at a time: each fills the metrics from its own snapshot, then renders.
  let queue: Promise<unknown> = Promise.resolve();
  const scrape = (): Promise<string> => {
    const run = queue.then(async () => {
      const [summary, durations, status, cluster] = await Promise.all([
        engine.summarizeProcesses(),
        engine.processDurations(DURATION_BUCKETS),
        daemon ? daemon.getStatus({ timeout: 2 }).catch(() => undefined) : undefined,
        daemon
          ? daemon.getClusterStatus({ store: engine.store }).catch(() => undefined)
          : undefined,
      ]);
      snap = { summary, durations, daemon: status, cluster };
      fill(snap);
      return registry.metrics();
    });
    queue = run.catch(() => undefined);
    return run;
  };
  return { registry, scrape, contentType: registry.contentType };
}
