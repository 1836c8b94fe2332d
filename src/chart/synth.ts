/**
 * Synthesis in memory: the CLI decides where (and how atomically) the YAML is written.
 */
import { App, Yaml } from 'cdk8s';
import type { MigrationSpec } from '../spec/schema';
import { checkClientSideApply, type AppliedSize } from './last-applied';
import { MigrationChart } from './migration-chart';

export interface SynthOptions {
  /**
   * The runner JavaScript the Job runs (stored compressed in the `<name>-runner-<n>` ConfigMaps).
   * @default - db-migration's runner: bundled from src/runner/main.ts in a checkout, the prebuilt one once installed
   */
  readonly runnerBundle?: string;
}

export interface SynthResult {
  /** Multi-document YAML: ServiceAccount, ConfigMaps (script, runner parts, config), NetworkPolicy (when enabled), Job. */
  readonly yaml: string;
  /** The same objects, parsed, in the same order. */
  readonly objects: Record<string, unknown>[];
  /** Per object, the bytes of annotations client-side `kubectl apply` would store (its last-applied copy included). */
  readonly appliedSizes: AppliedSize[];
}

/** Apply order: the Job's dependencies first, so `kubectl apply -f` never starts a pod that lacks them. */
const KIND_ORDER = ['ServiceAccount', 'ConfigMap', 'NetworkPolicy', 'Job'];

export function synthManifests(spec: MigrationSpec, opts: SynthOptions = {}): SynthResult {
  // App only touches the disk in synth(), which we never call: chart.toJson() resolves every object in memory.
  const app = new App();
  const chart = new MigrationChart(app, spec.name, { spec, runnerBundle: opts.runnerBundle });
  // Refuses (ManifestTooLargeError) a manifest that `kubectl apply -f dist`, the documented command, could not apply.
  chart.assertFitsKubectlApply();
  const objects = (chart.toJson() as Record<string, unknown>[])
    .map((o, i) => ({ o, i }))
    .sort((a, b) => rank(a.o) - rank(b.o) || a.i - b.i)
    .map(({ o }) => o);
  const appliedSizes = checkClientSideApply(objects);
  return { yaml: Yaml.stringify(...objects), objects, appliedSizes };
}

function rank(o: Record<string, unknown>): number {
  const r = KIND_ORDER.indexOf(String(o.kind));
  if (r < 0) throw new Error(`unexpected object kind ${String(o.kind)} in the chart`);
  return r;
}
