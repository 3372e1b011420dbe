import { createServer, type Server } from 'node:http';
import { ErrorCodes, type WorkerCounters, type WorkerStatus } from '@aiida/ipc';
import { Counter, Gauge, Registry } from 'prom-client';
import { SupervisorError } from './errors.js';

/** What the metrics read at each scrape: the supervisor's view of its workers. */
export interface MetricsSource {
  /** The workers, as `aiida daemon status` lists them (after a fresh cpu/memory sample). */
  statuses(): Promise<WorkerStatus[]>;
  /** What the workers counted, from their heartbeats (exited workers included). */
  counters(): WorkerCounters;
}

/** The `/metrics` server of the supervisor (`daemon.metrics_port`). */
export interface MetricsServer {
  /** The port it listens on, on 127.0.0.1. */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * The metrics of a daemon, from what its supervisor knows (it never opens the store or the
 * broker): its workers by state, each worker's CPU, memory, slots and restarts (gauges labelled
 * `worker` and `pid`, named as in `aiida web`'s `/metrics`), and the workers' counters from their
 * heartbeats.
 */
export function createSupervisorMetrics(source: MetricsSource): Registry {
  const registry = new Registry();
  const workers = new Gauge({
    name: 'aiida_daemon_workers',
    help: 'Workers of the daemon, by state.',
    labelNames: ['state'],
    registers: [registry],
  });
  const workerGauge = (name: string, help: string) =>
    new Gauge({ name, help, labelNames: ['worker', 'pid'], registers: [registry] });
  const cpu = workerGauge('aiida_worker_cpu_percent', 'CPU use of a worker, % of one core.');
  const memory = workerGauge('aiida_worker_memory_bytes', 'Resident memory of a worker.');
  const slotsUsed = workerGauge('aiida_worker_slots_used', 'Process slots a worker uses.');
  const slotsTotal = workerGauge('aiida_worker_slots_total', 'Process slots a worker has.');
  const restarts = workerGauge('aiida_worker_restarts', 'Times a worker slot was restarted.');
  const counter = (name: string, help: string, labelNames: string[] = []) =>
    new Counter({ name, help, labelNames, registers: [registry] });
  const claims = counter('aiida_daemon_claims_total', 'Leases the workers took on processes.');
  const leaseLosses = counter(
    'aiida_daemon_lease_losses_total',
    'Processes whose lease a worker lost while it held them.',
  );
  const redispatches = counter(
    'aiida_daemon_reconciler_redispatches_total',
    'Tasks the elected reconciler published again.',
  );
  const ended = counter(
    'aiida_daemon_processes_ended_total',
    'Processes the workers ended, by state (finished, excepted, killed).',
    ['state'],
  );

  // Filled once per scrape, by the first metric collected.
  let filling: Promise<void> | undefined;
  const fill = async () => {
    const statuses = await source.statuses();
    for (const g of [workers, cpu, memory, slotsUsed, slotsTotal, restarts]) g.reset();
    for (const w of statuses) {
      workers.inc({ state: w.state }, 1);
      const labels = { worker: String(w.index), pid: String(w.pid ?? '') };
      if (w.cpu !== null) cpu.set(labels, w.cpu);
      if (w.memory !== null) memory.set(labels, w.memory);
      slotsUsed.set(labels, w.slotsUsed);
      slotsTotal.set(labels, w.slotsTotal);
      restarts.set(labels, w.restarts);
    }
    const c = source.counters();
    for (const metric of [claims, leaseLosses, redispatches, ended]) metric.reset();
    claims.inc(c.claims);
    leaseLosses.inc(c.leaseLosses);
    redispatches.inc(c.redispatches);
    ended.inc({ state: 'finished' }, c.finished);
    ended.inc({ state: 'excepted' }, c.excepted);
    ended.inc({ state: 'killed' }, c.killed);
  };
  const originalMetrics = registry.metrics.bind(registry);
  registry.metrics = async () => {
    filling ??= fill().finally(() => {
      filling = undefined;
    });
    await filling;
    return originalMetrics();
  };
  return registry;
}

/**
 * Serves `GET /metrics` (Prometheus text format) on 127.0.0.1:`port`; any other path is a 404.
 * Fails with a clear `SupervisorError` when the port can't be bound.
 */
export async function startMetricsServer(
  port: number,
  registry: Registry,
  onError: (message: string) => void,
): Promise<MetricsServer> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      response.end('Not found: the daemon serves GET /metrics only.\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': registry.contentType });
        response.end(text);
      },
      (error: unknown) => {
        onError(`/metrics failed: ${(error as Error).message}`);
        response.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        response.end('The metrics could not be collected; see the supervisor log.\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    const fail = (error: NodeJS.ErrnoException) =>
      reject(
        new SupervisorError(
          ErrorCodes.daemonError,
          `daemon.metrics_port ${port}: cannot listen on 127.0.0.1:${port} (${error.code ?? error.message})`,
          { cause: error },
        ),
      );
    server.once('error', fail);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', fail);
      server.on('error', (error) => onError(`metrics server: ${error.message}`));
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
