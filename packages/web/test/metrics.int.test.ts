import { type Engine, openEngine, type ProcessRecord, silentLogger } from '@aiida/engine';
import { startWebServer, type WebServer } from '@aiida/web';
// @ts-expect-error: the parser ships no types; its output is checked below.
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { createTestProfile, type TestProfile } from '../../../tests/support/test-profile.js';

interface Family {
  name: string;
  type: string;
  metrics: {
    labels?: Record<string, string>;
    value?: string;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
}

// /metrics of `aiida web` after 200 processes ran through the real engine and store.
describe('aiida web: /metrics', () => {
  let tp: TestProfile;
  let engine: Engine;
  let server: WebServer;

  beforeAll(async () => {
    tp = createTestProfile({ name: 'web-metrics' });
    engine = await openEngine(tp.profile, {
      dispatcher: null,
      control: null,
      logger: silentLogger,
    });
    server = await startWebServer({ engine, profileName: 'web-metrics', port: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await engine?.close();
    tp?.remove();
  });

  test('parses as Prometheus text and its counters match the store after 200 processes', async () => {
    // 190 run to the end in this process (claimed, run, finished), 10 are killed before a start.
    for (let batch = 0; batch < 19; batch++) {
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          engine.runGetProcess('core.arithmetic.add', { x: batch, y: i }),
        ),
      );
    }
    for (let i = 0; i < 10; i++) {
      const { pk } = await engine.submit('core.arithmetic.add', { x: i, y: 0 });
      await engine.killProcess(pk);
    }
    const rows: ProcessRecord[] = (await engine.queryProcesses({ limit: 1000 })).processes;
    expect(rows).toHaveLength(200);

    const response = await fetch(new URL('/metrics', server.url));
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const families = parsePrometheusTextFormat(await response.text()) as Family[];
    const family = (name: string) => {
      const f = families.find((x) => x.name === name);
      if (!f) throw new Error(`no metric ${name}; have ${families.map((x) => x.name).join(', ')}`);
      return f;
    };
    const sum = (name: string, where: Record<string, string> = {}) =>
      family(name)
        .metrics.filter((m) => Object.entries(where).every(([k, v]) => m.labels?.[k] === v))
        .reduce((acc, m) => acc + Number(m.value), 0);

    const count = (state: string) => rows.filter((r) => r.state === state).length;
    expect(count('finished')).toBe(190);
    expect(count('killed')).toBe(10);
    expect(family('aiida_processes').type).toBe('GAUGE');
    expect(sum('aiida_processes')).toBe(200);
    expect(sum('aiida_processes', { state: 'finished', type: 'core.arithmetic.add' })).toBe(190);
    expect(family('aiida_processes_finished_total').type).toBe('COUNTER');
    expect(sum('aiida_processes_finished_total')).toBe(count('finished'));
    expect(sum('aiida_processes_killed_total')).toBe(count('killed'));
    expect(sum('aiida_processes_excepted_total')).toBe(count('excepted'));
    expect(sum('aiida_process_claims_total')).toBe(rows.reduce((a, r) => a + r.epoch, 0));
    expect(sum('aiida_process_lease_losses_total')).toBe(
      rows.reduce((a, r) => a + r.ownerLosses, 0),
    );
    expect(sum('aiida_daemon_up')).toBe(0);

    const started = rows.filter((r) => r.startedAt !== null);
    const queued = family('aiida_process_queue_seconds');
    expect(queued.type).toBe('HISTOGRAM');
    expect(Number(queued.metrics[0]!.count)).toBe(started.length);
    const run = family('aiida_process_run_seconds').metrics[0]!;
    expect(Number(run.count)).toBe(started.filter((r) => r.finishedAt !== null).length);
    const runSum = started.reduce(
      (a, r) => a + (Date.parse(r.finishedAt!) - Date.parse(r.startedAt!)) / 1000,
      0,
    );
    expect(Number(run.sum)).toBeCloseTo(runSum, 3);
    // Buckets are cumulative and end with every observation.
    const buckets = Object.entries(run.buckets!)
      .sort(([a], [b]) => Number(a) - Number(b))
      .map(([, v]) => Number(v));
    expect(buckets.length).toBeGreaterThan(5);
    expect([...buckets].sort((a, b) => a - b)).toEqual(buckets);
    expect(buckets.at(-1)).toBeLessThanOrEqual(Number(run.count));
  });
});
