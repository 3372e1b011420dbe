#!/usr/bin/env node

// `aiida --version` (or `-V`) alone answers before the command tree, commander and the config
// are loaded: it is the command scripts and shells call most often only to see that `aiida` is
// there. Anything else goes through the full program, whose commands import their packages only
// when they run.
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { CLI_VERSION } = await import('./version.js');
  process.stdout.write(`${CLI_VERSION}\n`);
  process.exit(0);
}

const { main } = await import('./program.js');
// Exit explicitly once the command is done: a library may keep a timer or socket alive (a broker
// client's reconnect timer, a store handle) after everything the command needed has finished.
// Standard output is synchronous for files and pipes on Linux, so nothing written is lost.
const code = await main(process.argv);
process.exit(code);
