/**
 * @aiida/web: the dashboard of `aiida web` (an HTTP server with a bundled page, a JSON API, live
 * updates by server-sent events) and `/metrics` in the Prometheus text format. This list is the
 * package's whole public API.
 */
export { CSRF_HEADER, isLoopbackHost, TOKEN_COOKIE } from './access.js';
export { isWebError, WebError, type WebErrorCode, WebErrorCodes } from './errors.js';
export { createMetricsEndpoint, DURATION_BUCKETS, type MetricsEndpoint } from './metrics.js';
export type { DashboardDaemon, DashboardEngine } from './ports.js';
export { MAX_PAGE_SIZE, parsePk, parseProcessQuery } from './process-query.js';
export { startWebServer, type WebServer, type WebServerOptions } from './server.js';
