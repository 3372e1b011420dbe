#!/usr/bin/env node
// Runs the test layers in order (unit, integration, the end-to-end files again on the core.store
// transport, the acceptance files on both transports with a PostgreSQL store, then chaos as a
// separate serial jest run), sums jest's totals into one closing line `N passed, N failed`, and
// then acts as the suite's global teardown: any process still carrying this run's marker in its
// environment is a stray, killed by pid, and fails the run.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
// The engine's end-to-end acceptance files, run on every transport × store pair.
const ACCEPTANCE =
  'tests/e2e/(many-adds|slot-limit|worker-kills|daemon-restart|process-control|bad-input)\\.int\\.test\\.ts$';
const layers = {
  unit: { pattern: '(?<!\\.int|\\.chaos)\\.test\\.ts$', args: ['--maxWorkers=2'] },
  integration: { pattern: '\\.int\\.test\\.ts$', args: ['--maxWorkers=2'] },
  // The end-to-end suite once more with the store as the queue (no broker): one suite, run on
  // every transport (files that choose their transport themselves are left out).
  'e2e-store': {
    pattern: 'tests/e2e/(?!store-transport)[^/]*\\.int\\.test\\.ts$',
    args: ['--maxWorkers=2'],
    env: { AIIDA_E2E_TRANSPORT: 'core.store' },
  },
  // The engine's acceptance files (issue 10, acceptance 1) on the two PostgreSQL pairs: each
  // profile on a fresh test database (tests/e2e/helpers.ts reads AIIDA_E2E_STORE). Only these
  // files, to keep the whole suite within its time budget.
  'e2e-psql': {
    pattern: ACCEPTANCE,
    args: ['--maxWorkers=2'],
    env: { AIIDA_E2E_TRANSPORT: 'core.rabbitmq', AIIDA_E2E_STORE: 'core.psql' },
  },
  'e2e-store-psql': {
    pattern: ACCEPTANCE,
    args: ['--maxWorkers=2'],
    env: { AIIDA_E2E_TRANSPORT: 'core.store', AIIDA_E2E_STORE: 'core.psql' },
  },
  chaos: { pattern: '\\.chaos\\.test\\.ts$', args: ['--runInBand'] },
};
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));
// AIIDA_TEST_LAYERS (e.g. `unit`) narrows a run started without arguments, such as `.ci/run`.
const fromEnv = (process.env.AIIDA_TEST_LAYERS ?? '').split(/[\s,]+/).filter(Boolean);
const selected = wanted.length > 0 ? wanted : fromEnv.length > 0 ? fromEnv : Object.keys(layers);
for (const name of selected) {
  if (!(name in layers)) {
    console.error(
      `unknown test layer '${name}': expected one of ${Object.keys(layers).join(', ')}`,
    );
    process.exit(2);
  }
}

const runId = `aiida-test-${randomUUID()}`;
const resultsDir = join(root, '.test-results');
rmSync(resultsDir, { recursive: true, force: true });
mkdirSync(resultsDir, { recursive: true });

let passed = 0;
let failed = 0;
let anyRunFailed = false;
for (const name of selected) {
  const layer = layers[name];
  const outputFile = join(resultsDir, `${name}.json`);
  console.log(`\n=== ${name} tests ===`);
  const run = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules/jest/bin/jest.js'),
      '--ci',
      '--passWithNoTests',
      `--testPathPatterns=${layer.pattern}`,
      '--json',
      `--outputFile=${outputFile}`,
      ...layer.args,
      ...extra,
    ],
    {
      cwd: root,
      stdio: 'inherit',
      env: {
        ...process.env,
        ...layer.env,
        AIIDA_TEST_RUN_ID: runId,
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --experimental-vm-modules`.trim(),
      },
    },
  );
  let totals;
  try {
    totals = JSON.parse(readFileSync(outputFile, 'utf8'));
  } catch {
    totals = undefined;
  }
  if (totals) {
    passed += totals.numPassedTests;
    failed += totals.numFailedTests;
    // A test file that fails to load has no failed test but a failed suite: count it.
    failed += totals.numRuntimeErrorTestSuites ?? 0;
  } else {
    failed += 1;
    console.error(`jest wrote no results for the ${name} layer (exit status ${run.status})`);
  }
  if (run.status !== 0) anyRunFailed = true;
  const strays = killStrays(runId);
  if (strays.length > 0) {
    anyRunFailed = true;
    failed += 1;
    console.error(
      `stray processes outlived the ${name} tests and were killed: ${strays.join(', ')}`,
    );
  }
  const namespaces = removeStrayNamespaces(runId);
  if (namespaces.length > 0) {
    anyRunFailed = true;
    failed += 1;
    console.error(
      `network namespaces of the ${name} tests were left behind and removed: ${namespaces.join(', ')}`,
    );
  }
  const databases = await dropStrayDatabases(runId);
  if (databases.length > 0) {
    anyRunFailed = true;
    failed += 1;
    console.error(
      `PostgreSQL databases or roles of the ${name} tests were left behind and dropped: ${databases.join(', ')}`,
    );
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(anyRunFailed || failed > 0 ? 1 : 0);

/**
 * Drops the PostgreSQL databases and roles this run's tests made and left behind: their names
 * contain `aiidat_<tag>_`, the tag being the run id's last 16 letters and digits (the same rule
 * as `runDatabasePrefix` in tests/support/postgres.ts). A server that does not answer is skipped
 * with a note: the tests that needed it have failed already.
 */
async function dropStrayDatabases(marker) {
  const tag = marker
    .replace(/[^a-zA-Z0-9]/g, '')
    .toLowerCase()
    .slice(-16);
  const pattern = `%aiidat\\_${tag}\\_%`;
  let pg;
  try {
    pg = (await import('pg')).default;
  } catch {
    return [];
  }
  const client = new pg.Client({
    host: '127.0.0.1',
    port: 5432,
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => {});
  const dropped = [];
  try {
    await client.connect();
    const dbs = await client.query('SELECT datname FROM pg_database WHERE datname LIKE $1', [
      pattern,
    ]);
    for (const { datname } of dbs.rows) {
      await client.query(
        `DROP DATABASE IF EXISTS ${client.escapeIdentifier(datname)} WITH (FORCE)`,
      );
      dropped.push(`database ${datname}`);
    }
    const roles = await client.query('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [
      pattern,
    ]);
    for (const { rolname } of roles.rows) {
      await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(rolname)}`);
      dropped.push(`role ${rolname}`);
    }
  } catch (error) {
    console.error(`could not check PostgreSQL for databases left behind: ${error.message}`);
  } finally {
    await client.end().catch(() => {});
  }
  return dropped;
}

/**
 * Deletes the network namespaces this run's tests made and left behind (their veth pairs go with
 * them): their names start with `aiidat-<tag>-`, the tag being the run id's last 8 letters and
 * digits (the same rule as `runNetnsPrefix` in tests/support/netns.ts). Runs after the strays are
 * killed, so no process keeps a namespace alive. No `ip`, or not root: nothing was made.
 */
function removeStrayNamespaces(marker) {
  const tag = marker
    .replace(/[^a-zA-Z0-9]/g, '')
    .toLowerCase()
    .slice(-8);
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (list.status !== 0) return [];
  const removed = [];
  for (const line of list.stdout.split('\n')) {
    const name = line.split(' ')[0];
    if (!name?.startsWith(`aiidat-${tag}-`)) continue;
    const del = spawnSync('ip', ['netns', 'del', name], { encoding: 'utf8' });
    removed.push(del.status === 0 ? name : `${name} (could not delete: ${del.stderr.trim()})`);
  }
  return removed;
}

/** Kills (SIGKILL, by pid) every process whose environment carries this run's marker. */
function killStrays(marker) {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let environ;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    if (!environ.split('\0').includes(`AIIDA_TEST_RUN_ID=${marker}`)) continue;
    let cmdline = '';
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replaceAll('\0', ' ').trim();
    } catch {}
    try {
      process.kill(pid, 'SIGKILL');
      found.push(`${pid} (${cmdline})`);
    } catch {}
  }
  return found;
}
