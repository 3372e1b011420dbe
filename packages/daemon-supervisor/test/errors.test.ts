import { assertLinux, isSupervisorError, SupervisorError } from '@aiida/daemon-supervisor';

test('anywhere but Linux the supervisor refuses with unsupported_platform and says why', () => {
  expect(() => assertLinux('linux')).not.toThrow();
  let thrown: unknown;
  try {
    assertLinux('darwin');
  } catch (error) {
    thrown = error;
  }
  expect(isSupervisorError(thrown) && thrown.code).toBe('unsupported_platform');
  expect((thrown as Error).message).toMatch(/Linux only.*this is darwin/);
});

test('SupervisorError keeps code, details and cause; the brand survives a foreign copy', () => {
  const cause = new Error('root');
  const error = new SupervisorError('already_running', 'busy', { cause, details: { pid: 7 } });
  expect(error).toBeInstanceOf(Error);
  expect(error).toBeInstanceOf(SupervisorError);
  expect(error).toMatchObject({
    name: 'SupervisorError',
    code: 'already_running',
    details: { pid: 7 },
  });
  expect(error.cause).toBe(cause);
  // What another copy of the package would create: same brand symbol, different class.
  const foreign = Object.defineProperty(
    new Error('x'),
    Symbol.for('@aiida/daemon-supervisor.SupervisorError'),
    {
      value: true,
    },
  );
  expect(isSupervisorError(foreign)).toBe(true);
  expect(foreign instanceof SupervisorError).toBe(true);
  expect(isSupervisorError(new Error('plain'))).toBe(false);
});
