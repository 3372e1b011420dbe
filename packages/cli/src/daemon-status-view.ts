import type { ClusterStatus, DaemonClient } from '@aiida/daemon-client';
import { formatAge, formatBytes, formatLocalTime, formatUptime } from './format.js';
import { paint } from './output.js';
import { formatTable } from './table.js';

/** The status of a running daemon, as the daemon client returns it. */
export type DaemonStatus = Awaited<ReturnType<DaemonClient['getStatus']>>;
/** One worker of a {@link DaemonStatus}. */
export type WorkerStatus = DaemonStatus['workers'][number];

/** Slot use above this fraction gets a warning (new processes wait for a free slot). */
const SLOT_WARNING_FRACTION = 0.9;

/** Slots used and available over all workers, and the fraction in use. */
export function slotUsage(workers: WorkerStatus[]): {
  used: number;
  total: number;
  fraction: number;
} {
  const used = workers.reduce((sum, w) => sum + w.slotsUsed, 0);
  const total = workers.reduce((sum, w) => sum + w.slotsTotal, 0);
  return { used, total, fraction: total === 0 ? 0 : used / total };
}

/** The warning line for slot use above {@link SLOT_WARNING_FRACTION}, or undefined. */
export function slotWarning(workers: WorkerStatus[]): string | undefined {
  const { used, total, fraction } = slotUsage(workers);
  if (total === 0 || fraction <= SLOT_WARNING_FRACTION) return undefined;
  return (
    `${Math.round(fraction * 100)}% of the daemon's worker slots are in use (${used} of ${total}): ` +
    'new processes wait for a free slot. Add workers with `aiida daemon incr`.'
  );
}

function stateText(state: WorkerStatus['state']): string {
  switch (state) {
    case 'ready':
      return paint(state, 'green');
    case 'crash-looping':
      return paint(state, ['red', 'bold']);
    default:
      return paint(state, 'yellow');
  }
}

/**
 * The body of `aiida daemon status` for a running daemon, in the spirit of `verdi daemon status`:
 * the supervisor's pid and start, a table of workers (pid, state, cpu, memory, started, uptime,
 * restarts with the last reason, e.g. `2 (unresponsive)`, slots), the warm spare if there is one,
 * then the log folder. Warnings (slots, crash loops) are returned separately,
 * for standard error.
 */
export function renderDaemonStatus(
  status: DaemonStatus,
  now: number = Date.now(),
): { text: string; warnings: string[] } {
  const uptime = (iso: string | null) =>
    iso === null ? '-' : formatUptime((now - new Date(iso).getTime()) / 1000);
  const lines: string[] = [
    `Daemon is running as PID ${status.pid} since ${formatLocalTime(status.startedAt)} ` +
      `(uptime ${uptime(status.startedAt)})`,
  ];
  const workers = [...status.workers].sort((a, b) => a.index - b.index);
  if (workers.length === 0) {
    lines.push('--> No workers are running. Use `aiida daemon incr` to start some!');
  } else {
    lines.push(`Active workers [${workers.length}]:`);
    const rows = workers.map((w) => [
      w.index,
      w.pid ?? '-',
      stateText(w.state),
      w.cpu === null ? '-' : w.cpu.toFixed(1),
      w.memory === null ? '-' : formatBytes(w.memory),
      w.startedAt === null ? '-' : formatLocalTime(w.startedAt),
      uptime(w.startedAt),
      w.restarts > 0 && w.lastRestartReason ? `${w.restarts} (${w.lastRestartReason})` : w.restarts,
      `${w.slotsUsed} / ${w.slotsTotal}`,
    ]);
    lines.push(
      formatTable(
        ['#', 'PID', 'state', 'CPU %', 'memory', 'started', 'uptime', 'restarts', 'slots'],
        rows,
        {
          align: ['right', 'right', 'left', 'right', 'right', 'left', 'right', 'right', 'right'],
        },
      ),
    );
    const { used, total } = slotUsage(workers);
    lines.push(`Slots in use: ${used} of ${total}`);
  }
  if (status.spare) {
    lines.push(
      status.spare.state === 'standby'
        ? `Warm spare: PID ${status.spare.pid}, loaded and connected, takes a dead worker's place at once`
        : `Warm spare: PID ${status.spare.pid}, starting`,
    );
  }
  lines.push(`Log folder: ${status.logDir}`);
  lines.push('Use `aiida daemon [incr | decr] [num]` to increase / decrease the number of workers');

  const warnings: string[] = [];
  const slots = slotWarning(workers);
  if (slots !== undefined) warnings.push(slots);
  for (const w of workers) {
    if (w.state !== 'crash-looping') continue;
    const next =
      w.nextAttemptAt === null
        ? ''
        : `; next attempt in ${Math.max(0, Math.ceil((new Date(w.nextAttemptAt).getTime() - now) / 1000))} s`;
    const tail =
      w.lastStderr.length === 0
        ? ' It wrote nothing to stderr.'
        : ` Its last stderr lines:\n${w.lastStderr.map((l) => `    | ${l}`).join('\n')}`;
    warnings.push(
      `worker ${w.index} is crash-looping (restarted ${w.restarts} times${next}).${tail}`,
    );
  }
  return { text: lines.join('\n'), warnings };
}

/**
 * The body of `aiida daemon status --all-hosts`: every host's workers from the store's worker
 * registry, one table row per worker (host, pid, worker id, started, last heartbeat, slots,
 * `live` or `stale`), this host marked with `*`.
 */
export function renderClusterStatus(status: ClusterStatus, now: number = Date.now()): string {
  const live = status.workers - status.staleWorkers;
  const lines = [
    `Store: ${status.backend}; this host: ${status.thisHost}; ` +
      `${status.hosts.length} ${status.hosts.length === 1 ? 'host' : 'hosts'}, ` +
      `${live} live and ${status.staleWorkers} stale ${status.workers === 1 ? 'worker' : 'workers'} ` +
      `(stale: no heartbeat for ${status.staleAfter} s)`,
  ];
  if (status.workers === 0) {
    lines.push('No worker of any host is registered: no daemon of this profile runs.');
    return lines.join('\n');
  }
  const rows = status.hosts.flatMap((host) =>
    host.workers.map((w) => [
      host.thisHost ? `${host.hostname}*` : host.hostname,
      w.pid,
      w.workerId,
      formatLocalTime(w.startedAt),
      formatAge(w.lastHeartbeatAt, now),
      `${w.slotsUsed} / ${w.slotsTotal}`,
      w.stale ? paint('stale', 'red') : paint('live', 'green'),
    ]),
  );
  lines.push(
    formatTable(['host', 'pid', 'worker', 'started', 'heartbeat', 'slots', 'state'], rows, {
      align: ['left', 'right', 'left', 'left', 'left', 'right', 'left'],
    }),
  );
  return lines.join('\n');
}
