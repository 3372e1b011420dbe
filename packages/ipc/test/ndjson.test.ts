import { encodeNdjson, NdjsonDecoder, type NdjsonEvent } from '@aiida/ipc';
import fc from 'fast-check';

function messages(events: NdjsonEvent[]): unknown[] {
  return events.filter((e) => e.kind === 'message').map((e) => (e as { value: unknown }).value);
}

describe('NdjsonDecoder', () => {
  it('joins a message split across chunks', () => {
    const decoder = new NdjsonDecoder();
    expect(decoder.push('{"a":')).toEqual([]);
    expect(decoder.hasPartialLine).toBe(true);
    expect(decoder.push('1}\n')).toEqual([{ kind: 'message', value: { a: 1 } }]);
    expect(decoder.hasPartialLine).toBe(false);
  });

  it('splits several messages in one chunk and keeps the tail', () => {
    const decoder = new NdjsonDecoder();
    const events = decoder.push('{"a":1}\n{"b":2}\r\n\n{"c"');
    expect(messages(events)).toEqual([{ a: 1 }, { b: 2 }]);
    expect(messages(decoder.push(':3}\n'))).toEqual([{ c: 3 }]);
  });

  it('reports invalid JSON for that line only and goes on', () => {
    const decoder = new NdjsonDecoder();
    const events = decoder.push('{"a":1}\nnot json\n{"b":2}\n');
    expect(events).toHaveLength(3);
    expect(events[1]).toMatchObject({ kind: 'error', error: { kind: 'invalid_json' } });
    expect(messages(events)).toEqual([{ a: 1 }, { b: 2 }]);
  });

  it('decodes multi-byte characters split between chunks', () => {
    const decoder = new NdjsonDecoder();
    const bytes = Buffer.from(encodeNdjson({ s: 'π→✓' }));
    const cut = bytes.indexOf(0xcf) + 1; // inside the two bytes of 'π'
    expect(decoder.push(bytes.subarray(0, cut))).toEqual([]);
    expect(messages(decoder.push(bytes.subarray(cut)))).toEqual([{ s: 'π→✓' }]);
  });

  it('refuses an oversized line without buffering it whole and then recovers', () => {
    const decoder = new NdjsonDecoder({ maxLineBytes: 1024 });
    const events: NdjsonEvent[] = [];
    // 10 chunks of 1000 bytes, no newline: refused once, never more than the cap held.
    for (let i = 0; i < 10; i++) {
      events.push(...decoder.push('x'.repeat(1000)));
      expect(decoder.bufferedBytes).toBeLessThanOrEqual(1024);
    }
    expect(events).toEqual([
      { kind: 'error', error: expect.objectContaining({ kind: 'line_too_long' }) },
    ]);
    // The rest of the oversized line is skipped up to its newline; the next line decodes.
    expect(messages(decoder.push('yyy\n{"ok":true}\n'))).toEqual([{ ok: true }]);
  });

  it('refuses an oversized line that arrives in one chunk with its newline', () => {
    const decoder = new NdjsonDecoder({ maxLineBytes: 10 });
    const events = decoder.push(`${'z'.repeat(50)}\n{"a":1}\n`);
    expect(events[0]).toMatchObject({ kind: 'error', error: { kind: 'line_too_long' } });
    expect(messages(events)).toEqual([{ a: 1 }]);
  });

  it('reports an unterminated line at the end of the stream as incomplete', () => {
    const decoder = new NdjsonDecoder();
    decoder.push('{"a":1}\n{"half":');
    expect(decoder.end()).toEqual([
      { kind: 'error', error: expect.objectContaining({ kind: 'incomplete_line' }) },
    ]);
    expect(decoder.end()).toEqual([]);
  });

  it('copes with a caller that reuses its chunk buffer', () => {
    const decoder = new NdjsonDecoder();
    const chunk = Buffer.from('{"a":');
    decoder.push(chunk);
    chunk.fill(0x20);
    expect(messages(decoder.push('1}\n'))).toEqual([{ a: 1 }]);
  });
});

describe('NdjsonDecoder properties', () => {
  const jsonValue = fc.jsonValue({ maxDepth: 3 });

  it('property: any chunking of a message stream decodes to the same messages', () => {
    fc.assert(
      fc.property(
        fc.array(jsonValue, { maxLength: 20 }),
        fc.array(fc.nat({ max: 64 }), { maxLength: 40 }),
        (values, cuts) => {
          const bytes = Buffer.from(values.map((value) => encodeNdjson(value)).join(''));
          const decoder = new NdjsonDecoder();
          const events: NdjsonEvent[] = [];
          let offset = 0;
          for (const size of cuts) {
            if (offset >= bytes.length) break;
            events.push(...decoder.push(bytes.subarray(offset, offset + size)));
            offset += size;
          }
          events.push(...decoder.push(bytes.subarray(offset)));
          events.push(...decoder.end());
          expect(events.every((e) => e.kind === 'message')).toBe(true);
          // JSON round trip normalises -0 to 0, as the wire does.
          expect(messages(events)).toEqual(
            values.map((value) => JSON.parse(JSON.stringify(value))),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
