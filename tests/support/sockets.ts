import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** One TCP socket of a process: its fd, and the remote port (0 for a listening socket). */
export interface TcpSocket {
  fd: string;
  inode: string;
  remotePort: number;
}

/** TCP sockets of this network namespace (IPv4 and IPv6) by inode, from /proc/net/tcp*. */
function tcpTable(): Map<string, { remotePort: number }> {
  const table = new Map<string, { remotePort: number }>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.trim().split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      const inode = cols[9];
      const remote = cols[2];
      if (inode === undefined || inode === '0' || remote === undefined) continue;
      table.set(inode, { remotePort: Number.parseInt(remote.split(':')[1] ?? '0', 16) });
    }
  }
  return table;
}

/**
 * The TCP sockets process `pid` holds: its fds (`/proc/<pid>/fd`) that are sockets listed in
 * /proc/net/tcp*. Throws when the process is gone.
 */
export function tcpSocketsOf(pid: number): TcpSocket[] {
  const table = tcpTable();
  const found: TcpSocket[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
    const entry = inode === undefined ? undefined : table.get(inode);
    if (inode !== undefined && entry) found.push({ fd, inode, remotePort: entry.remotePort });
  }
  return found;
}
