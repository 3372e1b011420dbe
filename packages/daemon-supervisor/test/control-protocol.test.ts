import { controlErrorResponseSchema, NdjsonDecoder, PROTOCOL_VERSION } from '@aiida/ipc';
import {
  errorResponse,
  frameErrorResponse,
  okResponse,
  parseControlRequest,
} from '../src/control-protocol.js';

const codeOf = (value: unknown) => {
  const parsed = parseControlRequest(value);
  return parsed.ok ? 'ok' : parsed.error.code;
};

describe('parseControlRequest', () => {
  test('valid requests pass', () => {
    for (const request of [
      { v: 1, id: 'a', type: 'ping' },
      { v: 1, id: 'a', type: 'status' },
      { v: 1, id: 'a', type: 'workers' },
      { v: 1, id: 'a', type: 'incr', n: 2 },
      { v: 1, id: 'a', type: 'decr', n: 1 },
      { v: 1, id: 'a', type: 'restart' },
      { v: 1, id: 'a', type: 'stop' },
      { v: 1, id: 'a', type: 'stop', gracefulTimeout: 0.5 },
    ]) {
      expect(parseControlRequest(request)).toEqual({ ok: true, request });
    }
  });

  test.each([
    ['null', null],
    ['an array', [1, 2]],
    ['a string', 'ping'],
    ['a number', 3],
  ])('%s is invalid_request with id null', (_what, value) => {
    expect(parseControlRequest(value)).toMatchObject({
      ok: false,
      id: null,
      error: { code: 'invalid_request', message: 'a request must be a JSON object' },
    });
  });

  test('another protocol version: protocol_mismatch naming both, before anything else', () => {
    const parsed = parseControlRequest({ v: 7, id: 'x', type: 'whatever', junk: true });
    expect(parsed).toMatchObject({
      ok: false,
      id: 'x',
      error: { code: 'protocol_mismatch', details: { supervisorVersion: 1, clientVersion: 7 } },
    });
    expect(!parsed.ok && parsed.error.message).toMatch(/version 1.*version 7/);
  });

  test('missing or non-numeric v names the field', () => {
    const missing = parseControlRequest({ id: 'x', type: 'ping' });
    expect(!missing.ok && missing.error).toMatchObject({ code: 'invalid_request' });
    expect(!missing.ok && missing.error.message).toContain("'v'");
    expect(codeOf({ v: '1', id: 'x', type: 'ping' })).toBe('invalid_request');
  });

  test('unknown type is unknown_request, listing the known ones', () => {
    const parsed = parseControlRequest({ v: 1, id: 'x', type: 'reboot' });
    expect(parsed).toMatchObject({ ok: false, id: 'x', error: { code: 'unknown_request' } });
    expect(!parsed.ok && parsed.error.message).toContain('ping, status, workers');
    expect(codeOf({ v: 1, id: 'x' })).toBe('invalid_request');
  });

  test.each([
    [{ v: 1, id: 'x', type: 'incr' }, "'n'"],
    [{ v: 1, id: 'x', type: 'incr', n: 0 }, "'n'"],
    [{ v: 1, id: 'x', type: 'decr', n: 1.5 }, "'n'"],
    [{ v: 1, id: 'x', type: 'stop', gracefulTimeout: -1 }, "'gracefulTimeout'"],
    [{ v: 1, id: 'x', type: 'ping', extra: 1 }, "'extra'"],
    [{ v: 1, type: 'ping' }, "'id'"],
    [{ v: 1, id: '', type: 'ping' }, "'id'"],
  ])('wrong shape %j is invalid_request naming %s', (value, field) => {
    const parsed = parseControlRequest(value);
    expect(parsed).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
    expect(!parsed.ok && parsed.error.message).toContain(field);
  });
});

describe('framing errors', () => {
  test('each decoder error maps to its code', () => {
    const decoder = new NdjsonDecoder({ maxLineBytes: 16 });
    const events = [
      ...decoder.push('not json\n'),
      ...decoder.push(`${'x'.repeat(40)}\n`),
      ...decoder.push('{"v":1'),
      ...decoder.end(),
    ];
    const codes = events.map((e) =>
      e.kind === 'error' ? frameErrorResponse(e.error).error.code : e.kind,
    );
    expect(codes).toEqual(['invalid_request', 'request_too_large', 'incomplete_request']);
  });

  test('responses fit the ipc schemas', () => {
    expect(
      controlErrorResponseSchema.safeParse(errorResponse(null, { code: 'x', message: 'y' }))
        .success,
    ).toBe(true);
    expect(okResponse('a', { pid: 1 })).toEqual({
      v: PROTOCOL_VERSION,
      id: 'a',
      ok: true,
      result: { pid: 1 },
    });
  });
});
