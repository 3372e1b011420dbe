/**
 * One jest configuration for the whole workspace. Layers are told apart by file name:
 *   *.test.ts        unit (pure code, no processes, no broker)
 *   *.int.test.ts    integration (real RabbitMQ, real store, real daemons)
 *   *.chaos.test.ts  chaos (changes the broker for everyone; always a separate, serial run)
 * `scripts/run-tests.mjs` picks the layer; see ../TESTING.md in the shared docs.
 */
export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  roots: ['<rootDir>/packages', '<rootDir>/tests'],
  moduleNameMapper: {
    '^@aiida/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  transform: {
    '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: '<rootDir>/tsconfig.test.json' }],
  },
  testMatch: ['**/test/**/*.test.ts', '<rootDir>/tests/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testTimeout: 60_000,
};
