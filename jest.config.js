/** One jest run over every package; tests import sibling packages from source. */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/packages/*/test/**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } } }] },
  moduleNameMapper: {
    '^@harmonyflow/([a-z]+)$': '<rootDir>/packages/$1/src',
    // Subpath entries (`@harmonyflow/protocol/lite`, `@harmonyflow/client/node`, …) from source too.
    '^@harmonyflow/([a-z]+)/([a-z]+)$': '<rootDir>/packages/$1/src/$2',
  },
  testTimeout: 30000,
  maxWorkers: 2,
  reporters: ['default', '<rootDir>/scripts/jest-summary-reporter.js'],
};
