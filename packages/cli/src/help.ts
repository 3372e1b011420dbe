import type { Command } from 'commander';

/** Adds an `Examples:` section to the end of `command`'s `--help`, one `$ aiida ...` per line. */
export function withExamples<T extends Command>(command: T, examples: string[]): T {
  const lines = examples.map((example) =>
    example.startsWith('#') ? `  ${example}` : `  $ ${example}`,
  );
  return command.addHelpText('after', `\nExamples:\n${lines.join('\n')}`);
}
