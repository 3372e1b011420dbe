import { WriteBatcher } from '../src/write-batcher.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('WriteBatcher', () => {
  test('without a window, requests of one turn form one batch; each caller gets its own result or error', async () => {
    const batches: number[][] = [];
    const b = new WriteBatcher<number, number>(async (xs) => {
      batches.push(xs);
      return xs.map((x) => (x < 0 ? new Error(`negative ${x}`) : x * 2));
    });
    const results = await Promise.allSettled([b.submit(1), b.submit(-2), b.submit(3)]);
    expect(batches).toEqual([[1, -2, 3]]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : String(r.reason)))).toEqual([
      2,
      'Error: negative -2',
      6,
    ]);
  });

  test('with a window, requests made within it across turns join one batch; later ones form the next', async () => {
    const batches: number[][] = [];
    const b = new WriteBatcher<number, number>(
      async (xs) => {
        batches.push(xs);
        return xs;
      },
      500,
      40,
    );
    const first = [b.submit(1)];
    await new Promise((resolve) => setImmediate(resolve));
    first.push(b.submit(2));
    await sleep(5);
    first.push(b.submit(3));
    expect(batches).toEqual([]);
    expect(await Promise.all(first)).toEqual([1, 2, 3]);
    expect(batches).toEqual([[1, 2, 3]]);
    expect(await b.submit(4)).toBe(4);
    expect(batches).toEqual([[1, 2, 3], [4]]);
  });

  test('a full batch does not wait for its window; a failing flush rejects every caller of its batch', async () => {
    const batches: number[][] = [];
    const b = new WriteBatcher<number, number>(
      async (xs) => {
        batches.push(xs);
        if (xs.includes(99)) throw new Error('store down');
        return xs;
      },
      2,
      10_000,
    );
    const started = Date.now();
    expect(await Promise.all([b.submit(1), b.submit(2)])).toEqual([1, 2]);
    expect(Date.now() - started).toBeLessThan(5_000);
    const failed = await Promise.allSettled([b.submit(98), b.submit(99)]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(batches).toEqual([
      [1, 2],
      [98, 99],
    ]);
  });
});
