// verdi's workflow commands through the built bin: `process status`, `call-root`, `show` with the
// called processes, `report` with --levelname/--max-depth and indented children, `process list`
// with verdi's filters, kill/pause/play waiting for their outcome, `--wait` counting a non-zero
// exit status as failed, and `aiida completion`. Process types come from a plugin fixture.
import { execFileSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../../../tests/support/wait-for.js';
import { BIN, CliSandbox, prestoWithTestOptions, shown } from './cli.js';

const here = dirname(fileURLToPath(import.meta.url));
/** Inputs of a `core.shell` job whose command exits with 3 (the job finishes with status 400). */
const EXIT_3 = ['-i', 'command=sh', '-i', 'args=["-c", "exit 3"]'];
/** Loads the script on stdin as a shell does, completes the words given, prints the candidates. */
const COMPLETE =
  // biome-ignore lint/suspicious/noTemplateCurlyInString: a bash script, not a template
  'eval "$(cat)"; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _aiida; printf "%s\\n" "${COMPREPLY[@]}"';

interface Row {
  pk: number;
  type: string;
  state: string;
  paused: boolean;
  owner: string | null;
  exitStatus: number | null;
  parentPk: number | null;
}

describe('verdi workflow commands', () => {
  let sandbox: CliSandbox;
  const supervisors: number[] = [];

  async function ok(args: string[], timeout = 60) {
    const result = await sandbox.run(args, { timeout });
    if (result.code !== 0) {
      throw new Error(`aiida ${args.join(' ')}\n${shown(result)}\n\n${sandbox.logs('verdi')}`);
    }
    return result;
  }
  async function json<T>(args: string[]): Promise<T> {
    return JSON.parse((await ok([...args, '--json'])).stdout) as T;
  }
  const show = (pk: number) => json<Row>(['process', 'show', String(pk)]);

  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-verdi-');
    await prestoWithTestOptions(sandbox, 'verdi');
    const plugin = join(sandbox.aiidaPath, 'verdi-plugin.mjs');
    copyFileSync(join(here, 'fixtures', 'verdi-plugin.mjs'), plugin);
    await ok(['config', 'set', 'engine.plugins', JSON.stringify([plugin])]);
  });
  afterAll(async () => {
    await sandbox.cleanUp(supervisors);
  });

  describe('call tree and reports of a nested workflow', () => {
    let outer: Row;
    let inner: Row;
    let calc: Row;

    beforeAll(async () => {
      outer = await json<Row>(['process', 'run', 'test.report_outer']);
      const all = await json<Row[]>(['process', 'list', '-a']);
      inner = all.find((r) => r.parentPk === outer.pk) as Row;
      calc = all.find((r) => r.parentPk === inner.pk) as Row;
      expect([outer.state, inner?.state, calc?.state]).toEqual([
        'finished',
        'finished',
        'finished',
      ]);
    });

    it('process status draws the call tree with states, as verdi', async () => {
      const status = await ok(['process', 'status', String(outer.pk)]);
      expect(status.stdout).toBe(
        `test.report_outer<${outer.pk}> Finished [0]\n` +
          `    └── test.report_inner<${inner.pk}> Finished [0]\n` +
          `        └── test.report_calc<${calc.pk}> Finished [0]\n`,
      );
      const shallow = await ok(['process', 'status', String(outer.pk), '--max-depth', '1']);
      expect(shallow.stdout).toBe(
        `test.report_outer<${outer.pk}> Finished [0]\n    └── test.report_inner<${inner.pk}> Finished [0]\n`,
      );
      const missing = await sandbox.run(['process', 'status', '9999']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(/^Error: No process with pk 9999 in this profile\./);
    });

    it('process call-root prints the root pk, or says there is no caller', async () => {
      const roots = await ok(['process', 'call-root', String(calc.pk), String(inner.pk)]);
      expect(roots.stdout).toBe(`${outer.pk}\n${outer.pk}\n`);
      const top = await ok(['process', 'call-root', String(outer.pk)]);
      expect(top.stdout).toBe(`No callers found for Process<${outer.pk}>\n`);
    });

    it('process show lists the processes a workflow called', async () => {
      const text = (await ok(['process', 'show', String(outer.pk)])).stdout;
      expect(text).toMatch(
        new RegExp(
          `\\nCalled:\\n +PK +Type +State\\n[ -]+\\n +${inner.pk} +test\\.report_inner +finished \\[0\\]\\n`,
        ),
      );
      expect((await ok(['process', 'show', String(calc.pk)])).stdout).not.toContain('Called:');
    });

    it('process report: children indented by depth, in time order; --levelname and --max-depth filter', async () => {
      const lines = (await ok(['process', 'report', String(outer.pk)])).stdout
        .trimEnd()
        .split('\n');
      const shape = lines.map((line) =>
        line.replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[\d+ *\| +([A-Z]+)\]:/, '$1:'),
      );
      expect(shape).toEqual([
        'REPORT: test.report_outer starts',
        'REPORT:   test.report_inner starts',
        'WARNING:     calc warns',
        'REPORT:   test.report_inner ends',
        'REPORT: test.report_outer ends',
      ]);
      const debug = (await ok(['process', 'report', String(outer.pk), '-l', 'debug'])).stdout;
      expect(debug).toMatch(/\| +DEBUG\]: test\.report_outer debug$/m);
      expect(debug).toMatch(/\| +DEBUG\]: {3}test\.report_inner debug$/m);
      const warnings = await ok(['process', 'report', String(outer.pk), '--levelname', 'WARNING']);
      expect(warnings.stdout).toMatch(/^\S+ \S+ \[\d+ \| WARNING\]: {5}calc warns\n$/);
      const top = await ok(['process', 'report', String(outer.pk), '--max-depth', '1']);
      expect(top.stdout.trimEnd().split('\n')).toHaveLength(2);
      expect(top.stdout).not.toContain('inner');
      const two = await ok(['process', 'report', String(outer.pk), '-m', '2', '-i', '4']);
      expect(two.stdout).toMatch(/\]: {5}test\.report_inner starts$/m);
      expect(two.stdout).not.toContain('calc warns');
      const bad = await sandbox.run(['process', 'report', String(outer.pk), '-l', 'loud']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toMatch(/Expected one of: DEBUG, INFO, REPORT, WARNING, ERROR/);
    });
  });

  it('process list filters as verdi, in the store: -S -E -X --paused -p -O -D -l -P -r -a', async () => {
    const run = await sandbox.run(['process', 'run', 'core.shell', ...EXIT_3, '--json']);
    expect(run.code).toBe(1);
    const failed = JSON.parse(run.stdout) as Row;
    expect(failed).toMatchObject({ state: 'finished', exitStatus: 400 });
    const queued = await json<{ pk: number }[]>([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=1',
      '-i',
      'y=2',
      '--count',
      '2',
    ]);
    const [paused, waiting] = queued.map((q) => q.pk) as [number, number];
    await ok(['process', 'pause', String(paused)]);
    const pks = async (args: string[]) =>
      (await json<Row[]>(['process', 'list', ...args])).map((r) => r.pk);
    const all = await pks(['-a']);
    expect(all).toEqual([...all].sort((a, b) => a - b));
    expect(await pks([])).toEqual([paused, waiting]);
    expect(await pks(['-X'])).toEqual([failed.pk]);
    expect(await pks(['-E', '400'])).toEqual([failed.pk]);
    expect((await pks(['-E', '0'])).length).toBe(all.length - 3);
    expect(await pks(['--paused'])).toEqual([paused]);
    expect(await pks(['-S', 'created', '-O', 'pk', '-D', 'desc'])).toEqual([waiting, paused]);
    expect(await pks(['-a', '-O', 'pk', '-D', 'desc', '-l', '2'])).toEqual([waiting, paused]);
    expect(await pks(['-a', '-l', '1'])).toEqual([all[0]]);
    expect(await pks(['-a', '-p', '1'])).toEqual(all);
    expect(await pks(['-a', '-p', '0'])).toEqual([]);
    // The profile goes before the subcommand, past days after it (as verdi).
    expect(
      (await json<Row[]>(['-p', 'verdi', 'process', 'list', '-p', '1', '-X'])).map((r) => r.pk),
    ).toEqual([failed.pk]);
    const notDays = await sandbox.run(['process', 'list', '-p', 'verdi']);
    expect(notDays.code).toBe(2);
    expect(notDays.stderr).toMatch(/--past-days <days>' argument 'verdi' is invalid/);
    // Elsewhere -p after the subcommand is still the profile.
    const elsewhere = await sandbox.run(['config', 'get', 'daemon.timeout', '-p', 'nosuch']);
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toMatch(/nosuch/);

    const raw = await ok(['process', 'list', '-X', '-P', 'pk', 'exit_status', 'paused', '-r']);
    expect(raw.stdout).toBe(`${failed.pk}\t400\tno\n`);
    expect(raw.stderr).toBe('');
    const table = await ok(['process', 'list', '--paused', '-P', 'pk', 'paused', 'process_label']);
    expect(table.stdout).toMatch(
      new RegExp(`^PK +Paused +Type\\n[- ]+\\n +${paused} +yes +core\\.arithmetic\\.add\\n`),
    );
    expect(table.stdout).toContain('Total results: 1');
    const badColumn = await sandbox.run(['process', 'list', '-P', 'colour']);
    expect(badColumn.code).toBe(2);
    expect(badColumn.stderr).toMatch(
      /'-P, --project <columns\.\.\.>' argument 'colour' is invalid/,
    );
    await ok(['process', 'kill', String(paused), String(waiting)]);
  });

  describe('with a daemon', () => {
    beforeAll(async () => {
      await ok(['daemon', 'start', '1'], 120);
      const status = JSON.parse((await ok(['daemon', 'status', '--json'])).stdout) as {
        status: { pid: number } | null;
      };
      if (status.status) supervisors.push(status.status.pid);
    });

    async function submitTicker(): Promise<number> {
      const [submitted] = await json<{ pk: number }[]>([
        'process',
        'submit',
        'test.ticker',
        '-i',
        'n=100000',
        '-i',
        'stepMs=50',
      ]);
      const pk = submitted?.pk as number;
      await waitFor(async () => (await show(pk)).state === 'running', {
        timeout: 60,
        what: `process ${pk} to run`,
      });
      return pk;
    }

    it('pause, play and kill wait for the outcome by default and print it per pk', async () => {
      const pk = await submitTicker();
      const pause = await ok(['process', 'pause', String(pk), '-t', '60']);
      expect(pause.stdout).toBe(`Success: Process<${pk}> paused.\n`);
      expect(await show(pk)).toMatchObject({ paused: true, owner: null });
      const play = await ok(['process', 'play', String(pk), '-t', '60']);
      expect(play.stdout).toBe(`Success: Process<${pk}> played.\n`);
      await waitFor(async () => (await show(pk)).state === 'running', {
        timeout: 60,
        what: `process ${pk} to run again`,
      });
      const kill = await ok(['process', 'kill', String(pk), '-t', '60']);
      expect(kill.stdout).toBe(`Success: Process<${pk}> killed.\n`);
      expect((await show(pk)).state).toBe('killed');
    });

    it('--no-wait returns once the request is sent', async () => {
      const pk = await submitTicker();
      const kill = await ok(['process', 'kill', String(pk), '--no-wait']);
      expect(kill.stdout).toBe(`Success: sent the kill request to Process<${pk}>.\n`);
      await waitFor(async () => (await show(pk)).state === 'killed', {
        timeout: 60,
        what: `process ${pk} to be killed`,
      });
    });

    it('submit --wait counts a process that finished with a non-zero exit status as failed', async () => {
      const result = await sandbox.run(
        ['process', 'submit', 'core.shell', ...EXIT_3, '--wait', '-t', '60'],
        { timeout: 90 },
      );
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/1\/1 done \[#+\] 1 failed/);
      expect(result.stdout).not.toMatch(/1\/1 done \[#+\] 0 failed/);
      expect(result.stderr).toMatch(
        /^Error: 1 of 1 processes did not finish well: 1 finished with exit status 400 \(pk \d+\)\./m,
      );
    });
  });

  it('aiida completion bash: bash sources it and completes subcommands and options', () => {
    const script = execFileSync(process.execPath, [BIN, 'completion', 'bash'], {
      env: sandbox.env,
      encoding: 'utf8',
    });
    const complete = (words: string[]) =>
      execFileSync('bash', ['-c', COMPLETE, 'bash', ...words], { input: script, encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .sort();
    expect(complete(['aiida', 'pro'])).toEqual(['process', 'profile']);
    expect(complete(['aiida', 'process', 's'])).toEqual(['show', 'status', 'submit']);
    expect(complete(['aiida', '-p', 'x', 'process', 'list', '--pa'])).toEqual([
      '--past-days',
      '--paused',
    ]);
    expect(complete(['aiida', 'daemon', 'st'])).toEqual(['start', 'status', 'stop']);
    const zsh = execFileSync(process.execPath, [BIN, 'completion', 'zsh'], { encoding: 'utf8' });
    expect(zsh).toContain('bashcompinit');
    expect(zsh).toContain('complete -F _aiida aiida');
    const bad = execFileSync(
      'bash',
      ['-c', `"${process.execPath}" "${BIN}" completion fish 2>&1; echo "exit $?"`],
      { encoding: 'utf8' },
    );
    expect(bad).toMatch(
      /'fish' is invalid for argument 'shell'\. Expected one of: bash, zsh\.[\s\S]*exit 2/,
    );
  });
});
