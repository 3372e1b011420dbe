import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** The last `lines` lines of a file (all of it for a small file). */
export function tailLines(path: string, lines: number): string[] {
  const size = statSync(path).size;
  // Read back from the end in chunks until enough newlines are in hand.
  const fd = openSync(path, 'r');
  try {
    let start = size;
    let text = '';
    const chunk = 64 * 1024;
    while (start > 0) {
      const from = Math.max(0, start - chunk);
      const buffer = Buffer.alloc(start - from);
      readSync(fd, buffer, 0, buffer.length, from);
      text = buffer.toString('utf8') + text;
      start = from;
      if (text.split('\n').length > lines + 1) break;
    }
    const all = text.replace(/\n$/, '').split('\n');
    return text === '' ? [] : all.slice(-lines);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes what is appended to `path` to `write` until `signal` aborts, polling every `interval`
 * seconds. A file that shrinks (rotated by size) is read again from its start; a file that is
 * missing for a while is waited for.
 */
export async function followFile(
  path: string,
  write: (text: string) => void,
  signal: AbortSignal,
  interval = 0.25,
): Promise<void> {
  let position = existsSync(path) ? statSync(path).size : 0;
  while (!signal.aborted) {
    await sleep(interval * 1000, undefined, { signal }).catch(() => {});
    if (signal.aborted || !existsSync(path)) continue;
    const size = statSync(path).size;
    if (size < position) position = 0;
    if (size === position) continue;
    const fd = openSync(path, 'r');
    try {
      const buffer = Buffer.alloc(size - position);
      const read = readSync(fd, buffer, 0, buffer.length, position);
      position += read;
      write(buffer.subarray(0, read).toString('utf8'));
    } finally {
      closeSync(fd);
    }
  }
}
