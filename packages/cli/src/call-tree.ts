import type { EngineSession, ProcessRecord, ProcessReport } from './engine-session.js';
import { formatLocalTime } from './format.js';

// The call tree of a workflow and the reports along it, formatted as verdi's `process status`
// (aiida.cmdline.utils.ascii_vis.format_call_graph) and `process report`
// (aiida.cmdline.utils.common.get_workchain_report) print them.

/** A process and the processes it called, in the order they were created. */
export interface CallTree {
  record: ProcessRecord;
  depth: number;
  children: CallTree[];
}

/** The call tree below `record`, at most `maxDepth` levels below it (none: all). */
export async function callTree(
  session: EngineSession,
  record: ProcessRecord,
  maxDepth?: number,
  depth = 0,
): Promise<CallTree> {
  const children =
    maxDepth !== undefined && depth >= maxDepth
      ? []
      : await session.listProcesses({ parentPk: record.pk, order: 'asc' });
  return {
    record,
    depth,
    children: await Promise.all(
      children.map((child) => callTree(session, child, maxDepth, depth + 1)),
    ),
  };
}

/** `Finished [0]`, `Running`, `Waiting (paused)`: the state as verdi capitalises it. */
export function describeState(record: ProcessRecord): string {
  let text = record.state.charAt(0).toUpperCase() + record.state.slice(1);
  if (record.state === 'finished' && record.exitStatus !== null) text += ` [${record.exitStatus}]`;
  if (record.paused) text += ' (paused)';
  return text;
}

/**
 * The tree as verdi draws it:
 * ```
 * core.arithmetic.multiply_add<5> Finished [0]
 *     └── core.arithmetic.add<6> Finished [0]
 * ```
 */
export function formatCallTree(tree: CallTree): string {
  const lines: string[] = [];
  const visit = (node: CallTree, prefix: string, position: 'root' | 'middle' | 'last') => {
    const branch = position === 'root' ? '' : position === 'last' ? '└── ' : '├── ';
    lines.push(
      `${prefix}${branch}${node.record.type}<${node.record.pk}> ${describeState(node.record)}`,
    );
    const childPrefix = position === 'middle' ? `${prefix}│   ` : `${prefix}    `;
    node.children.forEach((child, i) => {
      visit(child, childPrefix, i === node.children.length - 1 ? 'last' : 'middle');
    });
  };
  visit(tree, '', 'root');
  return lines.join('\n');
}

/** Report levels, lowest first, as `--levelname` takes them. */
export const REPORT_LEVELS = ['DEBUG', 'INFO', 'REPORT', 'WARNING', 'ERROR'] as const;
/** One of {@link REPORT_LEVELS}. */
export type ReportLevelName = (typeof REPORT_LEVELS)[number];

/** A report line with the depth of its process in the call tree. */
export interface TreeReport extends ProcessReport {
  depth: number;
}

/**
 * The reports of `pk` and of the processes below it (at most `maxDepth` levels, counting `pk`
 * as 1, as verdi's `--max-depth`), of `levelname` or above, in time order.
 */
export async function collectReports(
  session: EngineSession,
  root: ProcessRecord,
  options: { levelname: ReportLevelName; maxDepth?: number },
): Promise<TreeReport[]> {
  const tree = await callTree(
    session,
    root,
    options.maxDepth === undefined ? undefined : options.maxDepth - 1,
  );
  const minimum = REPORT_LEVELS.indexOf(options.levelname);
  const reports: TreeReport[] = [];
  const visit = async (node: CallTree) => {
    for (const report of await session.getReports(node.record.pk)) {
      if (REPORT_LEVELS.indexOf(report.level.toUpperCase() as ReportLevelName) >= minimum) {
        reports.push({ ...report, depth: node.depth });
      }
    }
    for (const child of node.children) await visit(child);
  };
  await visit(tree);
  // In the order they were written (the id breaks ties of the same millisecond).
  return reports.sort((a, b) => Date.parse(a.time) - Date.parse(b.time) || a.id - b.id);
}

/**
 * `2024-05-01 09:44:06 [12 | REPORT]:     message` as verdi prints it: the id of the line, its
 * level, the depth of its process as indentation.
 */
export function formatReports(reports: readonly TreeReport[], indentSize = 2): string[] {
  const idWidth = Math.max(...reports.map((r) => String(r.id).length));
  const levelWidth = Math.max(...reports.map((r) => r.level.length));
  return reports.map(
    (r) =>
      `${formatLocalTime(r.time)} [${String(r.id).padEnd(idWidth)} | ${r.level.toUpperCase().padStart(levelWidth)}]:` +
      `${' '.repeat(r.depth * indentSize)} ${r.message}`,
  );
}
