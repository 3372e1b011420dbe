import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { WebError, WebErrorCodes } from './errors.js';

/** Name of the cookie that carries the access token after `/?token=...` (HttpOnly). */
export const TOKEN_COOKIE = 'aiida_web_token';
/** Header every POST must carry with the page's CSRF token. */
export const CSRF_HEADER = 'x-csrf-token';

/** True when `host` binds only to this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (h.startsWith('::ffff:')) return h.slice(7).startsWith('127.');
  return false;
}

/** A fresh random secret, URL-safe. */
export function newSecret(): string {
  return randomBytes(24).toString('base64url');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookies(request: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return out;
}

/**
 * The access token a request presents: `Authorization: Bearer T`, the HttpOnly cookie, or
 * `?token=T` (how a user opens the page the first time).
 */
export function presentedToken(request: IncomingMessage, url: URL): string | undefined {
  const auth = request.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim();
  const cookie = cookies(request).get(TOKEN_COOKIE);
  if (cookie) return cookie;
  return url.searchParams.get('token') ?? undefined;
}

/** Throws `web_unauthorized` unless the request presents `token`. */
export function checkToken(request: IncomingMessage, url: URL, token: string): void {
  const given = presentedToken(request, url);
  if (given === undefined) {
    throw new WebError(
      WebErrorCodes.unauthorized,
      'this dashboard needs its access token: open it as /?token=TOKEN (printed by `aiida web`) or send `Authorization: Bearer TOKEN`',
    );
  }
  if (!same(given, token)) {
    throw new WebError(WebErrorCodes.unauthorized, 'the access token is wrong');
  }
}

/** Throws `web_forbidden` unless the request carries the page's CSRF token in its header. */
export function checkCsrf(request: IncomingMessage, csrfToken: string): void {
  const given = request.headers[CSRF_HEADER];
  if (typeof given !== 'string' || given === '') {
    throw new WebError(
      WebErrorCodes.forbidden,
      `actions need the page's CSRF token in the ${CSRF_HEADER} header; reload the page`,
    );
  }
  if (!same(given, csrfToken)) {
    throw new WebError(WebErrorCodes.forbidden, 'the CSRF token is wrong; reload the page');
  }
}
