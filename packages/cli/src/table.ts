/** How a column's cells line up. */
export type Align = 'left' | 'right';

/** Options of {@link formatTable}. */
export interface TableOptions {
  /** Alignment per column; numbers are right-aligned by default, text left-aligned. */
  align?: Align[];
  /** Text put before every line. @default '' */
  indent?: string;
}

// Escape sequences of colours take no room on screen: leave them out when measuring a cell.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escapes is the point
const ANSI = /\u001b\[[0-9;]*m/g;

function visibleLength(text: string): number {
  return text.replace(ANSI, '').length;
}

/**
 * Formats rows as a plain-text table in the style of Python's `tabulate` "simple" format, which
 * `verdi` uses: a header line, a line of dashes under each column, then the rows, columns two
 * spaces apart. Cells may contain colour escapes.
 */
export function formatTable(
  headers: string[],
  rows: (string | number)[][],
  options: TableOptions = {},
): string {
  const cells = rows.map((row) => headers.map((_, i) => String(row[i] ?? '')));
  const align: Align[] = headers.map(
    (_, i) =>
      options.align?.[i] ??
      (rows.length > 0 && rows.every((row) => typeof row[i] === 'number') ? 'right' : 'left'),
  );
  const widths = headers.map((header, i) =>
    Math.max(visibleLength(header), ...cells.map((row) => visibleLength(row[i] ?? ''))),
  );
  const pad = (text: string, i: number): string => {
    const room = ' '.repeat((widths[i] ?? 0) - visibleLength(text));
    return align[i] === 'right' ? room + text : text + room;
  };
  const indent = options.indent ?? '';
  const line = (row: string[]): string => indent + row.map(pad).join('  ').trimEnd();
  return [
    line(headers),
    indent + widths.map((w) => '-'.repeat(w)).join('  '),
    ...cells.map(line),
  ].join('\n');
}
