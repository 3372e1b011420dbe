import { request as httpRequest } from 'node:http';
import { type Engine, openEngine, silentLogger } from '@aiida/engine';
import {
  isWebError,
  startWebServer,
  TOKEN_COOKIE,
  WebErrorCodes,
  type WebServer,
} from '@aiida/web';
import { createTestProfile, type TestProfile } from '../../../tests/support/test-profile.js';

// biome-ignore lint/suspicious/noExplicitAny: API answers of varied shapes, checked by the tests.
type Json = Record<string, any>;

// The dashboard's HTTP server against a real store: its JSON API, its safety rules, /metrics.
describe('aiida web: HTTP API', () => {
  let tp: TestProfile;
  let engine: Engine;
  let server: WebServer;
  let base: string;

  beforeAll(async () => {
    tp = createTestProfile({ name: 'web-http' });
    engine = await openEngine(tp.profile, {
      dispatcher: null,
      control: null,
      logger: silentLogger,
    });
    server = await startWebServer({ engine, profileName: 'web-http', port: 0 });
    base = server.url;
  });
  afterAll(async () => {
    await server?.close();
    await engine?.close();
    tp?.remove();
  });

  async function getJson(path: string, init?: RequestInit) {
    const response = await fetch(new URL(path, base), init);
    return { status: response.status, body: (await response.json()) as Json };
  }

  async function csrfToken(): Promise<string> {
    const html = await (await fetch(base)).text();
    const match = /name="csrf-token" content="([^"]+)"/.exec(html);
    if (!match) throw new Error(`no CSRF token in the page:\n${html.slice(0, 500)}`);
    return match[1]!;
  }

  test('serves the page with a CSRF token and the profile, and binds to loopback', async () => {
    expect(server.host).toBe('127.0.0.1');
    expect(server.token).toBeUndefined();
    const response = await fetch(base);
    expect(response.status).toBe(200);
    const html = await response.text();
    expect(html).toContain('web-http');
    expect(await csrfToken()).toMatch(/^[\w-]{20,}$/);
    const js = await fetch(new URL('/assets/app.js', base));
    expect(js.status).toBe(200);
    expect(js.headers.get('content-type')).toContain('javascript');
  });

  test('lists processes paged and sorted in the store, with the total', async () => {
    const pks: number[] = [];
    for (let i = 0; i < 5; i++) {
      pks.push((await engine.submit('core.arithmetic.add', { x: i, y: 1 })).pk);
    }
    const page = await getJson('/api/processes?limit=2&sort=pk&order=asc&state=created');
    expect(page.status).toBe(200);
    expect(page.body.total).toBeGreaterThanOrEqual(5);
    expect(page.body.processes).toHaveLength(2);
    expect(page.body.processes[0].pk).toBeLessThan(page.body.processes[1].pk);
    const one = await getJson(`/api/processes/${pks[0]}`);
    expect(one.status).toBe(200);
    expect(one.body.process.inputs).toEqual({ x: 0, y: 1 });
    expect(one.body.callTree).toMatchObject({ pk: pks[0], children: [] });
    expect(Array.isArray(one.body.reports)).toBe(true);
  });

  test.each([
    ['/api/processes?state=sleeping', 'state'],
    ['/api/processes?limit=0', 'limit'],
    ['/api/processes?limit=abc', 'limit'],
    ['/api/processes?offset=-1', 'offset'],
    ['/api/processes?sort=uuid;DROP TABLE processes', 'sort'],
    ['/api/processes?created_after=yesterday', 'created_after'],
    ['/api/processes?bogus=1', 'bogus'],
    ['/api/processes?type=a&type=b', 'type'],
    ['/api/processes/abc', 'pk'],
    ['/api/processes/0', 'pk'],
  ])('a malformed request %s gets a 400 naming %s, without a stack trace', async (path, name) => {
    const { status, body } = await getJson(path);
    expect(status).toBe(400);
    expect(body.error.code).toBe(WebErrorCodes.badRequest);
    expect(body.error.message).toContain(name);
    expect(JSON.stringify(body)).not.toMatch(/\s+at\s+\S+\s+\(|\.ts:\d+/);
  });

  test('an unknown pk gets a 404, an unknown path a 404, a PUT a 405', async () => {
    const missing = await getJson('/api/processes/987654321');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toEqual({
      code: 'process_not_found',
      message: expect.stringContaining('987654321'),
    });
    expect((await getJson('/api/nothing-here')).status).toBe(404);
    expect((await getJson('/api/processes', { method: 'PUT' })).status).toBe(405);
  });

  test('an action without the CSRF token is refused and changes nothing; with it, it acts', async () => {
    const { pk } = await engine.submit('core.arithmetic.add', { x: 1, y: 1 });
    const without = await getJson(`/api/processes/${pk}/kill`, { method: 'POST' });
    expect(without.status).toBe(403);
    expect(without.body.error.code).toBe(WebErrorCodes.forbidden);
    const wrong = await getJson(`/api/processes/${pk}/kill`, {
      method: 'POST',
      headers: { 'x-csrf-token': 'not-the-token-at-all' },
    });
    expect(wrong.status).toBe(403);
    expect((await engine.getProcess(pk)).state).toBe('created');
    // GET never acts.
    expect((await getJson(`/api/processes/${pk}/kill`)).status).toBe(404);
    const ok = await getJson(`/api/processes/${pk}/kill`, {
      method: 'POST',
      headers: { 'x-csrf-token': await csrfToken() },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.outcome).toBe('applied');
    expect((await engine.getProcess(pk)).state).toBe('killed');
    const again = await getJson(`/api/processes/${pk}/kill`, {
      method: 'POST',
      headers: { 'x-csrf-token': await csrfToken() },
    });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('process_terminal');
    const unknown = await getJson('/api/processes/987654321/pause', {
      method: 'POST',
      headers: { 'x-csrf-token': await csrfToken() },
    });
    expect(unknown.status).toBe(404);
  });

  test('a request addressed to another host name is refused on loopback (DNS rebinding)', async () => {
    // fetch() may not set Host: ask with node:http.
    const { status, text } = await new Promise<{ status: number; text: string }>(
      (resolve, reject) => {
        const request = httpRequest(
          new URL('/api/processes', base),
          { headers: { host: 'evil.example:8787' } },
          (response) => {
            let text = '';
            response.on('data', (chunk: Buffer) => {
              text += chunk.toString();
            });
            response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
          },
        );
        request.on('error', reject);
        request.end();
      },
    );
    expect(status).toBe(403);
    expect(JSON.parse(text).error.message).toContain('evil.example');
  });

  test('the event stream pushes a change when a process is submitted', async () => {
    const controller = new AbortController();
    const response = await fetch(new URL('/api/events', base), { signal: controller.signal });
    expect(response.headers.get('content-type')).toContain('text/event-stream');
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    const readUntil = async (pattern: RegExp, what: string) => {
      const deadline = Date.now() + 15_000;
      while (!pattern.test(text)) {
        if (Date.now() > deadline) throw new Error(`no ${what} in the stream; got: ${text}`);
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended before ${what}; got: ${text}`);
        text += decoder.decode(value);
      }
    };
    try {
      await readUntil(/event: daemon\n/, 'daemon event');
      expect(text).not.toContain('event: processes');
      await engine.submit('core.arithmetic.add', { x: 2, y: 3 });
      await readUntil(/event: processes\n/, 'processes event after the submit');
    } finally {
      controller.abort();
    }
  });

  test('without a daemon, the daemon view says so and scaling is refused', async () => {
    const view = await getJson('/api/daemon');
    expect(view.body.running).toBe(false);
    const scale = await getJson('/api/daemon/increase', {
      method: 'POST',
      headers: { 'x-csrf-token': await csrfToken() },
    });
    expect(scale.status).toBe(404);
  });
});

describe('aiida web: a non-loopback bind', () => {
  let tp: TestProfile;
  let engine: Engine;

  beforeAll(async () => {
    tp = createTestProfile({ name: 'web-token' });
    engine = await openEngine(tp.profile, {
      dispatcher: null,
      control: null,
      logger: silentLogger,
    });
  });
  afterAll(async () => {
    await engine?.close();
    tp?.remove();
  });

  test('is refused without a token, naming the host', async () => {
    let error: unknown;
    try {
      const server = await startWebServer({ engine, profileName: 'x', host: '0.0.0.0', port: 0 });
      await server.close();
    } catch (e) {
      error = e;
    }
    expect(isWebError(error)).toBe(true);
    expect((error as { code: string }).code).toBe(WebErrorCodes.insecureBind);
    expect((error as Error).message).toContain('0.0.0.0');
  });

  test.each([
    ['too short', 'short-token'],
    ['a character that would break its cookie', 'a-long-enough-token;path=/x'],
  ])('a token %s is refused', async (_why, token) => {
    let error: unknown;
    try {
      const server = await startWebServer({ engine, profileName: 'x', port: 0, token });
      await server.close();
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string }).code).toBe(WebErrorCodes.insecureBind);
    expect((error as Error).message).toContain('at least 16 characters');
  });

  test('with a token, needs it on every request and keeps it out of the page', async () => {
    const server = await startWebServer({
      engine,
      profileName: 'web-token',
      host: '0.0.0.0',
      port: 0,
      generateToken: true,
    });
    try {
      const token = server.token!;
      expect(token.length).toBeGreaterThanOrEqual(16);
      const base = `http://127.0.0.1:${server.port}`;
      for (const path of ['/', '/api/processes', '/metrics', '/assets/app.js', '/api/events']) {
        const refused = await fetch(base + path);
        expect([path, refused.status]).toEqual([path, 401]);
        expect(((await refused.json()) as Json).error.code).toBe(WebErrorCodes.unauthorized);
      }
      const wrong = await fetch(`${base}/api/processes`, {
        headers: { authorization: 'Bearer wrong-token-wrong-token' },
      });
      expect(wrong.status).toBe(401);
      const bearer = await fetch(`${base}/api/processes`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(bearer.status).toBe(200);
      // Opening /?token=T sets an HttpOnly cookie and sends the browser on without the token.
      const open = await fetch(`${base}/?token=${token}`, { redirect: 'manual' });
      expect(open.status).toBe(303);
      expect(open.headers.get('location')).toBe('/');
      const cookie = open.headers.get('set-cookie')!;
      expect(cookie).toContain(`${TOKEN_COOKIE}=`);
      expect(cookie).toContain('HttpOnly');
      const page = await fetch(`${base}/`, { headers: { cookie: cookie.split(';')[0]! } });
      expect(page.status).toBe(200);
      expect(await page.text()).not.toContain(token);
    } finally {
      await server.close();
    }
  });
});
