import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers.js';

const run = promisify(execFile);
const engineDist = join(import.meta.dirname, '..', 'dist', 'index.js');

// Opens the store named on the command line at the given instant, and prints ok or the error.
const OPEN_AT = `
const { SqliteProcessStore } = await import(${JSON.stringify(engineDist)});
const [file, at] = process.argv.slice(1);
while (Date.now() < Number(at)) {}
try {
  const store = new SqliteProcessStore({ filepath: file });
  await store.close();
  console.log('ok');
} catch (error) {
  console.log(\`\${error.code}: \${error.message}\`);
}
`;

// When a daemon starts, its workers open a new store at the same moment. Before the fix about
// one such pair in 25 failed with SQLITE_BUSY "database is locked" (switching a new file to WAL
// does not wait for the busy timeout); 60 pairs found it nearly every run.
test('two processes opening a new SQLite store at the same instant both succeed (60 rounds)', async () => {
  const tmp = tempDir();
  try {
    const failures: string[] = [];
    for (let round = 0; round < 60; round++) {
      const file = join(tmp.dir, `round-${round}`, 'store.sqlite');
      const at = String(Date.now() + 300);
      const outputs = await Promise.all(
        [0, 1].map(async () => {
          const { stdout } = await run(
            process.execPath,
            ['--input-type=module', '-e', OPEN_AT, file, at],
            { timeout: 30_000 },
          );
          return stdout.trim();
        }),
      );
      for (const output of outputs) {
        if (output !== 'ok') failures.push(`round ${round}: ${output}`);
      }
    }
    expect(failures).toEqual([]);
  } finally {
    tmp.remove();
  }
}, 180_000);
