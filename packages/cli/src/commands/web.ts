import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { loadProfile } from '../context.js';
import { daemonClientFor } from '../daemon-access.js';
import { withExamples } from '../help.js';
import { echo, echoReport, echoWarning } from '../output.js';
import { parsePort } from '../parse.js';

/** Options of `aiida web`. */
interface WebCommandOptions {
  host: string;
  port: number;
  token?: string;
  open?: boolean;
}

/**
 * `aiida web`: serves the dashboard and `/metrics` of the profile until Ctrl+C. The web package
 * (and its engine) is loaded only when this command runs.
 */
export function registerWebCommand(program: Command): void {
  const command = program
    .command('web')
    .summary('Serve a dashboard of the daemon and its processes, and /metrics, in the browser.')
    .description(
      "Serve a dashboard for the profile: this host's daemon with its workers, every other " +
        "host's workers (from the store's worker registry), the processes (filtered, sorted and " +
        'paged), each process with its inputs, outputs, report log and call tree, live updates, ' +
        "and actions (kill, pause, play; scale and restart this host's daemon) that ask for " +
        'confirmation. ' +
        '`/metrics` gives Prometheus metrics. It binds to 127.0.0.1 by default; any other host ' +
        'needs an access token on every request (generated and printed unless --token gives one).',
    )
    .option('--host <address>', 'Address to listen on.', '127.0.0.1')
    .option('--port <port>', 'Port to listen on.', parsePort, 8787)
    .option(
      '--token <token>',
      'Access token (at least 16 letters, digits or ._~-) required on every request.',
    )
    .option('--open', 'Open the dashboard in the default browser.')
    .action(async (options: WebCommandOptions, cmd: Command) => {
      const profile = loadProfile(cmd);
      const [{ startWebServer, isLoopbackHost }, { openEngine }] = await Promise.all([
        import('@aiida/web'),
        import('@aiida/engine'),
      ]);
      const engine = await openEngine(profile, {
        logger: {
          debug: () => {},
          info: () => {},
          warn: (message) => echoWarning(message),
          error: (message) => echoWarning(message),
        },
      });
      let server: Awaited<ReturnType<typeof startWebServer>>;
      try {
        server = await startWebServer({
          engine,
          daemon: await daemonClientFor(profile),
          profileName: profile.name,
          host: options.host,
          port: options.port,
          token: options.token,
          generateToken: true,
        });
      } catch (error) {
        await engine.close();
        throw error;
      }
      echoReport(`Dashboard of profile '${profile.name}' at ${server.url}`);
      if (server.token !== undefined && options.token === undefined) {
        echo(`Access token (needed on every request, also for /metrics): ${server.token}`);
      }
      if (!isLoopbackHost(options.host)) {
        echoWarning(
          'Not a loopback address: the dashboard is reachable from the network. Use HTTPS in front of it (a reverse proxy) so the token is not sent in clear text.',
        );
      }
      echo('Press Ctrl+C to stop.');
      if (options.open) openBrowser(server.url);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await server.close();
      await engine.close();
    });
  withExamples(command, [
    'aiida web',
    'aiida web --port 9000 --open',
    'aiida -p work web --host 0.0.0.0            # prints an access token',
    'curl -s http://127.0.0.1:8787/metrics',
  ]);
}

/** Opens `url` with the desktop's opener; only warns when there is none. */
function openBrowser(url: string): void {
  const child = spawn('xdg-open', [url], { stdio: 'ignore', detached: true });
  child.on('error', () => echoWarning(`Unable to open a browser (no xdg-open); open ${url}`));
  child.unref();
}
