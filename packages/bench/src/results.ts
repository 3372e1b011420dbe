import type { SoakResult } from './soak.js';
import type { Summary } from './stats.js';

/** A goal a figure is held to, and whether this run met it (null: not measured). */
export interface Goal {
  text: string;
  met: boolean | null;
}

/** One line of the results table: ours, the peer's, their ratio, the goal. */
export interface Figure {
  id: string;
  section: string;
  title: string;
  /** Unit of the medians: `ms`, `s`, `proc/s`, `msg/s`, `MB`. */
  unit: string;
  better: 'lower' | 'higher';
  ours: Summary;
  peerName?: string;
  peer?: Summary;
  /** ours.median / peer.median. */
  ratio?: number;
  goal?: Goal;
  note?: string;
}

/** Throughput by worker count, for the chart. */
export interface ThroughputSeries {
  name: string;
  /** Worker count -> summary of processes (or messages) per second. */
  points: { workers: number; value: Summary }[];
}

/** CPU ms per process (or job, message) by component, for one system at one worker count. */
export interface CpuBreakdown {
  workers: number;
  system: string;
  perItemMs: Record<string, Summary>;
}

/** RSS samples of one worker over the scale run. */
export interface RssTrace {
  pid: number;
  /** [seconds since the workers started, RSS bytes]. */
  samples: [number, number][];
  at20: number | null;
  at90: number | null;
  peak: number | null;
  flat: boolean | null;
  /** process.memoryUsage() of the worker around 20 % and 90 % of the run (bytes), if traced. */
  memory?: { at20: MemoryBreakdown | null; at90: MemoryBreakdown | null };
}

/** Where a worker's memory is: RSS, V8 heap, memory outside the heap held by JS objects. */
export interface MemoryBreakdown {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

/** A CPU profile summary: where the time goes in one process. */
export interface ProfileSummary {
  what: string;
  file: string;
  totalMs: number;
  /** Top functions by self time. */
  top: { fn: string; where: string; via?: string; selfMs: number; share: number }[];
  /** Self time grouped by package / area. */
  byArea: { area: string; selfMs: number; share: number }[];
}

/** Everything one run of the bench produced (docs/benchmarks.json). */
export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  command: string;
  quick: boolean;
  config: Record<string, unknown>;
  machine: Record<string, unknown>;
  versions: Record<string, string>;
  figures: Figure[];
  throughput: ThroughputSeries[];
  /** Where the CPU goes in the throughput runs. */
  cpu: CpuBreakdown[];
  scale?: {
    traces: RssTrace[];
    processes: number;
    seconds: number;
    /** Largest object groups retained by worker 0 once all processes finished (heap snapshot). */
    heap?: {
      pid: number;
      totalBytes: number;
      groups: { name: string; count: number; selfBytes: number }[];
      /** Closures and suspended async functions by source line, most numerous first. */
      functions: { name: string; count: number; selfBytes: number }[];
    };
  };
  profiles: ProfileSummary[];
  /** The soak run's counts and samples, when it ran. */
  soak?: SoakResult;
  notes: string[];
  errors: string[];
}

/** Builds a figure, with its ratio when there is a peer. */
export function figure(init: Omit<Figure, 'ratio'>): Figure {
  const ratio =
    init.peer && Number.isFinite(init.peer.median) && init.peer.median !== 0
      ? init.ours.median / init.peer.median
      : undefined;
  return { ...init, ratio };
}

/** The goal `ratio >= min`: met, missed, or not measured when there is no ratio. */
export function atLeast(ratio: number | undefined, min: number, text: string): Goal {
  return { text, met: ratio === undefined || !Number.isFinite(ratio) ? null : ratio >= min };
}

/** The goal `ratio <= max` (for times): met, missed, or not measured when there is no ratio. */
export function atMost(ratio: number | undefined, max: number, text: string): Goal {
  return { text, met: ratio === undefined || !Number.isFinite(ratio) ? null : ratio <= max };
}
