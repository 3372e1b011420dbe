/**
 * A progress line. On a terminal it is rewritten in place; elsewhere (a pipe, a log file, CI) a
 * new line is written only when the text changed and at most every `interval` seconds, so logs
 * stay short but still show that something moves.
 */
export class ProgressLine {
  private readonly stream: NodeJS.WriteStream;
  private readonly interval: number;
  private lastText = '';
  private lastWrite = 0;
  private readonly tty: boolean;

  constructor(options: { stream?: NodeJS.WriteStream; interval?: number } = {}) {
    this.stream = options.stream ?? process.stdout;
    this.interval = options.interval ?? 2;
    this.tty = this.stream.isTTY === true;
  }

  /** Shows `text` as the current progress. */
  update(text: string): void {
    if (text === this.lastText) return;
    const now = Date.now();
    if (this.tty) {
      this.stream.write(`\r\u001b[2K${text}`);
    } else if (now - this.lastWrite >= this.interval * 1000) {
      this.stream.write(`${text}\n`);
      this.lastWrite = now;
    } else {
      return;
    }
    this.lastText = text;
  }

  /** Shows `text` as the final state and ends the line. */
  done(text: string): void {
    if (this.tty) this.stream.write(`\r\u001b[2K${text}\n`);
    else if (text !== this.lastText) this.stream.write(`${text}\n`);
    this.lastText = text;
  }
}

/** A bar of `width` cells, `fraction` of them full: `[#####.....]`. */
export function bar(fraction: number, width = 20): string {
  const full = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}]`;
}
