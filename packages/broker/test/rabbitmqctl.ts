import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** One row of `rabbitmqctl list_queues` with the columns asked for. */
export type QueueRow = Record<string, unknown> & { name: string };

/** Queues whose name starts with `prefix`, with the given columns (rabbitmqctl's JSON output). */
export async function listQueues(prefix: string, columns: string[]): Promise<QueueRow[]> {
  const { stdout } = await run(
    'rabbitmqctl',
    ['list_queues', '-q', '--formatter', 'json', 'name', ...columns],
    { timeout: 30_000 },
  );
  const rows = JSON.parse(stdout) as QueueRow[];
  return rows
    .filter((row) => row.name.startsWith(prefix))
    .map((row) =>
      Array.isArray(row.arguments)
        ? {
            ...row,
            // rabbitmqctl prints arguments as [name, type, value] triples
            arguments: Object.fromEntries(
              (row.arguments as [string, string, unknown][]).map(([key, , value]) => [key, value]),
            ),
          }
        : row,
    );
}

/** The one queue called `name`, or undefined. */
export async function queueRow(name: string, columns: string[]): Promise<QueueRow | undefined> {
  const rows = await listQueues(name, columns);
  return rows.find((row) => row.name === name);
}

/** Closes (server side) every connection whose client-given name is `connectionName`. */
export async function closeConnectionNamed(
  connectionName: string,
  reason: string,
): Promise<number> {
  const { stdout } = await run(
    'rabbitmqctl',
    ['list_connections', '-q', 'pid', 'client_properties'],
    {
      timeout: 30_000,
    },
  );
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${connectionName}"}`))
    .map((line) => line.split('\t')[0]!);
  for (const pid of pids)
    await run('rabbitmqctl', ['close_connection', pid, reason], { timeout: 30_000 });
  return pids.length;
}

/** The negotiated heartbeat (`timeout`, seconds) of each connection whose client-given name is `connectionName`. */
export async function connectionHeartbeats(connectionName: string): Promise<number[]> {
  const { stdout } = await run(
    'rabbitmqctl',
    ['list_connections', '-q', 'timeout', 'client_properties'],
    { timeout: 30_000 },
  );
  return stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${connectionName}"}`))
    .map((line) => Number(line.split('\t')[0]));
}
