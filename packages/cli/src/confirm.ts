import { createInterface } from 'node:readline/promises';
import { CliError, ExitCodes } from './errors.js';
import { isInteractive } from './output.js';

/**
 * Asks `question` (`[y/N]`) unless `yes` (`-y/--yes`) was given. Without a terminal it never
 * prompts: it fails with a hint to pass `-y/--yes`. Resolves to whether the answer was yes.
 */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes) return true;
  if (!isInteractive()) {
    throw new CliError(
      'confirmation_required',
      `${question} (needs confirmation, and there is no terminal to ask)`,
      {
        hint: 'Pass -y/--yes to confirm without a prompt.',
        exitCode: ExitCodes.usage,
      },
    );
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const answer = await rl.question(`${question} [y/N]: `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
