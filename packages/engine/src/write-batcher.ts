/**
 * Groups requests made in the same turn of the event loop (or, with a window, within `windowMs`
 * of the first pending one) into one call (one store transaction, hence one fsync: group
 * commit). Each caller still gets its own result or error, and only after the batch committed, so
 * durability is unchanged.
 */
export class WriteBatcher<Request, Result> {
  private queue: {
    request: Request;
    resolve: (result: Result) => void;
    reject: (error: unknown) => void;
  }[] = [];
  private scheduled = false;

  constructor(
    /** Handles a batch; returns one result or Error per request, in order. */
    private readonly flushBatch: (requests: Request[]) => Promise<(Result | Error)[]>,
    private readonly maxBatch = 500,
    /** Milliseconds the first pending request waits for others; 0: the next turn. @default 0 */
    private readonly windowMs = 0,
  ) {}

  submit(request: Request): Promise<Result> {
    return new Promise((resolve, reject) => {
      this.queue.push({ request, resolve, reject });
      if (this.queue.length >= this.maxBatch && this.timer) {
        // A full batch does not wait for the rest of its window.
        clearTimeout(this.timer);
        this.timer = undefined;
        setImmediate(() => void this.flush());
      } else if (!this.scheduled) {
        this.scheduled = true;
        if (this.windowMs > 0) {
          this.timer = setTimeout(() => {
            this.timer = undefined;
            void this.flush();
          }, this.windowMs);
        } else setImmediate(() => void this.flush());
      }
    });
  }

  private timer: NodeJS.Timeout | undefined;

  private async flush(): Promise<void> {
    const batch = this.queue.splice(0, this.maxBatch);
    if (this.queue.length > 0) setImmediate(() => void this.flush());
    else this.scheduled = false;
    if (batch.length === 0) return;
    try {
      const results = await this.flushBatch(batch.map((b) => b.request));
      batch.forEach((b, i) => {
        const result = results[i];
        if (result instanceof Error) b.reject(result);
        else b.resolve(result as Result);
      });
    } catch (error) {
      for (const b of batch) b.reject(error);
    }
  }
}
