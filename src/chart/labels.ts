/**
 * Names and labels shared by every object of the chart. Names are stable (no hash suffix): they are part of the
 * contract with operators, who `kubectl logs job/<name>` and reference the ConfigMaps by name.
 */
import type { MigrationSpec } from '../spec/schema';
import { packageVersion } from './package-info';

/** Labels this tool owns; spec.labels may not set them (they select the Job's pods). */
export const RESERVED_LABELS = [
  'app.kubernetes.io/name',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/component',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/version',
] as const;

/** What an object is for, as `app.kubernetes.io/component`. */
export type Component = 'runner' | 'config' | 'job' | 'network-policy';

/** The object names derived from spec.name. */
export function resourceNames(spec: MigrationSpec) {
  return {
    serviceAccount: spec.name,
    scriptConfigMap: `${spec.name}-script`,
    /** Part n (from 1) of the runner. */
    runnerConfigMap: (n: number) => `${spec.name}-runner-${n}`,
    runtimeConfigMap: `${spec.name}-config`,
    networkPolicy: spec.name,
    job: spec.name,
  } as const;
}

/** The labels that identify this migration's pods (stable across versions, so a NetworkPolicy keeps matching). */
export function selectorLabels(spec: MigrationSpec): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'db-migration',
    'app.kubernetes.io/instance': spec.name,
    'app.kubernetes.io/component': 'job',
  };
}

/**
 * Every label of one object: `app: <name>` (what the seed's runbooks select pods with: `kubectl get pods -l
 * app=<name>`; spec.labels may set another value), spec.labels, then the standard ones.
 */
export function migrationLabels(spec: MigrationSpec, component: Component): Record<string, string> {
  assertNoReservedLabels(spec);
  return {
    app: spec.name,
    ...spec.labels,
    'app.kubernetes.io/name': 'db-migration',
    'app.kubernetes.io/instance': spec.name,
    'app.kubernetes.io/component': component,
    'app.kubernetes.io/managed-by': 'cdk8s',
    'app.kubernetes.io/version': packageVersion(),
  };
}

/** Fails when spec.labels sets a label this tool owns (it would change which pods the NetworkPolicy selects). */
export function assertNoReservedLabels(spec: MigrationSpec): void {
  const clash = RESERVED_LABELS.filter((k) => k in spec.labels);
  if (clash.length > 0) {
    throw new Error(
      `labels: ${clash.map((k) => `"${k}"`).join(', ')} ${clash.length === 1 ? 'is' : 'are'} set by db-migration on every object `
      + '(remove it from labels; any other key is fine, e.g. app.kubernetes.io/part-of)',
    );
  }
}
