import { performance } from 'node:perf_hooks';
import type { QueueDeclaration, TopologyNames } from './topology.js';

/**
 * Seconds a "nobody listens" answer stays valid in a publisher; a new subscription waits this long
 * after it is counted before it reports itself ready, so every change committed after that is
 * broadcast to it.
 */
export const LISTENER_ANSWER_VALIDITY_S = 1;
/** Seconds between two checks of a publisher (well inside the validity). */
export const LISTENER_POLL_INTERVAL_S = 0.3;

/**
 * `P.listeners`: a queue nothing is ever published to. Every state-changed subscription consumes
 * it, so its consumer count says whether anyone listens; declaring it (same options everywhere)
 * returns that count.
 */
export function listenersQueueDeclaration(names: TopologyNames): QueueDeclaration {
  return {
    queue: `${names.prefix}.listeners`,
    durable: false,
    autoDelete: false,
    exclusive: false,
  };
}

/**
 * Tells a publisher of state-changed broadcasts whether a subscriber may be listening, from the
 * consumer count of `P.listeners`, checked every {@link LISTENER_POLL_INTERVAL_S}.
 *
 * Correctness: it answers "nobody" only while the check that found no consumer was *sent* less
 * than {@link LISTENER_ANSWER_VALIDITY_S} ago (before any check, after a failed one, or when the
 * checks stall, it answers "maybe"). A subscription is counted from its consume-ok on and reports
 * itself ready {@link LISTENER_ANSWER_VALIDITY_S} later; so a change decided "nobody" was decided
 * less than that after a check that could not yet see the subscriber, i.e. before it was ready, and
 * a watcher that reads the store after its subscription is ready sees that change there.
 */
export class ListenerWatch {
  #lastNone: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling = false;
  #stopped = false;
  /** Broadcasts left out because nobody listened (for tests and logs). */
  skipped = 0;

  constructor(
    /** Resolves with the consumer count of `P.listeners`. */
    private readonly count: () => Promise<number>,
    private readonly onError: (error: unknown) => void = () => {},
  ) {}

  /** False only when nobody listened at a check sent less than the validity ago. Starts the checks. */
  mayHaveListeners(): boolean {
    if (!this.#timer && !this.#stopped) {
      this.#timer = setInterval(() => void this.#poll(), LISTENER_POLL_INTERVAL_S * 1000);
      this.#timer.unref();
      void this.#poll();
    }
    const none = this.#lastNone;
    return none === undefined || performance.now() - none >= LISTENER_ANSWER_VALIDITY_S * 1000;
  }

  /** Stops the checks; from then on it answers "maybe". */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#lastNone = undefined;
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#stopped) return;
    this.#polling = true;
    const sent = performance.now();
    try {
      const consumers = await this.count();
      if (this.#stopped) return;
      this.#lastNone = consumers === 0 ? sent : undefined;
    } catch (error) {
      this.#lastNone = undefined;
      this.onError(error);
    } finally {
      this.#polling = false;
    }
  }
}
