import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProfile } from '@aiida/config';
import { openEngine, silentLogger } from '@aiida/engine';
import { startWebServer } from '@aiida/web';
import { chromium } from 'playwright-core';
import type { BenchConfig } from './config.js';
import { fmt, log } from './log.js';
import { type Figure, figure } from './results.js';
import { nowMs, summarize } from './stats.js';

const CHROMIUM = '/usr/bin/chromium';
const ROWS = 100_000;
const BATCH = 1_000;

/** Median time of `runs` calls of `fn`, in milliseconds, after one warm-up call. */
async function timeCalls(reps: number, fn: () => Promise<unknown>): Promise<number[]> {
  await fn();
  const samples: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = nowMs();
    await fn();
    samples.push(nowMs() - t0);
  }
  return samples;
}

/**
 * The dashboard over a store of 100,000 processes (no daemon: the rows wait, `created`): the first
 * page of the table rendered in Debian's chromium (navigation until its 50 rows are in the DOM),
 * the API's first and a deep page, the summary and `/metrics`. Goal (issue 14): first page < 1 s.
 */
export async function benchWeb(config: BenchConfig): Promise<Figure[]> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`);
  }
  const aiidaPath = mkdtempSync(join(tmpdir(), 'aiida-bench-web-'));
  const userDataDir = mkdtempSync(join(tmpdir(), 'aiida-bench-chromium-'));
  const profile = createProfile({ name: 'bench-web', setDefault: true }, { aiidaPath });
  const engine = await openEngine(profile, {
    dispatcher: null,
    control: null,
    logger: silentLogger,
  });
  let server: Awaited<ReturnType<typeof startWebServer>> | undefined;
  let context: Awaited<ReturnType<typeof chromium.launchPersistentContext>> | undefined;
  try {
    const t0 = nowMs();
    for (let i = 0; i < ROWS; i += BATCH) {
      await engine.submitMany(
        Array.from({ length: BATCH }, (_, j) => ({
          type: 'core.arithmetic.add',
          inputs: { x: i + j, y: 1 },
        })),
      );
    }
    log(`web: ${ROWS} processes stored in ${fmt((nowMs() - t0) / 1000)} s`);
    server = await startWebServer({ engine, profileName: 'bench-web', port: 0 });
    const base = server.url;
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
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const firstPage = await timeCalls(config.reps, async () => {
      await page.goto('about:blank');
      await page.goto(base);
      await page.waitForFunction(
        `document.querySelectorAll('[data-testid="process-row"]').length === 50`,
        undefined,
        { timeout: 30_000 },
      );
    });
    const get = (path: string) => async () => {
      const response = await fetch(new URL(path, base));
      if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
      await response.arrayBuffer();
    };
    const apiFirst = await timeCalls(config.reps, get('/api/processes?limit=50'));
    const apiDeep = await timeCalls(
      config.reps,
      get(`/api/processes?limit=50&sort=created&order=asc&offset=${ROWS - 100}`),
    );
    const summary = await timeCalls(config.reps, get('/api/summary'));
    const metrics = await timeCalls(config.reps, get('/metrics'));
    const one = (id: string, title: string, samples: number[], goal?: number): Figure =>
      figure({
        id,
        section: 'web',
        title,
        unit: 'ms',
        better: 'lower',
        ours: summarize(samples),
        goal:
          goal === undefined
            ? undefined
            : { text: `under ${goal} ms`, met: summarize(samples).median < goal },
      });
    return [
      one(
        'web.first-page',
        `dashboard: first page of the table rendered in chromium, ${ROWS.toLocaleString('en')} processes`,
        firstPage,
        1000,
      ),
      one('web.api-first-page', 'GET /api/processes, first page of 50', apiFirst),
      one(
        'web.api-deep-page',
        'GET /api/processes, a page at offset 99,900 sorted by creation',
        apiDeep,
      ),
      one('web.summary', 'GET /api/summary (counts by state and type, activity of 5 min)', summary),
      one('web.metrics', 'GET /metrics (counts, histograms in SQL)', metrics),
    ];
  } finally {
    await context?.close().catch(() => {});
    await server?.close();
    await engine.close();
    rmSync(userDataDir, { recursive: true, force: true });
    rmSync(aiidaPath, { recursive: true, force: true });
  }
}
