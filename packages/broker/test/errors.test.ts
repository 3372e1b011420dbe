import { BrokerError, describeError, isBrokerError } from '../src/errors.js';

describe('BrokerError', () => {
  it('keeps code, message, cause and details', () => {
    const cause = new Error('socket closed');
    const error = new BrokerError('publish_failed', 'task not confirmed', {
      cause,
      details: { failed: [1] },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('BrokerError');
    expect(error.code).toBe('publish_failed');
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ failed: [1] });
  });

  it('is recognised by its brand, also across copies of the class', () => {
    expect(isBrokerError(new BrokerError('timeout', 'x'))).toBe(true);
    const foreign = Object.assign(new Error('x'), {
      code: 'timeout',
      [Symbol.for('@aiida/broker.BrokerError')]: true,
    });
    expect(isBrokerError(foreign)).toBe(true);
    expect(isBrokerError(Object.assign(new Error('x'), { code: 'timeout' }))).toBe(false);
    expect(isBrokerError(null)).toBe(false);
    expect(isBrokerError('timeout')).toBe(false);
  });
});

describe('describeError', () => {
  it('includes the code when the message lacks it', () => {
    const error = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
    expect(describeError(error)).toBe('connection refused (ECONNREFUSED)');
  });

  it('does not repeat a code already in the message', () => {
    const error = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
      code: 'ECONNREFUSED',
    });
    expect(describeError(error)).toBe('connect ECONNREFUSED 127.0.0.1:1');
  });

  it('spells out an AggregateError with an empty message', () => {
    const error = Object.assign(
      new AggregateError(
        [new Error('connect ECONNREFUSED ::1:1'), new Error('connect ECONNREFUSED 127.0.0.1:1')],
        '',
      ),
      { code: 'ECONNREFUSED' },
    );
    expect(describeError(error)).toBe(
      'connect ECONNREFUSED ::1:1; connect ECONNREFUSED 127.0.0.1:1',
    );
  });

  it('handles non-errors', () => {
    expect(describeError('plain')).toBe('plain');
  });
});
