// Integration: the supervisor bin refuses, as the last line of defence, a start or an `incr` that
// would run more workers than the option daemon.max_workers (no worker is started: no broker).
import { existsSync } from 'node:fs';
import { setOption } from '@aiida/config';
import { readDaemonState } from '@aiida/daemon-supervisor';
import { stopPid } from '../../../tests/support/processes.js';
import {
  createTestProfile,
  type TestProfile,
  withLogTails,
} from '../../../tests/support/test-profile.js';
import { controlRequest, controlResult, startSupervisorBin } from './support/supervisor-process.js';

let tp: TestProfile;
const supervisors: number[] = [];

beforeEach(() => {
  tp = createTestProfile({ name: 'maxw', options: { 'daemon.max_workers': 2 } });
});
afterEach(async () => {
  for (const pid of supervisors.splice(0)) await stopPid(pid, 10);
  tp.remove();
});

test('a start with more workers than daemon.max_workers is refused, naming the option; nothing is left', async () => {
  await withLogTails(tp.logTails, async () => {
    const started = await startSupervisorBin({ profile: tp.profile, workers: 3 });
    supervisors.push(started.pid);
    expect(started.report).toMatchObject({ ok: false, error: { code: 'too_many_workers' } });
    const message = started.report?.ok === false ? started.report.error.message : '';
    expect(message).toContain('starting 3 workers would exceed the option daemon.max_workers (2)');
    expect(await started.exited).toEqual({ code: 1, signal: null });
    expect(readDaemonState(tp.profile)).toBeUndefined();
  });
});

test('incr beyond daemon.max_workers is refused with too_many_workers; a changed option applies at once', async () => {
  await withLogTails(tp.logTails, async () => {
    const started = await startSupervisorBin({ profile: tp.profile, workers: 0 });
    supervisors.push(started.pid);
    if (!started.report?.ok) throw new Error(`start failed: ${JSON.stringify(started.report)}`);
    const { socketPath } = started.report;
    const refused = await controlRequest(socketPath, { type: 'incr', n: 3 });
    expect(refused).toMatchObject({ ok: false, error: { code: 'too_many_workers' } });
    expect(!refused.ok && refused.error.message).toContain(
      'would exceed the option daemon.max_workers (2)',
    );
    const status = await controlResult<{ numberWorkers: number; workers: unknown[] }>(socketPath, {
      type: 'status',
    });
    expect(status.numberWorkers).toBe(0);
    expect(status.workers).toHaveLength(0);

    // The option is read afresh: lowering it to 1 refuses an incr of 2 the same way.
    setOption('daemon.max_workers', 1, { profile: tp.profile.name, aiidaPath: tp.aiidaPath });
    const lowered = await controlRequest(socketPath, { type: 'incr', n: 2 });
    expect(lowered).toMatchObject({ ok: false, error: { code: 'too_many_workers' } });
    expect(!lowered.ok && lowered.error.message).toContain('daemon.max_workers (1)');
    expect(existsSync(socketPath)).toBe(true);
  });
});
