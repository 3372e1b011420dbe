import { readFileSync, statSync } from 'node:fs';

/** Objects of one kind in a heap snapshot: how many, and their own (shallow) size. */
export interface HeapGroup {
  name: string;
  count: number;
  selfBytes: number;
}

interface Snapshot {
  snapshot: {
    meta: {
      node_fields: string[];
      node_types: [string[], ...unknown[]];
      edge_fields: string[];
      edge_types: [string[], ...unknown[]];
      location_fields?: string[];
    };
  };
  nodes: number[];
  edges: number[];
  strings: string[];
  locations?: number[];
}

/** What a heap snapshot holds: the largest object groups, and where retained functions live. */
export interface HeapSummary {
  total: number;
  groups: HeapGroup[];
  /** Closures and suspended async functions (generators) by source location, most first. */
  functions: HeapGroup[];
}

/**
 * Groups the objects of a V8 `.heapsnapshot` by type and constructor name (strings, arrays and
 * code by type), and the closures and suspended async functions by the source line of their
 * function (through the `shared` → `script` edges and the snapshot's locations).
 */
export function summarizeHeapSnapshot(
  file: string,
  shorten: (url: string) => string = (u) => u,
  top = 12,
): HeapSummary {
  // V8 strings stop at about 512 MiB; a bigger snapshot can't be read in one piece.
  const size = statSync(file).size;
  if (size > 450 * 1024 * 1024) {
    throw new Error(`heap snapshot of ${Math.round(size / 2 ** 20)} MiB is too big to summarise`);
  }
  const data = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const meta = data.snapshot.meta;
  const nodeWidth = meta.node_fields.length;
  const edgeWidth = meta.edge_fields.length;
  const types = meta.node_types[0];
  const edgeTypes = meta.edge_types[0];
  const at = {
    type: meta.node_fields.indexOf('type'),
    name: meta.node_fields.indexOf('name'),
    size: meta.node_fields.indexOf('self_size'),
    edges: meta.node_fields.indexOf('edge_count'),
    edgeType: meta.edge_fields.indexOf('type'),
    edgeName: meta.edge_fields.indexOf('name_or_index'),
    edgeTo: meta.edge_fields.indexOf('to_node'),
  };
  const nodes = data.nodes;
  const edges = data.edges;
  const strings = data.strings;
  // First edge of each node (edges are stored in node order).
  const firstEdge = new Map<number, number>();
  for (let i = 0, e = 0; i < nodes.length; i += nodeWidth) {
    firstEdge.set(i, e);
    e += nodes[i + at.edges]! * edgeWidth;
  }
  const nameOf = (node: number) => strings[nodes[node + at.name]!] ?? '';
  const typeOf = (node: number) => types[nodes[node + at.type]!] ?? 'unknown';
  const edgeTo = (node: number, edgeName: string): number | undefined => {
    const start = firstEdge.get(node)!;
    const end = start + nodes[node + at.edges]! * edgeWidth;
    for (let e = start; e < end; e += edgeWidth) {
      const type = edgeTypes[edges[e + at.edgeType]!];
      if (type === 'element' || type === 'hidden') continue;
      if (strings[edges[e + at.edgeName]!] === edgeName) return edges[e + at.edgeTo];
    }
    return undefined;
  };
  const lineOf = new Map<number, number>();
  if (data.locations && meta.location_fields) {
    const w = meta.location_fields.length;
    const obj = meta.location_fields.indexOf('object_index');
    const line = meta.location_fields.indexOf('line');
    for (let i = 0; i < data.locations.length; i += w) {
      lineOf.set(data.locations[i + obj]!, data.locations[i + line]!);
    }
  }
  const whereIs = (closure: number): string => {
    const shared = edgeTo(closure, 'shared');
    const script =
      shared === undefined
        ? undefined
        : (edgeTo(shared, 'script_or_debug_info') ?? edgeTo(shared, 'script'));
    const url = script === undefined ? '' : nameOf(script);
    const line = lineOf.get(closure);
    const fn = nameOf(closure) || '(anonymous)';
    return `${fn} ${url ? shorten(url) : '?'}${line === undefined ? '' : `:${line + 1}`}`;
  };

  const groups = new Map<string, HeapGroup>();
  const functions = new Map<string, HeapGroup>();
  const bump = (map: Map<string, HeapGroup>, name: string, size: number) => {
    const group = map.get(name) ?? { name, count: 0, selfBytes: 0 };
    group.count++;
    group.selfBytes += size;
    map.set(name, group);
  };
  let total = 0;
  for (let i = 0; i < nodes.length; i += nodeWidth) {
    const type = typeOf(i);
    const size = nodes[i + at.size]!;
    total += size;
    const name = nameOf(i);
    bump(groups, type === 'object' ? name : type === 'closure' ? 'closures' : `(${type})`, size);
    if (type === 'closure') bump(functions, `closure ${whereIs(i)}`, size);
    else if (type === 'object' && (name === 'Generator' || name === 'AsyncGenerator')) {
      const fn = edgeTo(i, 'function');
      bump(functions, `suspended async ${fn === undefined ? '?' : whereIs(fn)}`, size);
    }
  }
  const sorted = (map: Map<string, HeapGroup>, by: 'selfBytes' | 'count') =>
    [...map.values()].sort((a, b) => b[by] - a[by]).slice(0, top);
  return { total, groups: sorted(groups, 'selfBytes'), functions: sorted(functions, 'count') };
}
