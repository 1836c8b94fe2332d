export * from './migration-chart';
export * from './migration-job';
export * from './network-policy';
export * from './runner-bundle';
export * from './runtime-config-map';
export * from './script-config-map';
export * from './service-account';
export * from './synth';
export { resourceNames, RESERVED_LABELS } from './labels';
