// The dashboard in a real browser: Debian's chromium driven by playwright-core (never a
// downloaded browser), against a real daemon of 2 workers, the real store and RabbitMQ.
// Screenshots of each page are written to .test-results/web/ as artifacts of the run.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startWebServer, type WebServer } from '@aiida/web';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { type E2E, setupE2E, withLogs } from '../../../tests/e2e/helpers.js';
import { stopPid } from '../../../tests/support/processes.js';
import { waitFor } from '../../../tests/support/wait-for.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..', '..', '..');
const CLI = join(ROOT, 'packages', 'cli', 'dist', 'bin.js');
const ARTIFACTS = join(ROOT, '.test-results', 'web');
const CHROMIUM = '/usr/bin/chromium';

let e2e: E2E;
let server: WebServer;
let context: BrowserContext;
let page: Page;
let userDataDir: string;
/** The questions the page asked, and how the next ones are answered. */
const dialogs: string[] = [];
let answer: 'accept' | 'dismiss' = 'accept';
/** Every POST the page sent (the actions). */
const posts: string[] = [];

/** Pids of the processes whose command line names our browser profile folder. */
function browserPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.includes(userDataDir)) pids.push(Number(entry));
    } catch {}
  }
  return pids;
}

async function screenshot(name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The row of process `pk` in the table, once it shows `state`. */
function rowInState(pk: number, state: string): string {
  return `[data-testid="process-row"][data-pk="${pk}"] [data-state="${state}"]`;
}

beforeAll(async () => {
  e2e = await setupE2E({ name: 'web-browser' });
  await e2e.client.startDaemon({ numberWorkers: 2 });
  server = await startWebServer({
    engine: e2e.engine,
    daemon: e2e.client,
    profileName: 'web-browser',
    port: 0,
  });
  userDataDir = mkdtempSync(join(tmpdir(), 'aiida-web-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  // Every action asks for confirmation: answer as the test says, and remember the question.
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void (answer === 'accept' ? dialog.accept() : dialog.dismiss());
  });
  page.on('request', (request) => {
    if (request.method() === 'POST') posts.push(new URL(request.url()).pathname);
  });
}, 120_000);

afterAll(async () => {
  await context?.close().catch(() => {});
  if (userDataDir) {
    for (const pid of browserPids()) await stopPid(pid, 3);
    rmSync(userDataDir, { recursive: true, force: true });
  }
  await server?.close();
  await e2e?.cleanup();
}, 120_000);

test('the page shows the daemon with both workers', async () => {
  await withLogs(e2e, async () => {
    await page.goto(server.url);
    await page.waitForFunction(
      () => document.querySelectorAll('[data-testid="worker-row"]').length === 2,
      undefined,
      { timeout: 20_000 },
    );
    const pids = await page.$$eval('[data-testid="worker-row"] td:nth-child(3)', (cells) =>
      cells.map((c) => Number(c.textContent)),
    );
    const status = await e2e.client.getStatus();
    expect(pids.sort()).toEqual(status.workers.map((w) => w.pid).sort());
    await page.waitForSelector('[data-testid="live"]:text("live")', { timeout: 10_000 });
    await screenshot('dashboard');
  });
}, 60_000);

test("another host's workers show from the store's registry, live then stale without a reload; actions say they act on this host only", async () => {
  await withLogs(e2e, async () => {
    // A worker of host beta in the registry, as beta's daemon writes it; it never heartbeats.
    const workerId = 'beta:4242:web-test';
    await e2e.engine.store.registerWorker({
      workerId,
      hostname: 'beta',
      pid: 4242,
      slotsUsed: 1,
      slotsTotal: 10,
    });
    try {
      const row = '[data-testid="host"][data-host="beta"] [data-testid="host-worker-row"]';
      await page.waitForSelector(`${row}[data-pid="4242"] [data-stale="false"]`, {
        timeout: 10_000,
      });
      expect(await page.textContent('[data-testid="host"][data-host="beta"] h3')).toContain(
        'beta: 1 live, 0 stale, slots 1 / 10',
      );
      // This host is the daemon panel, with its actions' scope said; not a registry entry.
      const status = await e2e.client.getStatus();
      expect(await page.textContent('[data-testid="daemon"] h2')).toContain(
        `${status.hostname} (this host)`,
      );
      expect(await page.textContent('[data-testid="actions-scope"]')).toContain(
        `this host's daemon (${status.hostname}) only`,
      );
      expect(
        await page.locator(`[data-testid="host"][data-host="${status.hostname}"]`).count(),
      ).toBe(0);
      expect(await page.textContent('[data-testid="hosts-summary"]')).toMatch(/^2 host\(s\)/);
      await screenshot('dashboard-hosts');
      // No heartbeat for daemon.lease_timeout (5 s): stale, pushed to the page.
      await page.waitForSelector(`${row}[data-pid="4242"] [data-stale="true"]`, {
        timeout: 20_000,
      });
    } finally {
      await e2e.engine.store.unregisterWorker(workerId);
    }
    await page.waitForSelector('[data-testid="host"][data-host="beta"]', {
      state: 'detached',
      timeout: 10_000,
    });
  });
}, 60_000);

test('the + worker and − worker buttons scale the daemon, after confirmation', async () => {
  await withLogs(e2e, async () => {
    const rows = () => page.locator('[data-testid="worker-row"]').count();
    await page.waitForSelector('button[data-action="increase"]', { timeout: 10_000 });
    await page.click('button[data-action="increase"]');
    expect(dialogs.at(-1)).toContain('Add a worker');
    await waitFor(async () => (await rows()) === 3, { timeout: 60, what: 'a third worker row' });
    expect((await e2e.client.getStatus()).numberWorkers).toBe(3);
    await page.click('button[data-action="decrease"]');
    await waitFor(async () => (await rows()) === 2, { timeout: 60, what: 'two worker rows again' });
    expect((await e2e.client.getStatus()).numberWorkers).toBe(2);
  });
}, 150_000);

test('a process submitted from the command line appears without a reload and reaches finished', async () => {
  await withLogs(e2e, async () => {
    // A marker that a reload would wipe.
    await page.evaluate(() => {
      (window as unknown as { notReloaded: boolean }).notReloaded = true;
    });
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        CLI,
        '-p',
        'web-browser',
        'process',
        'submit',
        'core.arithmetic.add',
        '-i',
        'x=20',
        '-i',
        'y=22',
        '--json',
      ],
      { env: { ...process.env, AIIDA_PATH: e2e.tp.aiidaPath }, timeout: 60_000 },
    );
    const pk = (JSON.parse(stdout) as { pk: number }[])[0]!.pk;
    const submittedAt = Date.now();
    await page.waitForSelector(`[data-testid="process-row"][data-pk="${pk}"]`, { timeout: 10_000 });
    const appearedAfter = (Date.now() - submittedAt) / 1000;
    await page.waitForSelector(rowInState(pk, 'finished'), { timeout: 30_000 });
    expect(
      await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded),
    ).toBe(true);
    expect((await e2e.engine.getProcess(pk)).outputs).toEqual({ sum: 42 });
    process.stdout.write(
      `aiida web: process ${pk} appeared on the page ${appearedAfter.toFixed(2)} s after submit\n`,
    );
    await screenshot('dashboard-finished');
  });
}, 90_000);

test('the kill button on a running `sleep 60` shell job makes it killed', async () => {
  await withLogs(e2e, async () => {
    const { pk } = await e2e.engine.submit('core.shell', { command: 'sleep', args: ['60'] });
    await waitFor(async () => (await e2e.engine.getProcess(pk)).state === 'running', {
      timeout: 30,
      what: `shell job ${pk} to run`,
    });
    await page.waitForSelector(rowInState(pk, 'running'), { timeout: 10_000 });
    const kill = `[data-testid="process-row"][data-pk="${pk}"] button[data-action="kill"]`;
    // Said no to: nothing happens.
    answer = 'dismiss';
    await page.click(kill);
    answer = 'accept';
    expect(dialogs.at(-1)).toContain(`Kill process ${pk}?`);
    expect(posts).not.toContain(`/api/processes/${pk}/kill`);
    await page.click(kill);
    await page.waitForSelector(rowInState(pk, 'killed'), { timeout: 30_000 });
    expect(posts.filter((p) => p === `/api/processes/${pk}/kill`)).toHaveLength(1);
    const row = await e2e.engine.getProcess(pk);
    expect(row.state).toBe('killed');
    expect(row.processStatus).toContain('web dashboard');
    // The process page: inputs, status, report log and call tree.
    await page.click(`[data-testid="process-row"][data-pk="${pk}"] a`);
    await page.waitForSelector('[data-testid="process-detail"][data-state="killed"]', {
      timeout: 10_000,
    });
    expect(await page.textContent('[data-testid="process-detail"]')).toContain('core.shell');
    expect(await page.textContent('main')).toContain('"sleep"');
    await screenshot('process-killed');
  });
}, 90_000);
