import { Command, CommanderError } from 'commander';
import { describeError, ExitCodes } from './errors.js';
import { withExamples } from './help.js';
import { disableColors, echoError } from './output.js';
import { CLI_VERSION } from './version.js';

/** Adds one top-level command (or group) to the program. */
type Registrar = (program: Command) => void;

/**
 * The module of each top-level command, imported only when the program needs it: a run of
 * `aiida daemon status` loads the `daemon` commands' module and not the 1,000 lines of `process`.
 * In the order `aiida --help` lists them.
 */
const COMMAND_MODULES: ReadonlyMap<string, () => Promise<Registrar>> = new Map([
  ['presto', async () => (await import('./commands/presto.js')).registerPrestoCommand],
  ['profile', async () => (await import('./commands/profile.js')).registerProfileCommands],
  ['config', async () => (await import('./commands/config.js')).registerConfigCommands],
  ['daemon', async () => (await import('./commands/daemon.js')).registerDaemonCommands],
  ['process', async () => (await import('./commands/process.js')).registerProcessCommands],
  ['status', async () => (await import('./commands/status.js')).registerStatusCommand],
  ['demo', async () => (await import('./commands/demo.js')).registerDemoCommand],
  ['completion', async () => (await import('./commands/completion.js')).registerCompletionCommand],
  ['web', async () => (await import('./commands/web.js')).registerWebCommand],
]);

/**
 * Builds the `aiida` program: every command, `-p/--profile` for all of them, `--help` with
 * examples on each, and errors reported as one line plus a hint (see {@link main}).
 */
export async function createProgram(): Promise<Command> {
  return buildProgram(await Promise.all([...COMMAND_MODULES.values()].map((load) => load())));
}

/**
 * The program `argv` needs: only the top-level command it names (with the root's options and
 * error behaviour), or every command when it names none or an unknown one (so that `--help`
 * lists them all and a typo gets its suggestion) or `completion` and `help`, which read the
 * whole tree.
 */
async function programFor(argv: string[]): Promise<Command> {
  const name = commandName(argv.slice(2));
  const load = name === undefined ? undefined : COMMAND_MODULES.get(name);
  if (load === undefined || name === 'completion') return createProgram();
  return buildProgram([await load()]);
}

/** The first operand of the arguments, skipping the root's options (`-p NAME`, `--no-color`). */
function commandName(args: string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') return undefined;
    if (arg === '-p' || arg === '--profile') {
      i++;
      continue;
    }
    if (arg.startsWith('-')) continue;
    return arg;
  }
  return undefined;
}

/** The program with the top-level commands of `registrars` only. */
function buildProgram(registrars: readonly Registrar[]): Command {
  const program = new Command('aiida')
    .description(
      'The command line of AiiDA in TypeScript: profiles, options, the daemon and its processes.',
    )
    .version(CLI_VERSION, '-V, --version', 'Print the version and exit.')
    .helpOption('-h, --help', 'Show help for the command, with examples.')
    .helpCommand('help [command]', 'Show help for a command.')
    .option('-p, --profile <name>', PROFILE_HELP)
    .option('--no-color', NO_COLOR_HELP)
    // Options of `aiida` itself only before the subcommand, so that a subcommand may give `-p`
    // another meaning, as verdi does: `aiida -p PROFILE process list -p 1` (past days).
    .enablePositionalOptions();
  program.hook('preAction', (_root, action) => {
    if (action.optsWithGlobals<{ color?: boolean }>().color === false) disableColors();
  });
  withExamples(program, [
    'aiida presto                       # a working profile with defaults',
    'aiida daemon start 2',
    'aiida process submit core.arithmetic.add -i x=1 -i y=2 --wait',
    'aiida process list -a',
    'aiida -p other daemon status',
    'aiida status',
    'aiida web --open',
  ]);
  for (const register of registrars) register(program);
  addProfileOption(program);
  configureErrors(program, 'aiida');
  return program;
}

const PROFILE_HELP = 'The profile to use (default: $AIIDA_PROFILE, else the default profile).';
const NO_COLOR_HELP = 'No colours in the output (as NO_COLOR=1).';

/**
 * Lets every command take `-p/--profile NAME` and `--no-color` after its name too (`aiida daemon
 * status -p NAME --no-color`); a command that uses `-p` for something else takes `--profile NAME`
 * only.
 */
function addProfileOption(command: Command): void {
  for (const sub of command.commands) {
    if (sub.commands.length > 0) {
      addProfileOption(sub);
      continue;
    }
    const taken = sub.options.some((option) => option.short === '-p');
    sub.option(taken ? '--profile <name>' : '-p, --profile <name>', PROFILE_HELP);
    sub.option('--no-color', NO_COLOR_HELP);
  }
}

/**
 * Gives every command of the tree the same error behaviour: commander's own usage errors become
 * one line `Error: ...` plus a hint naming the command's `--help`, and are thrown (not exited) so
 * that {@link main} picks the exit code.
 */
function configureErrors(command: Command, path: string): void {
  command.exitOverride();
  command.configureOutput({
    outputError: (text) => {
      // Commander may add a second line ("(Did you mean daemon?)"): keep the error on one line.
      const message = text
        .trim()
        .replace(/^error:\s*/i, '')
        .replace(/\.?\s*\n\s*/g, '. ');
      echoError(
        message.charAt(0).toUpperCase() + message.slice(1),
        `Run \`${path} --help\` for usage and examples.`,
      );
    },
  });
  for (const sub of command.commands) configureErrors(sub, `${path} ${sub.name()}`);
}

/**
 * Runs the `aiida` command line on `argv` (as `process.argv`: node, script, then arguments) and
 * resolves to the exit code: 0 on success, 1 on failure, 2 for a bad command line, 3 when the
 * daemon is not running. Errors are printed, never thrown.
 */
export async function main(argv: string[] = process.argv): Promise<number> {
  const program = await programFor(argv);
  // Before parsing, so that a usage error is printed without colours too.
  const dashDash = argv.indexOf('--');
  if (argv.slice(2, dashDash === -1 ? undefined : dashDash).includes('--no-color')) disableColors();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : ExitCodes.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // `--help` and `--version` end with exit code 0; usage errors were printed by outputError.
      return error.exitCode === 0 ? ExitCodes.ok : ExitCodes.usage;
    }
    const report = describeError(error);
    if (process.env.AIIDA_CLI_DEBUG === '1' && error instanceof Error) {
      process.stderr.write(`${error.stack ?? error.message}\n`);
    }
    echoError(report.message, report.hint);
    return report.exitCode;
  }
}
