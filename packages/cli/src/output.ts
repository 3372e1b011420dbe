import { styleText } from 'node:util';

/** A text style the command line uses; applied only when the stream is a terminal. */
export type Style = 'green' | 'red' | 'yellow' | 'blue' | 'bold' | 'dim';

let colorsOff = false;

/** `--no-color`: no colours on any stream, whatever the environment says. */
export function disableColors(): void {
  colorsOff = true;
}

/**
 * Whether text written to `stream` gets colours: `--no-color` ({@link disableColors}) removes
 * them, else `FORCE_COLOR` (non-empty, not `0`) forces them,
 * `NO_COLOR` (non-empty) removes them, otherwise only a terminal gets them.
 */
function colorsEnabled(stream: NodeJS.WriteStream): boolean {
  if (colorsOff) return false;
  const force = process.env.FORCE_COLOR;
  if (force !== undefined && force !== '' && force !== '0') return true;
  if (process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '') return false;
  return stream.isTTY === true;
}

/** `text` in `styles` when `stream` gets colours, else `text` unchanged. */
export function paint(
  text: string,
  styles: Style | Style[],
  stream: NodeJS.WriteStream = process.stdout,
): string {
  if (!colorsEnabled(stream)) return text;
  const list = Array.isArray(styles) ? styles : [styles];
  return list.reduce((acc, style) => styleText(style, acc), text);
}

/** True when a person can answer a question: standard input and output are terminals. */
export function isInteractive(): boolean {
  return process.stdin.isTTY === true && process.stdout.isTTY === true;
}

/** Writes `text` and a newline to standard output. */
export function echo(text = ''): void {
  process.stdout.write(`${text}\n`);
}

/** Writes `text` to standard output without a newline (for `Doing this... OK`). */
export function echoInline(text: string): void {
  process.stdout.write(text);
}

/** `Success: <message>` in green. */
export function echoSuccess(message: string): void {
  echo(`${paint('Success:', ['green', 'bold'])} ${message}`);
}

/** `Report: <message>` in blue. */
export function echoReport(message: string): void {
  echo(`${paint('Report:', ['blue', 'bold'])} ${message}`);
}

/** `Warning: <message>` in yellow, on standard error. */
export function echoWarning(message: string): void {
  process.stderr.write(`${paint('Warning:', ['yellow', 'bold'], process.stderr)} ${message}\n`);
}

/** `Error: <message>` in red, then `Hint: <hint>` if given, both on standard error. */
export function echoError(message: string, hint?: string): void {
  process.stderr.write(`${paint('Error:', ['red', 'bold'], process.stderr)} ${message}\n`);
  if (hint === undefined) return;
  // A message that already names the way out (e.g. "`aiida daemon start`") needs no hint.
  const command = hint.match(/`[^`]+`/)?.[0];
  if (command !== undefined && message.includes(command)) return;
  process.stderr.write(`${paint('Hint:', 'dim', process.stderr)} ${hint}\n`);
}

/** `OK` in green, to end a `Doing this... ` line. */
export function okMark(): string {
  return paint('OK', ['green', 'bold']);
}

/** `FAILED` in red, to end a `Doing this... ` line. */
export function failedMark(): string {
  return paint('FAILED', ['red', 'bold']);
}

/** Writes `value` as indented JSON to standard output (the `--json` form of every command). */
export function echoJson(value: unknown): void {
  echo(JSON.stringify(value, null, 2));
}
