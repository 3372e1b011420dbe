import { closeSync, type FSWatcher, openSync, utimesSync, watch } from 'node:fs';
import type pg from 'pg';
import type { TaskDispatcher } from './ports.js';
import type { ProcessStore } from './process-store.js';

/**
 * The wake-up channel of the store-as-queue transport (`process_control.backend` `core.store`):
 * whoever makes a row runnable (a submit, a child that ends, a play) calls `notify`, and idle
 * workers that `listen` look into the store at once instead of at their next poll. A wake-up
 * carries nothing (the row is the task) and may be lost: the poll is the safety net.
 */
export interface WorkSignal {
  /** Wakes every listener of this store, in any process. Never rejects. */
  notify(): Promise<void>;
  /**
   * Calls `listener` on every wake-up (several may be merged into one call); resolves once
   * listening, with what stops it.
   */
  listen(listener: () => void): Promise<() => Promise<void>>;
}

/**
 * SQLite's wake-up channel: a file beside the database (`<file>.wake`). `notify` touches it,
 * listeners watch it (inotify on Linux): no socket of any kind, and every process of the machine
 * that opens the store shares it.
 */
export class FileWorkSignal implements WorkSignal {
  constructor(readonly path: string) {}

  private ensure(): void {
    closeSync(openSync(this.path, 'a', 0o600));
  }

  async notify(): Promise<void> {
    try {
      const now = new Date();
      utimesSync(this.path, now, now);
    } catch {
      // No file yet: no one has listened yet either; create it for the next listener.
      try {
        this.ensure();
      } catch {
        // A wake-up may be lost; the listeners' poll finds the work.
      }
    }
  }

  async listen(listener: () => void): Promise<() => Promise<void>> {
    this.ensure();
    let watcher: FSWatcher | undefined = watch(this.path, { persistent: false }, () => listener());
    // A watcher that fails (the file was removed) leaves the poll to find work.
    watcher.on('error', () => {
      watcher?.close();
      watcher = undefined;
    });
    return async () => {
      watcher?.close();
      watcher = undefined;
    };
  }
}

/** The channel name of PostgreSQL's wake-ups: one queue per database. */
export const WORK_NOTIFY_CHANNEL = 'aiida_work';

/**
 * PostgreSQL's wake-up channel: `NOTIFY aiida_work` through the store's pool, `LISTEN` on a
 * connection of its own per listener (reconnected after an error; the poll covers the gap), so
 * daemons on several hosts share one queue with nothing but PostgreSQL.
 */
export class PostgresWorkSignal implements WorkSignal {
  constructor(
    private readonly pool: pg.Pool,
    private readonly newClient: () => pg.Client,
    private readonly onError: (error: Error) => void = () => {},
  ) {}

  async notify(): Promise<void> {
    await this.pool.query('SELECT pg_notify($1, $2)', [WORK_NOTIFY_CHANNEL, '']).catch(() => {});
  }

  async listen(listener: () => void): Promise<() => Promise<void>> {
    let stopped = false;
    let client: pg.Client | undefined;
    let retry: NodeJS.Timeout | undefined;
    const connect = async (): Promise<void> => {
      const c = this.newClient();
      client = c;
      let failed = false;
      const fail = (error: Error) => {
        if (failed) return;
        failed = true;
        c.end().catch(() => {});
        if (stopped) return;
        this.onError(error);
        retry = setTimeout(() => {
          connect().catch(() => {});
        }, 1000);
        retry.unref();
      };
      c.on('error', fail);
      c.on('end', () => fail(new Error('the LISTEN connection closed')));
      c.on('notification', () => listener());
      try {
        await c.connect();
        await c.query(`LISTEN ${WORK_NOTIFY_CHANNEL}`);
        // Work may have come while no one listened.
        if (!stopped) listener();
      } catch (error) {
        fail(error as Error);
        throw error;
      }
    };
    try {
      await connect();
    } catch (error) {
      stopped = true;
      if (retry) clearTimeout(retry);
      throw error;
    }
    return async () => {
      stopped = true;
      if (retry) clearTimeout(retry);
      await client?.end().catch(() => {});
    };
  }
}

/**
 * Set to `1` in a process's environment, its wake-ups are not sent (a test hook: they are lost,
 * and the workers' poll must find the work).
 */
export const SUPPRESS_WAKE_UPS_ENV = 'AIIDA_TEST_SUPPRESS_WAKE_UPS';

/**
 * The {@link TaskDispatcher} of the `core.store` transport: the row is already the task, so
 * "publishing" only wakes the workers through the store ({@link ProcessStore.notifyWork}). The
 * calls of one event-loop turn share one wake-up.
 */
export class StoreWorkDispatcher implements TaskDispatcher {
  private pending: Promise<void> | undefined;

  constructor(private readonly store: Pick<ProcessStore, 'notifyWork'>) {}

  publishContinue(_pk: number): Promise<void> {
    return this.wake();
  }

  publishContinueMany(_pks: number[]): Promise<void> {
    return this.wake();
  }

  /** Wakes the workers (once per event-loop turn, whatever the number of calls). */
  wake(): Promise<void> {
    this.pending ??= new Promise<void>((resolve) => {
      setImmediate(() => {
        this.pending = undefined;
        if (process.env[SUPPRESS_WAKE_UPS_ENV] === '1') return resolve();
        this.store.notifyWork().then(resolve, () => resolve());
      });
    });
    return this.pending;
  }
}
