import { randomUUID } from 'node:crypto';
import { parseConfig } from './config.js';
import { benchControl } from './control.js';
import { log } from './log.js';
import { BENCH_RUN_ENV, pidsOfRun, stopPid } from './procs.js';

const runId = randomUUID();
process.env[BENCH_RUN_ENV] = runId;
const config = parseConfig(process.argv.slice(2));
log(`config: ${JSON.stringify({ ...config, repoRoot: undefined })}`);
try {
  if (config.sections.includes('control')) {
    const figures = await benchControl(config);
    console.log(JSON.stringify(figures, null, 2));
  }
} finally {
  for (const pid of pidsOfRun(runId)) {
    log(`left over: pid ${pid}, stopping it`);
    await stopPid(pid, 3);
  }
}
