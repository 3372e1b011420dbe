import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ClusterStatus, type DaemonStatus, isDaemonException } from '@aiida/daemon-client';
import { isEngineError, type ProcessRecord } from '@aiida/engine';
import { checkCsrf, checkToken, isLoopbackHost, newSecret, TOKEN_COOKIE } from './access.js';
import { isWebError, WebError, WebErrorCodes } from './errors.js';
import { createMetricsEndpoint, type MetricsEndpoint } from './metrics.js';
import type { DashboardDaemon, DashboardEngine } from './ports.js';
import { parsePk, parseProcessQuery } from './process-query.js';

/** Options of {@link startWebServer}. */
export interface WebServerOptions {
  /** The engine of the profile (reads, aggregates, control). */
  engine: DashboardEngine;
  /** The daemon of the profile; without it the page shows no daemon and scaling is refused. */
  daemon?: DashboardDaemon;
  /** Name of the profile, shown on the page. */
  profileName: string;
  /** Address to bind. @default '127.0.0.1' */
  host?: string;
  /** Port; 0 picks a free one. @default 8787 */
  port?: number;
  /**
   * Access token every request must present. Required (given or generated with
   * `generateToken`) when `host` is not a loopback address; optional on loopback.
   */
  token?: string;
  /** Generate a token when none is given (for a non-loopback `host`). @default false */
  generateToken?: boolean;
  /** How often the store is polled for changes to push to open pages, seconds. @default 1 */
  pollInterval?: number;
  /** Folder of the bundled page. @default the one built with this package */
  pageDir?: string;
}

/** A running dashboard server. */
export interface WebServer {
  /** URL of the page (with `?token=` when a token is required). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** The access token, when one is required. */
  readonly token: string | undefined;
  /** Stops accepting connections, ends open event streams, and resolves when closed. */
  close(): Promise<void>;
}

const LIVE_TOPICS = ['processes', 'daemon'] as const;

function defaultPageDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const built = join(here, 'page');
  // Run from src/ (tests): the page is built into dist/page.
  return existsSync(built) ? built : join(here, '..', 'dist', 'page');
}

const STATIC: Record<string, string> = {
  '/assets/app.js': 'text/javascript; charset=utf-8',
  '/assets/app.css': 'text/css; charset=utf-8',
};

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

/** Turns anything thrown by a handler into a status and a JSON error, never a stack trace. */
function toHttpError(error: unknown): { status: number; body: { error: unknown } } {
  if (isWebError(error)) return { status: error.status, body: { error: error.toJSON() } };
  if (isEngineError(error)) {
    const status =
      error.code === 'process_not_found'
        ? 404
        : error.code === 'process_terminal' || error.code === 'process_active'
          ? 409
          : error.code === 'inputs_invalid'
            ? 400
            : 500;
    return { status, body: { error: { code: error.code, message: error.message } } };
  }
  if (isDaemonException(error)) {
    const status = error.code === 'not_running' || error.code === 'stale_pid' ? 503 : 502;
    return { status, body: { error: { code: error.code, message: error.message } } };
  }
  return {
    status: 500,
    body: { error: { code: 'internal', message: 'internal error; see the server log' } },
  };
}

/**
 * What `GET /api/daemon` answers and the `daemon` event carries: this host's daemon (`status`,
 * from its control socket, or `message` saying why there is none) and every host's workers
 * (`cluster`, from the store's worker registry, or `clusterMessage` saying why it can't be read).
 */
interface DaemonView {
  running: boolean;
  status?: DaemonStatus;
  message?: unknown;
  cluster: ClusterStatus | null;
  clusterMessage?: unknown;
}

/** The descendants of `pk`, as a tree (at most `limit` nodes). */
interface CallNode {
  pk: number;
  type: string;
  state: string;
  exitStatus: number | null;
  children: CallNode[];
}

function brief(p: ProcessRecord): Omit<CallNode, 'children'> {
  return { pk: p.pk, type: p.type, state: p.state, exitStatus: p.exitStatus };
}

async function callTree(engine: DashboardEngine, root: ProcessRecord, limit = 500) {
  const node: CallNode = { ...brief(root), children: [] };
  const queue: CallNode[] = [node];
  let count = 1;
  while (queue.length > 0 && count < limit) {
    const parent = queue.shift()!;
    const kids = await engine.listProcesses({
      parentPk: parent.pk,
      order: 'asc',
      limit: limit - count,
    });
    for (const kid of kids) {
      const child: CallNode = { ...brief(kid), children: [] };
      parent.children.push(child);
      queue.push(child);
      count++;
    }
  }
  return node;
}

/**
 * Starts the dashboard's HTTP server: the page, its JSON API (`/api/...`), live updates by
 * server-sent events (`/api/events`) and `/metrics`.
 *
 * Safe by default: it binds to loopback; any other `host` needs a token, checked on every request
 * (a {@link WebError} `web_insecure_bind` otherwise); actions are POST only and need the page's
 * CSRF token in the `x-csrf-token` header; errors are JSON `{ error: { code, message } }` with a
 * 4xx status for bad requests, never a stack trace.
 */
export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const host = options.host ?? '127.0.0.1';
  const loopback = isLoopbackHost(host);
  let token = options.token;
  if (token !== undefined && !/^[A-Za-z0-9._~-]{16,}$/.test(token)) {
    throw new WebError(
      WebErrorCodes.insecureBind,
      'the access token must be at least 16 characters long, of letters, digits and . _ ~ - only',
    );
  }
  if (!loopback && token === undefined) {
    if (!options.generateToken) {
      throw new WebError(
        WebErrorCodes.insecureBind,
        `refusing to serve the dashboard on ${host} (not a loopback address) without an access token: give one with --token, or let \`aiida web\` generate it`,
        { details: { host } },
      );
    }
    token = newSecret();
  }
  const csrfToken = newSecret();
  const { engine, daemon } = options;
  const metrics: MetricsEndpoint = createMetricsEndpoint(engine, daemon);
  const pageDir = options.pageDir ?? defaultPageDir();
  const readPage = (file: string) => {
    const path = join(pageDir, file);
    if (!existsSync(path)) {
      throw new WebError(
        WebErrorCodes.notFound,
        `the dashboard page is not built (${path} is missing); run \`pnpm build\``,
      );
    }
    return readFileSync(path);
  };

  // --- live updates: one poller for every open page --------------------------------------------
  const streams = new Set<ServerResponse>();
  let pollTimer: NodeJS.Timeout | undefined;
  let lastProcesses: string | undefined;
  let lastDaemon = '';
  let polling = false;
  const broadcast = (event: string, data: unknown) => {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const s of streams) s.write(frame);
  };
  const daemonView = async (): Promise<DaemonView> => {
    if (!daemon) return { running: false, message: 'no daemon client', cluster: null };
    // This host's daemon from its control socket, every host's workers from the store's registry.
    const [local, cluster] = await Promise.all([
      daemon.getStatus({ timeout: 2 }).then(
        (status) => ({ running: true, status }),
        (error: unknown) => ({ running: false, message: toHttpError(error).body.error }),
      ),
      // Through the engine's open store: a poll opens no connection of its own.
      daemon.getClusterStatus({ store: engine.store }).then(
        (status) => ({ cluster: status }),
        (error: unknown) => ({ cluster: null, clusterMessage: toHttpError(error).body.error }),
      ),
    ]);
    return { ...local, ...cluster };
  };
  const poll = async () => {
    if (polling) return;
    polling = true;
    try {
      // A cheap token, not a query over the rows: the page reads again only when it changed.
      const token = await engine.changeToken();
      // The first poll after a quiet spell only learns the token: a page reads on its own load.
      if (lastProcesses === undefined) lastProcesses = token;
      if (token !== lastProcesses) {
        lastProcesses = token;
        broadcast('processes', { changed: true });
      }
      const view = await daemonView();
      const text = JSON.stringify(view);
      if (text !== lastDaemon) {
        lastDaemon = text;
        broadcast('daemon', view);
      }
    } catch {
      // A store or daemon hiccup: try again at the next tick.
    } finally {
      polling = false;
    }
  };
  const interval = (options.pollInterval ?? 1) * 1000;
  const subscribe = (request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    response.write(`retry: 2000\n: ${LIVE_TOPICS.join(' ')}\n\n`);
    streams.add(response);
    // A new page gets the daemon's state at once (it reads the processes on its own load).
    lastDaemon = '';
    if (!pollTimer) {
      lastProcesses = undefined;
      pollTimer = setInterval(() => void poll(), interval);
    }
    void poll();
    request.on('close', () => {
      streams.delete(response);
      if (streams.size === 0 && pollTimer) {
        clearInterval(pollTimer);
        pollTimer = undefined;
      }
    });
  };

  // --- routes ----------------------------------------------------------------------------------
  const get = async (url: URL, request: IncomingMessage, response: ServerResponse) => {
    const path = url.pathname;
    if (path === '/' || path === '/index.html' || /^\/process\/\d+$/.test(path)) {
      const html = readPage('index.html')
        .toString('utf8')
        .replace('%CSRF_TOKEN%', escapeHtml(csrfToken))
        .replace('%PROFILE%', escapeHtml(options.profileName));
      response.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy':
          "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
        'x-frame-options': 'DENY',
      });
      response.end(html);
      return;
    }
    const type = STATIC[path];
    if (type) {
      const body = readPage(path.slice('/assets/'.length));
      response.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache' });
      response.end(body);
      return;
    }
    if (path === '/metrics') {
      const text = await metrics.scrape();
      response.writeHead(200, { 'content-type': metrics.contentType });
      response.end(text);
      return;
    }
    if (path === '/api/events') return subscribe(request, response);
    if (path === '/api/processes') {
      sendJson(response, 200, await engine.queryProcesses(parseProcessQuery(url.searchParams)));
      return;
    }
    const one = /^\/api\/processes\/([^/]+)$/.exec(path);
    if (one) {
      const pk = parsePk(decodeURIComponent(one[1]!));
      const process = await engine.getProcess(pk);
      const [reports, tree] = await Promise.all([engine.getReports(pk), callTree(engine, process)]);
      sendJson(response, 200, { process, reports, callTree: tree });
      return;
    }
    if (path === '/api/summary') {
      const minutes = 5;
      const since = new Date(Date.now() - minutes * 60_000).toISOString();
      const [summary, activity] = await Promise.all([
        engine.summarizeProcesses(),
        engine.processActivity({ since, interval: 1 }),
      ]);
      sendJson(response, 200, { summary, activity });
      return;
    }
    if (path === '/api/daemon') {
      sendJson(response, 200, await daemonView());
      return;
    }
    throw new WebError(WebErrorCodes.notFound, `no such page or API: ${path.slice(0, 200)}`);
  };

  const post = async (url: URL, request: IncomingMessage, response: ServerResponse) => {
    checkCsrf(request, csrfToken);
    // Bodies are not used; drain whatever was sent.
    request.resume();
    const path = url.pathname;
    const control = /^\/api\/processes\/([^/]+)\/(kill|pause|play)$/.exec(path);
    if (control) {
      const pk = parsePk(decodeURIComponent(control[1]!));
      const action = control[2] as 'kill' | 'pause' | 'play';
      const result =
        action === 'kill'
          ? await engine.killProcess(pk, { message: 'Killed from the web dashboard' })
          : action === 'pause'
            ? await engine.pauseProcess(pk, { message: 'Paused from the web dashboard' })
            : await engine.playProcess(pk);
      sendJson(response, 200, result);
      return;
    }
    const scale = /^\/api\/daemon\/(increase|decrease|restart)$/.exec(path);
    if (scale) {
      if (!daemon) throw new WebError(WebErrorCodes.notFound, 'this server has no daemon client');
      const action = scale[1];
      const result =
        action === 'increase'
          ? await daemon.increaseWorkers(1)
          : action === 'decrease'
            ? await daemon.decreaseWorkers(1)
            : await daemon.restartDaemon({ wait: false });
      sendJson(response, 200, { ok: true, result });
      return;
    }
    throw new WebError(WebErrorCodes.notFound, `no such action: ${path.slice(0, 200)}`);
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    let url: URL;
    try {
      url = new URL(request.url ?? '/', 'http://dashboard.invalid');
    } catch {
      throw new WebError(WebErrorCodes.badRequest, 'the request URL does not parse');
    }
    if (loopback) {
      // A page on loopback only answers to a loopback name, so another site can't reach it
      // through DNS rebinding.
      const hostHeader = (request.headers.host ?? '').replace(/:\d+$/, '');
      if (!isLoopbackHost(hostHeader)) {
        throw new WebError(
          WebErrorCodes.forbidden,
          `this dashboard serves only requests addressed to a loopback host, not '${hostHeader.slice(0, 100)}'`,
        );
      }
    }
    if (token !== undefined) {
      checkToken(request, url, token);
      // A page opened as /?token=T keeps it in an HttpOnly cookie (never readable by the page's
      // scripts) and is sent on without the token in its address.
      if (
        url.searchParams.has('token') &&
        request.method === 'GET' &&
        !url.pathname.startsWith('/api/')
      ) {
        response.writeHead(303, {
          'set-cookie': `${TOKEN_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/`,
          location: url.pathname,
        });
        response.end();
        return;
      }
    }
    if (request.method === 'GET' || request.method === 'HEAD') return get(url, request, response);
    if (request.method === 'POST') return post(url, request, response);
    throw new WebError(
      WebErrorCodes.methodNotAllowed,
      `method ${request.method} is not allowed: read with GET, act with POST`,
    );
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      const { status, body } = toHttpError(error);
      if (status >= 500 && !isDaemonException(error)) {
        process.stderr.write(`aiida web: ${request.method} ${request.url}: ${String(error)}\n`);
      }
      if (response.headersSent) {
        response.end();
        return;
      }
      request.resume();
      sendJson(response, status, body);
    });
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new WebError(
          WebErrorCodes.listenFailed,
          error.code === 'EADDRINUSE'
            ? `port ${options.port ?? 8787} on ${host} is already in use; choose another with --port`
            : `unable to listen on ${host}:${options.port ?? 8787}: ${error.message}`,
          { cause: error },
        ),
      );
    };
    server.once('error', onError);
    server.listen(options.port ?? 8787, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const base = `http://${shownHost}:${address.port}/`;
  return {
    url: token !== undefined ? `${base}?token=${token}` : base,
    host: address.address,
    port: address.port,
    token,
    close: async () => {
      if (pollTimer) clearInterval(pollTimer);
      pollTimer = undefined;
      for (const s of streams) s.end();
      streams.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}
