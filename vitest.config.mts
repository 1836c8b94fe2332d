import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Suites start their own PostgreSQL servers; two cores, so keep files from piling up.
    maxWorkers: 2,
    pool: 'forks',
  },
});
