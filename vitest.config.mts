import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Suites start their own PostgreSQL servers; two cores, so keep files from piling up.
    // The end-to-end files (test/e2e) share one Kubernetes cluster and run in this same pool: each has its own
    // namespace and servers, and k8s-cluster.ts starts the cluster and imports the images under a host-wide lock.
    // (A project of their own with fileParallelism off would run them only after every other file.)
    maxWorkers: 2,
    pool: 'forks',
  },
});
