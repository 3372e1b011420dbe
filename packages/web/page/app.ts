// The dashboard page: Preact components written with htm (tagged templates, no JSX build step),
// a uPlot chart, live updates from the server's event stream. Bundled by scripts/bundle-page.mjs.
import { html, render } from 'htm/preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './app.css';

// --- types of the JSON API (see src/server.ts) -------------------------------------------------
interface Worker {
  index: number;
  pid: number | null;
  state: string;
  startedAt: string | null;
  restarts: number;
  cpu: number | null;
  memory: number | null;
  slotsUsed: number;
  slotsTotal: number;
  activePks: number[];
}
interface DaemonView {
  running: boolean;
  status?: {
    pid: number;
    hostname: string;
    startedAt: string;
    numberWorkers: number;
    workers: Worker[];
  };
  message?: { code: string; message: string } | string;
  /** Every host's workers, from the store's worker registry (null when it can't be read). */
  cluster: Cluster | null;
  clusterMessage?: { code: string; message: string };
}
interface ClusterWorker {
  workerId: string;
  pid: number;
  slotsUsed: number;
  slotsTotal: number;
  startedAt: string;
  lastHeartbeatAt: string;
  stale: boolean;
}
interface ClusterHost {
  hostname: string;
  thisHost: boolean;
  workers: ClusterWorker[];
  liveWorkers: number;
  slotsUsed: number;
  slotsTotal: number;
}
interface Cluster {
  thisHost: string;
  staleAfter: number;
  hosts: ClusterHost[];
  workers: number;
  staleWorkers: number;
}
interface Process {
  pk: number;
  uuid: string;
  type: string;
  state: string;
  paused: boolean;
  inputs: unknown;
  outputs: unknown;
  exitStatus: number | null;
  exitMessage: string | null;
  exception: string | null;
  processStatus: string | null;
  parentPk: number | null;
  owner: string | null;
  attempts: number;
  createdAt: string;
  modifiedAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}
interface Page {
  total: number;
  processes: Process[];
}
interface Summary {
  summary: { total: number; counts: { state: string; type: string; count: number }[] };
  activity: { time: string; finished: number; excepted: number; killed: number }[];
}
interface CallNode {
  pk: number;
  type: string;
  state: string;
  exitStatus: number | null;
  children: CallNode[];
}
interface Detail {
  process: Process;
  reports: { time: string; level: string; message: string }[];
  callTree: CallNode;
}

const STATES = ['created', 'waiting', 'running', 'finished', 'excepted', 'killed'];
const csrf = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')?.content ?? '';
const profile = document.querySelector<HTMLMetaElement>('meta[name="aiida-profile"]')?.content;

// --- helpers -----------------------------------------------------------------------------------
class ApiError extends Error {}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await fetch(path, {
    ...init,
    headers: {
      ...(init.headers ?? {}),
      ...(init.method === 'POST' ? { 'x-csrf-token': csrf } : {}),
    },
  });
  const body = await response.json().catch(() => undefined);
  if (!response.ok) {
    throw new ApiError(body?.error?.message ?? `${response.status} ${response.statusText}`);
  }
  return body as T;
}

function since(iso: string | null): string {
  if (!iso) return '–';
  let s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  const parts: string[] = [];
  for (const [unit, size] of [
    ['d', 86400],
    ['h', 3600],
    ['m', 60],
  ] as const) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  parts.push(`${s}s`);
  return parts.slice(0, 2).join(' ');
}

function bytes(n: number | null): string {
  if (n === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function time(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : '–';
}

function navigate(path: string): void {
  history.pushState(null, '', path);
  dispatchEvent(new PopStateEvent('popstate'));
}

/** Runs an action after the user confirmed it; reports the outcome in the notice line. */
async function act(question: string, path: string, notify: (text: string) => void) {
  if (!confirm(question)) return;
  try {
    const result = await api<{ message?: string }>(path, { method: 'POST' });
    notify(result.message ?? 'Done.');
  } catch (error) {
    notify(`Refused: ${(error as Error).message}`);
  }
}

/** Subscribes to the server's event stream; `onEvent` gets (topic, data). */
function useLive(onEvent: (topic: string, data: unknown) => void): boolean {
  const [connected, setConnected] = useState(false);
  const handler = useRef(onEvent);
  handler.current = onEvent;
  useEffect(() => {
    const source = new EventSource('/api/events');
    source.onopen = () => setConnected(true);
    source.onerror = () => setConnected(false);
    for (const topic of ['processes', 'daemon']) {
      source.addEventListener(topic, (e) =>
        handler.current(topic, JSON.parse((e as MessageEvent).data)),
      );
    }
    return () => source.close();
  }, []);
  return connected;
}

// --- components --------------------------------------------------------------------------------
function StateBadge({ state, paused }: { state: string; paused?: boolean }) {
  return html`<span class=${`badge state-${state}`} data-state=${state}>${state}${paused ? ' (paused)' : ''}</span>`;
}

function ProcessActions({ p, notify }: { p: Process; notify: (t: string) => void }) {
  if (['finished', 'excepted', 'killed'].includes(p.state)) return null;
  return html`<span class="actions">
    ${
      p.paused
        ? html`<button data-action="play" onClick=${() => act(`Play process ${p.pk}?`, `/api/processes/${p.pk}/play`, notify)}>Play</button>`
        : html`<button data-action="pause" onClick=${() => act(`Pause process ${p.pk}?`, `/api/processes/${p.pk}/pause`, notify)}>Pause</button>`
    }
    <button class="danger" data-action="kill" onClick=${() => act(`Kill process ${p.pk}? This cannot be undone.`, `/api/processes/${p.pk}/kill`, notify)}>Kill</button>
  </span>`;
}

function DaemonPanel({
  daemon,
  notify,
}: {
  daemon: DaemonView | undefined;
  notify: (t: string) => void;
}) {
  if (!daemon)
    return html`<section class="panel"><h2>Daemon</h2><p>Asking the daemon…</p></section>`;
  if (!daemon.running || !daemon.status) {
    const why = typeof daemon.message === 'string' ? daemon.message : daemon.message?.message;
    const here = daemon.cluster ? ` on ${daemon.cluster.thisHost}` : '';
    return html`<section class="panel" data-testid="daemon"><h2>Daemon${here} (this host)</h2>
      <p class="muted" data-testid="daemon-down">The daemon of this host is not running${why ? `: ${why}` : ''}. Start it with <code>aiida daemon start</code>.</p></section>`;
  }
  const s = daemon.status;
  return html`<section class="panel" data-testid="daemon">
    <h2>Daemon on ${s.hostname} (this host)</h2>
    <p class="muted">pid ${s.pid}, up ${since(s.startedAt)}, ${s.numberWorkers} worker(s) wanted</p>
    <table class="grid">
      <thead><tr><th>#</th><th>state</th><th>pid</th><th>uptime</th><th>restarts</th><th>CPU</th><th>memory</th><th>slots</th><th>active pks</th></tr></thead>
      <tbody>${s.workers.map(
        (w) => html`<tr data-testid="worker-row" data-worker=${w.index}>
          <td>${w.index}</td><td><span class=${`badge worker-${w.state}`}>${w.state}</span></td><td>${w.pid ?? '–'}</td>
          <td>${since(w.startedAt)}</td><td>${w.restarts}</td><td>${w.cpu === null ? '–' : `${w.cpu.toFixed(1)} %`}</td>
          <td>${bytes(w.memory)}</td><td>${w.slotsUsed} / ${w.slotsTotal}</td>
          <td>${w.activePks.map(
            (pk) =>
              html`<a href=${`/process/${pk}`} onClick=${(e: Event) => {
                e.preventDefault();
                navigate(`/process/${pk}`);
              }}>${pk}</a> `,
          )}</td>
        </tr>`,
      )}</tbody>
    </table>
    <p class="actions">
      <button data-action="increase" onClick=${() => act('Add a worker to the daemon?', '/api/daemon/increase', notify)}>+ worker</button>
      <button data-action="decrease" onClick=${() => act('Stop one worker of the daemon (it drains first)?', '/api/daemon/decrease', notify)}>− worker</button>
      <button class="danger" data-action="restart" onClick=${() => act(`Restart the daemon of ${s.hostname} (its workers are replaced one by one)?`, '/api/daemon/restart', notify)}>Restart daemon</button>
      <span class="muted" data-testid="actions-scope">These act on this host's daemon (${s.hostname}) only; manage another host's daemon with <code>aiida daemon</code> on that host.</span>
    </p>
  </section>`;
}

/**
 * The other hosts of the profile, from the store's worker registry (every worker writes its row
 * at its start and each heartbeat). This host is listed here only when its daemon does not answer,
 * so that workers it left behind (stale) are seen.
 */
function HostsPanel({ daemon }: { daemon: DaemonView | undefined }) {
  if (!daemon) return null;
  if (!daemon.cluster) {
    if (!daemon.clusterMessage) return null;
    return html`<section class="panel" data-testid="hosts"><h2>Other hosts</h2>
      <p class="muted" data-testid="hosts-error">The store's worker registry can't be read: ${daemon.clusterMessage.message}</p></section>`;
  }
  const c = daemon.cluster;
  const shown = c.hosts.filter((h) => !h.thisHost || !daemon.running);
  return html`<section class="panel" data-testid="hosts">
    <h2>Hosts of the profile</h2>
    <p class="muted" data-testid="hosts-summary">${c.hosts.length} host(s) in the store's worker registry, ${c.workers - c.staleWorkers} live and ${c.staleWorkers} stale worker(s); a worker without a heartbeat for ${c.staleAfter} s is stale. Other hosts are shown from the registry only: no CPU or memory, no actions.</p>
    ${
      shown.length === 0
        ? html`<p class="muted">No other host has workers registered.</p>`
        : shown.map(
            (h) => html`<div class="host" data-testid="host" data-host=${h.hostname}>
              <h3>${h.hostname}${h.thisHost ? ' (this host)' : ''}: ${h.liveWorkers} live, ${h.workers.length - h.liveWorkers} stale, slots ${h.slotsUsed} / ${h.slotsTotal}</h3>
              <table class="grid">
                <thead><tr><th>pid</th><th>state</th><th>slots</th><th>uptime</th><th>last heartbeat</th><th>worker id</th></tr></thead>
                <tbody>${h.workers.map(
                  (w) => html`<tr data-testid="host-worker-row" data-pid=${w.pid}>
                    <td>${w.pid}</td><td><span class=${`badge ${w.stale ? 'worker-stale' : 'worker-ready'}`} data-stale=${String(w.stale)}>${w.stale ? 'stale' : 'live'}</span></td>
                    <td>${w.slotsUsed} / ${w.slotsTotal}</td><td>${since(w.startedAt)}</td><td>${since(w.lastHeartbeatAt)} ago</td><td><code>${w.workerId}</code></td>
                  </tr>`,
                )}</tbody>
              </table>
            </div>`,
          )
    }
  </section>`;
}

function Chart({ activity }: { activity: Summary['activity'] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    const data: uPlot.AlignedData = [
      activity.map((b) => Date.parse(b.time) / 1000),
      activity.map((b) => b.finished),
      activity.map((b) => b.excepted + b.killed),
    ];
    if (!plot.current && box.current) {
      plot.current = new uPlot(
        {
          width: Math.max(300, box.current.clientWidth),
          height: 160,
          series: [
            {},
            { label: 'finished / s', stroke: '#2e7d32', fill: 'rgba(46,125,50,0.15)' },
            { label: 'excepted or killed / s', stroke: '#c62828' },
          ],
          axes: [{}, { size: 40 }],
        },
        data,
        box.current,
      );
    } else {
      plot.current?.setData(data);
    }
  }, [activity]);
  useEffect(() => () => plot.current?.destroy(), []);
  return html`<div ref=${box} class="chart" data-testid="chart"></div>`;
}

interface Filters {
  state: string;
  type: string;
  exit_status: string;
  created_after: string;
  created_before: string;
  sort: string;
  order: string;
  offset: number;
}

const PAGE_SIZE = 50;

function ProcessTable({ refresh, notify }: { refresh: number; notify: (t: string) => void }) {
  const [filters, setFilters] = useState<Filters>({
    state: '',
    type: '',
    exit_status: '',
    created_after: '',
    created_before: '',
    sort: 'pk',
    order: 'desc',
    offset: 0,
  });
  const [page, setPage] = useState<Page | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(filters)) {
      if (v === '' || v === undefined) continue;
      if (k === 'created_after' || k === 'created_before') {
        params.set(k, new Date(String(v)).toISOString());
      } else params.set(k, String(v));
    }
    params.set('limit', String(PAGE_SIZE));
    api<Page>(`/api/processes?${params}`)
      .then((p) => {
        setPage(p);
        setError(undefined);
      })
      .catch((e: Error) => setError(e.message));
  }, [filters, refresh]);
  const set = (patch: Partial<Filters>) => setFilters({ ...filters, offset: 0, ...patch });
  const sortBy = (key: string) =>
    set({ sort: key, order: filters.sort === key && filters.order === 'desc' ? 'asc' : 'desc' });
  const head = (key: string, label: string) =>
    html`<th class="sortable" onClick=${() => sortBy(key)}>${label}${filters.sort === key ? (filters.order === 'asc' ? ' ▲' : ' ▼') : ''}</th>`;
  const input = (key: keyof Filters) => (e: Event) =>
    set({ [key]: (e.target as HTMLInputElement).value } as Partial<Filters>);
  return html`<section class="panel">
    <h2>Processes ${page ? html`<span class="muted" data-testid="total">${page.total}</span>` : ''}</h2>
    <form class="filters" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>state <select data-filter="state" value=${filters.state} onChange=${input('state')}>
        <option value="">all</option>${STATES.map((s) => html`<option value=${s}>${s}</option>`)}
      </select></label>
      <label>type <input data-filter="type" value=${filters.type} onChange=${input('type')} placeholder="core.shell" /></label>
      <label>exit status <input data-filter="exit_status" size="5" value=${filters.exit_status} onChange=${input('exit_status')} /></label>
      <label>created after <input type="datetime-local" value=${filters.created_after} onChange=${input('created_after')} /></label>
      <label>before <input type="datetime-local" value=${filters.created_before} onChange=${input('created_before')} /></label>
    </form>
    ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
    <table class="grid" data-testid="processes">
      <thead><tr>${head('pk', 'pk')}${head('type', 'type')}${head('state', 'state')}<th>exit</th>${head('created', 'created')}${head('modified', 'modified')}<th>status</th><th></th></tr></thead>
      <tbody>${(page?.processes ?? []).map(
        (p) => html`<tr data-testid="process-row" data-pk=${p.pk}>
          <td><a href=${`/process/${p.pk}`} onClick=${(e: Event) => {
            e.preventDefault();
            navigate(`/process/${p.pk}`);
          }}>${p.pk}</a></td>
          <td>${p.type}</td><td><${StateBadge} state=${p.state} paused=${p.paused} /></td>
          <td>${p.exitStatus ?? ''}</td><td>${time(p.createdAt)}</td><td>${since(p.modifiedAt)} ago</td>
          <td class="status">${p.processStatus ?? ''}</td><td><${ProcessActions} p=${p} notify=${notify} /></td>
        </tr>`,
      )}</tbody>
    </table>
    ${
      page
        ? html`<p class="pager">
      <button disabled=${filters.offset === 0} onClick=${() => setFilters({ ...filters, offset: Math.max(0, filters.offset - PAGE_SIZE) })}>‹ newer</button>
      <span>${page.total === 0 ? 0 : filters.offset + 1}–${Math.min(page.total, filters.offset + PAGE_SIZE)} of ${page.total}</span>
      <button disabled=${filters.offset + PAGE_SIZE >= page.total} onClick=${() => setFilters({ ...filters, offset: filters.offset + PAGE_SIZE })}>older ›</button>
    </p>`
        : ''
    }
  </section>`;
}

function Dashboard({
  daemon,
  refresh,
  notify,
}: {
  daemon: DaemonView | undefined;
  refresh: number;
  notify: (t: string) => void;
}) {
  const [summary, setSummary] = useState<Summary | undefined>();
  useEffect(() => {
    api<Summary>('/api/summary')
      .then(setSummary)
      .catch(() => {});
  }, [refresh]);
  const byState = new Map<string, number>();
  for (const c of summary?.summary.counts ?? [])
    byState.set(c.state, (byState.get(c.state) ?? 0) + c.count);
  return html`
    <${DaemonPanel} daemon=${daemon} notify=${notify} />
    <${HostsPanel} daemon=${daemon} />
    <section class="panel">
      <h2>Processes finished per second, last 5 minutes</h2>
      <p class="counts">${STATES.map((s) => html`<span class=${`badge state-${s}`} data-count=${s}>${s}: ${byState.get(s) ?? 0}</span> `)}</p>
      ${summary ? html`<${Chart} activity=${summary.activity} />` : ''}
    </section>
    <${ProcessTable} refresh=${refresh} notify=${notify} />`;
}

function Tree({ node, current }: { node: CallNode; current: number }) {
  return html`<li>
    ${
      node.pk === current
        ? html`<strong>${node.pk}</strong>`
        : html`<a href=${`/process/${node.pk}`} onClick=${(e: Event) => {
            e.preventDefault();
            navigate(`/process/${node.pk}`);
          }}>${node.pk}</a>`
    }
    ${' '}${node.type} <${StateBadge} state=${node.state} />
    ${node.children.length > 0 ? html`<ul>${node.children.map((c) => html`<${Tree} node=${c} current=${current} />`)}</ul>` : ''}
  </li>`;
}

function ProcessPage({
  pk,
  refresh,
  notify,
}: {
  pk: string;
  refresh: number;
  notify: (t: string) => void;
}) {
  const [detail, setDetail] = useState<Detail | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    api<Detail>(`/api/processes/${pk}`)
      .then((d) => {
        setDetail(d);
        setError(undefined);
      })
      .catch((e: Error) => setError(e.message));
  }, [pk, refresh]);
  const back = html`<p><a href="/" onClick=${(e: Event) => {
    e.preventDefault();
    navigate('/');
  }}>← all processes</a></p>`;
  if (error) return html`${back}<p class="error" role="alert">${error}</p>`;
  if (!detail) return html`${back}<p>Loading process ${pk}…</p>`;
  const p = detail.process;
  const json = (v: unknown) =>
    html`<pre>${v === null || v === undefined ? '–' : JSON.stringify(v, null, 2)}</pre>`;
  return html`${back}
    <section class="panel" data-testid="process-detail" data-state=${p.state}>
      <h2>Process ${p.pk} <${StateBadge} state=${p.state} paused=${p.paused} /> <${ProcessActions} p=${p} notify=${notify} /></h2>
      <dl class="facts">
        <dt>type</dt><dd>${p.type}</dd><dt>uuid</dt><dd>${p.uuid}</dd>
        <dt>status</dt><dd>${p.processStatus ?? '–'}</dd>
        <dt>exit status</dt><dd>${p.exitStatus ?? '–'}${p.exitMessage ? ` (${p.exitMessage})` : ''}</dd>
        <dt>created</dt><dd>${time(p.createdAt)}</dd><dt>started</dt><dd>${time(p.startedAt)}</dd><dt>ended</dt><dd>${time(p.finishedAt)}</dd>
        <dt>attempts</dt><dd>${p.attempts}</dd><dt>owner</dt><dd>${p.owner ?? '–'}</dd>
        ${
          p.parentPk !== null
            ? html`<dt>parent</dt><dd><a href=${`/process/${p.parentPk}`} onClick=${(e: Event) => {
                e.preventDefault();
                navigate(`/process/${p.parentPk}`);
              }}>${p.parentPk}</a></dd>`
            : ''
        }
      </dl>
    </section>
    <div class="columns">
      <section class="panel"><h3>Inputs</h3>${json(p.inputs)}</section>
      <section class="panel"><h3>Outputs</h3>${json(p.outputs)}</section>
    </div>
    ${p.exception ? html`<section class="panel"><h3>Exception</h3><pre class="error">${p.exception}</pre></section>` : ''}
    <section class="panel"><h3>Report log</h3>
      ${detail.reports.length === 0 ? html`<p class="muted">No reports.</p>` : html`<table class="grid"><tbody>${detail.reports.map((r) => html`<tr><td>${time(r.time)}</td><td>${r.level}</td><td>${r.message}</td></tr>`)}</tbody></table>`}
    </section>
    <section class="panel"><h3>Call tree</h3><ul class="tree"><${Tree} node=${detail.callTree} current=${p.pk} /></ul></section>`;
}

function App() {
  const [path, setPath] = useState(location.pathname);
  const [daemon, setDaemon] = useState<DaemonView | undefined>();
  const [refresh, setRefresh] = useState(0);
  const [notice, setNotice] = useState<string | undefined>();
  useEffect(() => {
    const onPop = () => setPath(location.pathname);
    addEventListener('popstate', onPop);
    return () => removeEventListener('popstate', onPop);
  }, []);
  const connected = useLive(
    useCallback((topic: string, data: unknown) => {
      if (topic === 'daemon') setDaemon(data as DaemonView);
      else setRefresh((n) => n + 1);
    }, []),
  );
  const match = /^\/process\/(\d+)$/.exec(path);
  return html`<header>
      <h1><a href="/" onClick=${(e: Event) => {
        e.preventDefault();
        navigate('/');
      }}>AiiDA</a> <span class="profile">profile ${profile}</span></h1>
      <span class=${connected ? 'live on' : 'live'} data-testid="live">${connected ? '● live' : '○ reconnecting'}</span>
    </header>
    ${notice ? html`<p class="notice" role="status" onClick=${() => setNotice(undefined)}>${notice}</p>` : ''}
    <main>
      ${match ? html`<${ProcessPage} pk=${match[1]} refresh=${refresh} notify=${setNotice} />` : html`<${Dashboard} daemon=${daemon} refresh=${refresh} notify=${setNotice} />`}
    </main>`;
}

const root = document.getElementById('app')!;
root.textContent = '';
render(html`<${App} />`, root);
