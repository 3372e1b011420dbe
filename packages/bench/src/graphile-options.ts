/**
 * The options every graphile-worker process of the bench runs with: the batching options its
 * performance page recommends (https://worker.graphile.org/docs/performance: `localQueue`, and
 * job completion and failure batched with zero delay) and its page's `concurrentJobs: 24`. The
 * pool stays at graphile-worker's default of 10 connections (the page uses 25): four workers of
 * 25 would take every connection this machine's PostgreSQL allows (100), which it shares with
 * our profiles and anyone else's tests.
 */
export const GRAPHILE_WORKER_OPTIONS = {
  concurrentJobs: 24,
  maxPoolSize: 10,
  localQueue: { size: 500 },
  completeJobBatchDelay: 0,
  failJobBatchDelay: 0,
} as const;

/** The options in words, for the report. */
export const GRAPHILE_OPTIONS_TEXT =
  'graphile-worker 0.17.3 with its recommended batching options on: localQueue { size: 500 }, ' +
  'completeJobBatchDelay 0, failJobBatchDelay 0; concurrentJobs 24 (its performance page), ' +
  'maxPoolSize 10 (its default; the page uses 25, but 4 workers x 25 would take all 100 ' +
  'connections of the local PostgreSQL)';
