// `aiida process ...` through the built bin, without a daemon: run in the terminal, submit (the
// rows wait), list/show/report with --json, control of queued processes, delete, watch, and the
// error paths. The daemon's part is in session.int.test.ts.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliSandbox, prestoWithTestOptions, shown } from './cli.js';

interface Row {
  pk: number;
  type: string;
  state: string;
  paused: boolean;
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown> | null;
  exitStatus: number | null;
  parentPk: number | null;
  processStatus: string | null;
}

describe('aiida process (no daemon)', () => {
  let sandbox: CliSandbox;

  async function json<T>(args: string[]): Promise<T> {
    const result = await sandbox.run([...args, '--json']);
    if (result.code !== 0) throw new Error(`aiida ${args.join(' ')} failed\n${shown(result)}`);
    return JSON.parse(result.stdout) as T;
  }

  beforeAll(async () => {
    sandbox = new CliSandbox('aiida-cli-process-');
    await prestoWithTestOptions(sandbox, 'process-test');
  });
  afterAll(async () => {
    await sandbox.cleanUp();
  });

  it('run: a calculation and a workflow in the terminal, outputs printed, exit 0', async () => {
    const add = await sandbox.run([
      'process',
      'run',
      'core.arithmetic.add',
      '-i',
      'x=1',
      '-i',
      'y=2',
    ]);
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/^core\.arithmetic\.add<\d+> finished \[0\]\n {2}sum: 3\n$/);
    const flow = await json<Row>([
      'process',
      'run',
      'core.arithmetic.multiply_add',
      '-i',
      'x=2',
      '-i',
      'y=3',
      '-i',
      'z=4',
    ]);
    expect(flow).toMatchObject({ state: 'finished', exitStatus: 0, outputs: { result: 10 } });
  });

  it('submit without a daemon: the processes are stored and wait; a warning says why', async () => {
    const one = await sandbox.run([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=1',
      '-i',
      'y=2',
    ]);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(/^Success: Submitted core\.arithmetic\.add<\d+> to the daemon\.$/m);
    expect(one.stderr).toMatch(/^Warning: the daemon of profile 'process-test' is not running/);
    const many = await json<{ pk: number; uuid: string }[]>([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=5',
      '-i',
      'y=6',
      '--count',
      '3',
    ]);
    expect(many).toHaveLength(3);
    expect(new Set(many.map((p) => p.pk)).size).toBe(3);
  });

  it('list: active processes by default with the footer; -a for all; -S filters; --json parses', async () => {
    const text = await sandbox.run(['process', 'list']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^PK\s+Created\s+Type\s+State\s+Process status$/m);
    expect(text.stdout).toContain('Total results: 4');
    expect(text.stdout).not.toMatch(/finished/);
    expect(text.stderr).toMatch(/Warning: the daemon is not running/);
    const all = await json<Row[]>(['process', 'list', '-a']);
    // 2 runs (the workflow has a child) + 4 submitted
    expect(all).toHaveLength(7);
    expect(all.filter((r) => r.state === 'finished')).toHaveLength(3);
    const created = await json<Row[]>(['process', 'list', '-S', 'created']);
    expect(created.every((r) => r.state === 'created')).toBe(true);
    expect(created).toHaveLength(4);
    const limited = await json<Row[]>(['process', 'list', '-a', '-l', '2']);
    expect(limited).toHaveLength(2);
    const bad = await sandbox.run(['process', 'list', '-S', 'done']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /--process-state <state>' argument 'done' is invalid\. Expected one of: created, waiting/,
    );
  });

  it('show and report: everything about a process; --json parses; unknown pk is an error', async () => {
    const all = await json<Row[]>(['process', 'list', '-a']);
    const child = all.find((r) => r.parentPk !== null) as Row;
    const text = await sandbox.run(['process', 'show', String(child.pk)]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^type\s+core\.arithmetic\.add$/m);
    expect(text.stdout).toMatch(new RegExp(`^parent\\s+${child.parentPk}$`, 'm'));
    expect(text.stdout).toMatch(/^Outputs:\n {2}sum: 10$/m);
    const rows = await json<Row[]>(['process', 'show', String(child.pk), String(child.parentPk)]);
    expect(rows.map((r) => r.pk)).toEqual([child.pk, child.parentPk]);
    const report = await sandbox.run(['process', 'report', String(child.parentPk)]);
    expect(report.code).toBe(0);
    const missing = await sandbox.run(['process', 'show', '9999']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^Error: No process with pk 9999 in this profile\.\nHint: /);
  });

  it('pause, play and kill of queued processes apply in the store at once', async () => {
    const queued = await json<Row[]>(['process', 'list', '-S', 'created']);
    const [a, b] = queued.map((r) => String(r.pk));
    const pause = await sandbox.run(['process', 'pause', a as string, b as string]);
    expect(pause.code).toBe(0);
    expect(pause.stdout).toBe(`Success: Process<${a}> paused.\nSuccess: Process<${b}> paused.\n`);
    expect((await json<Row>(['process', 'show', a as string])).paused).toBe(true);
    const again = await sandbox.run(['process', 'pause', a as string]);
    expect(again.stdout).toContain(`Process<${a}> is already paused.`);
    const play = await sandbox.run(['process', 'play', a as string]);
    expect(play.stdout).toBe(`Success: Process<${a}> played.\n`);
    const kill = await sandbox.run(['process', 'kill', b as string, '-m', 'not needed']);
    expect(kill.code).toBe(0);
    expect(kill.stdout).toBe(`Success: Process<${b}> killed.\n`);
    const killed = await json<Row>(['process', 'show', b as string]);
    expect(killed.state).toBe('killed');
    expect(killed.processStatus).toContain('not needed');
    const missing = await sandbox.run(['process', 'kill', '9999']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('Process<9999> does not exist.');
  });

  it('kill --all needs -y without a terminal, then kills every active process', async () => {
    const refused = await sandbox.run(['process', 'kill', '--all']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/Pass -y\/--yes/);
    const kill = await sandbox.run(['process', 'kill', '--all', '-y']);
    expect(kill.code).toBe(0);
    expect((await json<Row[]>(['process', 'list'])).length).toBe(0);
  });

  it('watch a process that has ended: prints its state and exits by outcome', async () => {
    const all = await json<Row[]>(['process', 'list', '-a']);
    const finished = all.find((r) => r.state === 'finished') as Row;
    const ok = await sandbox.run(['process', 'watch', String(finished.pk)]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(
      new RegExp(`core\\.arithmetic\\.add<${finished.pk}>  finished \\[0\\]`),
    );
    const killed = all.find((r) => r.state === 'killed') as Row;
    const bad = await sandbox.run(['process', 'watch', String(killed.pk)]);
    expect(bad.code).toBe(1);
  });

  it('submit --wait of a queued process with no daemon gives up after --timeout', async () => {
    const result = await sandbox.run([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=1',
      '-i',
      'y=1',
      '--wait',
      '-t',
      '1',
    ]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^Error: 1 of 1 processes were still active after 1 s \(pk \d+\)\./m,
    );
    await sandbox.run(['process', 'kill', '--all', '-y']);
  });

  it('bad inputs, unknown types and bad input files are one clear line and store nothing', async () => {
    const before = (await json<Row[]>(['process', 'list', '-a'])).length;
    const bad = await sandbox.run([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=one',
      '-i',
      'y=2',
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(
      /^Error: invalid inputs for core\.arithmetic\.add: x: .*expected number/,
    );
    const unknown = await sandbox.run(['process', 'submit', 'core.arithmetic.divide']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^Error: unknown process type 'core\.arithmetic\.divide'/);
    const file = await sandbox.run([
      'process',
      'submit',
      'core.arithmetic.add',
      '--inputs-file',
      '/nonexistent.json',
    ]);
    expect(file.code).toBe(2);
    expect(file.stderr).toMatch(/^Error: Could not read --inputs-file \/nonexistent\.json/);
    const run = await sandbox.run(['process', 'run', 'core.arithmetic.add', '-i', 'x=1']);
    expect(run.code).toBe(1);
    // An input the process does not declare is an error naming it, not silently dropped.
    const undeclared = await sandbox.run([
      'process',
      'submit',
      'core.shell',
      '-i',
      'command=echo',
      '-i',
      'arguments=["hi"]',
    ]);
    expect(undeclared.code).toBe(1);
    expect(undeclared.stderr).toMatch(
      /^Error: invalid inputs for core\.shell: arguments: not an input of core\.shell \(its inputs: command, args, env, stdin, cwd\)$/m,
    );
    const help = await sandbox.run(['process', 'submit', '--help']);
    expect(help.stdout).toContain(`-i command=echo -i 'args=["hi"]'`);
    expect(help.stdout).not.toContain('arguments=');
    // A shell job whose stdin is above engine.max_input_bytes (4 MiB by default).
    const bigFile = join(sandbox.aiidaPath, 'big-inputs.json');
    writeFileSync(bigFile, JSON.stringify({ command: 'cat', stdin: 'x'.repeat(5 * 1024 * 1024) }));
    const big = await sandbox.run(['process', 'submit', 'core.shell', '--inputs-file', bigFile]);
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(
      /^Error: inputs of core\.shell too large: \d+ bytes \(5 MiB\) as JSON, above the limit of 4194304 bytes \(4 MiB\) set by the option engine\.max_input_bytes; the largest input is 'stdin', 5242882 bytes \(5 MiB\)\./,
    );
    expect(big.stderr).toContain('Hint: Pass large data as a file path instead');
    expect((await json<Row[]>(['process', 'list', '-a'])).length).toBe(before);
  });

  it('delete: refuses active processes, deletes ended ones by pk and by age', async () => {
    const submitted = await json<{ pk: number }[]>([
      'process',
      'submit',
      'core.arithmetic.add',
      '-i',
      'x=1',
      '-i',
      'y=1',
    ]);
    const active = String(submitted[0]?.pk);
    const refused = await sandbox.run(['process', 'delete', active, '-y']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^Error: refusing to delete/);
    const all = await json<Row[]>(['process', 'list', '-a']);
    const ended = all.filter((r) => r.state === 'killed').map((r) => r.pk);
    const deleted = await json<number[]>(['process', 'delete', ...ended.map(String), '-y']);
    expect(deleted.sort()).toEqual(ended.sort());
    const old = await sandbox.run(['process', 'delete', '--older-than', '0', '-y']);
    expect(old.code).toBe(0);
    expect(old.stdout).toMatch(/^Success: Deleted \d+ process(es)?\.$/m);
    const left = await json<Row[]>(['process', 'list', '-a']);
    expect(left.map((r) => String(r.pk))).toEqual([active]);
    const missing = await sandbox.run(['process', 'delete', '9999', active, '-y']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^Error: No process with pk 9999 in this profile\.$/m);
    expect(missing.stdout).not.toContain('Deleted');
  });
});
