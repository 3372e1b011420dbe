import type { Command } from 'commander';
import { withExamples } from '../help.js';
import { echo } from '../output.js';
import { parseChoice } from '../parse.js';

const SHELLS = ['bash', 'zsh'] as const;
type Shell = (typeof SHELLS)[number];

/** One command of the tree: its path below `aiida`, its subcommands and its option flags. */
interface CommandEntry {
  path: string;
  subcommands: string[];
  options: string[];
}

/** Every command of `program`'s tree, walked from the program itself (path ''). */
export function commandTree(program: Command): CommandEntry[] {
  const entries: CommandEntry[] = [];
  const visit = (command: Command, path: string) => {
    const options = command.options.flatMap((option) =>
      [option.short, option.long].filter((flag): flag is string => flag !== undefined),
    );
    entries.push({
      path,
      subcommands: command.commands.map((sub) => sub.name()),
      options: [...options, '--help'],
    });
    for (const sub of command.commands)
      visit(sub, path === '' ? sub.name() : `${path} ${sub.name()}`);
  };
  visit(program, '');
  return entries;
}

/**
 * A bash completion script for `aiida`, from the real command tree: subcommands after each
 * command, its options after a `-`.
 */
export function bashCompletion(program: Command): string {
  const tree = commandTree(program);
  const cases = (pick: (entry: CommandEntry) => string[]) =>
    tree.map((entry) => `    '${entry.path}') echo '${pick(entry).join(' ')}' ;;`).join('\n');
  return `# bash completion for aiida: add \`source <(aiida completion bash)\` to ~/.bashrc
_aiida_subcommands() {
  case "$1" in
${cases((entry) => entry.subcommands)}
  esac
}
_aiida_options() {
  case "$1" in
${cases((entry) => entry.options)}
  esac
}
_aiida() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    if [[ " $(_aiida_subcommands "$path") " == *" $word "* ]]; then
      path="\${path:+$path }$word"
    fi
  done
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$(_aiida_options "$path")" -- "$cur"))
  else
    COMPREPLY=($(compgen -W "$(_aiida_subcommands "$path")" -- "$cur"))
  fi
}
complete -F _aiida aiida
`;
}

/** The zsh script: zsh's bash-completion emulation running the bash script. */
export function zshCompletion(program: Command): string {
  return `# zsh completion for aiida: add \`source <(aiida completion zsh)\` to ~/.zshrc
autoload -U +X compinit && compinit
autoload -U +X bashcompinit && bashcompinit
${bashCompletion(program).split('\n').slice(1).join('\n')}`;
}

/** `aiida completion bash|zsh`. */
export function registerCompletionCommand(program: Command): void {
  const command = program
    .command('completion')
    .description(
      'Print a shell completion script for aiida (its commands and options). Load it in your ' +
        "shell's start-up file, e.g. `source <(aiida completion bash)` in ~/.bashrc.",
    )
    .argument('<shell>', `The shell: ${SHELLS.join(' or ')}.`, parseChoice(SHELLS))
    .action((shell: Shell) => {
      const root = program;
      echo((shell === 'bash' ? bashCompletion(root) : zshCompletion(root)).trimEnd());
    });
  withExamples(command, [
    'aiida completion bash > ~/.local/share/bash-completion/completions/aiida',
    'aiida completion zsh > ~/.aiida-completion.zsh   # then: source ~/.aiida-completion.zsh in ~/.zshrc',
  ]);
}
