/** db-migration's public API: the spec (schema, loader, types) and the chart that turns it into manifests. */
export * from './chart';
export { migrationSpecSchema, secretKeyRef } from './spec/schema';
export type { DatabaseSpec, MigrationSpec, MigrationSpecInput, SecretKeyRef, SslMode } from './spec/schema';
export { loadSpecFile, parseSpec, validateSpec } from './spec/load';
export { formatIssue, SpecError } from './spec/issues';
export type { SpecIssue } from './spec/issues';
export { CONTAINER_PATHS, runtimeConfigSchema, secretUses, toRuntimeConfig } from './spec/runtime-config';
export type { RuntimeConfig, SecretUse } from './spec/runtime-config';
export { imageReference } from './spec/image';
