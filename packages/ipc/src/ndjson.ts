/**
 * Newline-delimited JSON framing for byte streams (the control socket). Copes with messages split
 * across chunks, several messages in one chunk, a line that is not JSON (an error for that line;
 * the stream goes on) and a line above the size cap (refused as soon as it crosses the cap, its
 * remaining bytes skipped up to the next newline, never buffered whole).
 */

/** Default cap on one line, in bytes (1 MiB). */
export const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;

/** Why a line could not be decoded. */
export type NdjsonErrorKind = 'invalid_json' | 'line_too_long' | 'incomplete_line';

/** A line that could not be decoded. */
export interface NdjsonFrameError {
  kind: NdjsonErrorKind;
  message: string;
}

/** What decoding produces, in stream order. */
export type NdjsonEvent =
  | { kind: 'message'; value: unknown }
  | { kind: 'error'; error: NdjsonFrameError };

/** Options of {@link NdjsonDecoder}. */
export interface NdjsonDecoderOptions {
  /**
   * Longest accepted line in bytes, newline excluded.
   * @default 1048576
   */
  maxLineBytes?: number;
}

const NEWLINE = 0x0a;

/**
 * Incremental decoder: feed it chunks with {@link NdjsonDecoder.push}, get back the complete
 * messages and errors each chunk finished. Blank lines are ignored.
 */
export class NdjsonDecoder {
  readonly maxLineBytes: number;
  private pieces: Buffer[] = [];
  private pendingBytes = 0;
  /** True while skipping the rest of a line that already exceeded the cap. */
  private discarding = false;

  constructor(options: NdjsonDecoderOptions = {}) {
    this.maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  /** Bytes held for the line in progress. Never above `maxLineBytes`. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /** True when a line has started but not ended (or is being skipped). */
  get hasPartialLine(): boolean {
    return this.pendingBytes > 0 || this.discarding;
  }

  /** Feeds one chunk; returns the events for every line the chunk completed. */
  push(chunk: Buffer | string): NdjsonEvent[] {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    const events: NdjsonEvent[] = [];
    let start = 0;
    while (start < bytes.length) {
      const newline = bytes.indexOf(NEWLINE, start);
      const end = newline === -1 ? bytes.length : newline;
      if (this.discarding) {
        // Skip the remainder of an oversized line.
        if (newline !== -1) this.discarding = false;
      } else if (this.pendingBytes + (end - start) > this.maxLineBytes) {
        this.pieces = [];
        this.pendingBytes = 0;
        events.push({
          kind: 'error',
          error: {
            kind: 'line_too_long',
            message: `line longer than ${this.maxLineBytes} bytes refused`,
          },
        });
        if (newline === -1) this.discarding = true;
      } else {
        if (end > start) {
          // A partial line outlives this call: copy it, since callers may reuse their chunks.
          const piece = bytes.subarray(start, end);
          this.pieces.push(newline === -1 ? Buffer.from(piece) : piece);
          this.pendingBytes += end - start;
        }
        if (newline !== -1) {
          const event = this.takeLine();
          if (event) events.push(event);
        }
      }
      if (newline === -1) break;
      start = newline + 1;
    }
    return events;
  }

  /**
   * Ends the stream: a line left without its newline is reported as `incomplete_line` (it is not
   * decoded, since the peer may have been cut off mid-message).
   */
  end(): NdjsonEvent[] {
    if (!this.hasPartialLine) return [];
    this.pieces = [];
    this.pendingBytes = 0;
    this.discarding = false;
    return [
      {
        kind: 'error',
        error: { kind: 'incomplete_line', message: 'stream ended in the middle of a line' },
      },
    ];
  }

  private takeLine(): NdjsonEvent | undefined {
    const line = Buffer.concat(this.pieces, this.pendingBytes).toString('utf8');
    this.pieces = [];
    this.pendingBytes = 0;
    const text = line.endsWith('\r') ? line.slice(0, -1) : line;
    if (text.trim() === '') return undefined;
    try {
      return { kind: 'message', value: JSON.parse(text) };
    } catch (error) {
      return {
        kind: 'error',
        error: {
          kind: 'invalid_json',
          message: `line is not valid JSON: ${(error as Error).message}`,
        },
      };
    }
  }
}

/** Encodes one message as a line of NDJSON (JSON never contains a raw newline). */
export function encodeNdjson(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('value has no JSON representation');
  return `${text}\n`;
}
