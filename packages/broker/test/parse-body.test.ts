import { PROTOCOL_VERSION } from '@aiida/ipc';
import { parseTaskBody, validateConsumerOptions } from '../src/task-consumer.js';

describe('parseTaskBody', () => {
  const good = { v: PROTOCOL_VERSION, type: 'continue', pk: 12 };

  it('accepts a decoded JSON body, a Buffer and a string', () => {
    expect(parseTaskBody(good)).toEqual({ ok: true, value: good });
    expect(parseTaskBody(Buffer.from(JSON.stringify(good)))).toEqual({ ok: true, value: good });
    expect(parseTaskBody(JSON.stringify(good))).toEqual({ ok: true, value: good });
  });

  it('says why a body is refused', () => {
    const notJson = parseTaskBody(Buffer.from('{not json'));
    expect(notJson).toMatchObject({ ok: false, reason: expect.stringMatching(/not JSON/) });
    const badPk = parseTaskBody({ ...good, pk: -1 });
    expect(badPk).toMatchObject({ ok: false, reason: expect.stringMatching(/pk:/) });
    const otherVersion = parseTaskBody({ ...good, v: 99 });
    expect(otherVersion).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^body fails its schema \(v:/),
    });
    const extra = parseTaskBody({ ...good, extra: 1 });
    expect(extra.ok).toBe(false);
  });
});

describe('validateConsumerOptions', () => {
  it('accepts finite positive integers with prefetch >= concurrency', () => {
    expect(validateConsumerOptions({ prefetch: 20, concurrency: 10 })).toEqual({
      prefetch: 20,
      concurrency: 10,
    });
  });

  it.each([
    [{ prefetch: 10, concurrency: 0 }, /concurrency/],
    [{ prefetch: 10, concurrency: Number.POSITIVE_INFINITY }, /concurrency/],
    [{ prefetch: 0, concurrency: 1 }, /prefetch/],
    [{ prefetch: 1.5, concurrency: 1 }, /prefetch/],
    [{ prefetch: 5, concurrency: 10 }, /at least concurrency/],
  ])('refuses %j', (options, pattern) => {
    expect(() => validateConsumerOptions(options)).toThrow(pattern);
  });
});
