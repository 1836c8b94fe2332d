/**
 * The whole migration as one chart: ServiceAccount, the script ConfigMap, the runner's ConfigMaps, the runtime
 * config ConfigMap, the optional NetworkPolicy and the Job. It is what `db-migration synth` writes, and what an
 * app of one's own adds beside its other charts (`new MigrationChart(app, 'migration', { spec })`).
 */
import { ApiObject, Chart } from 'cdk8s';
import type { Construct } from 'constructs';
import { loadSpecFile, validateSpec } from '../spec/load';
import type { MigrationSpec, MigrationSpecInput } from '../spec/schema';
import { resourceNames } from './labels';
import { checkClientSideApply, ManifestTooLargeError } from './last-applied';
import { MigrationJob } from './migration-job';
import { MigrationNetworkPolicy } from './network-policy';
import { bundleRunner } from './runner-bundle';
import { RunnerConfigMap } from './runner-config-map';
import { packRunner } from './runner-parts';
import { RuntimeConfigMap } from './runtime-config-map';
import { ScriptConfigMap } from './script-config-map';
import { MigrationServiceAccount } from './service-account';

export interface MigrationChartProps {
  /**
   * The migration spec, as migration.yaml would hold it (defaults apply). It is validated as the CLI validates the
   * file: an invalid one throws SpecError with every problem, each naming its field path.
   */
  readonly spec: MigrationSpecInput;
  /**
   * The runner JavaScript the Job runs (stored compressed, in as many `<name>-runner-<n>` ConfigMaps as it takes).
   * @default - db-migration's runner: bundled from src/runner/main.ts in a checkout, the prebuilt one once installed
   */
  readonly runnerBundle?: string;
}

/** What applying the manifests again fixes, for the loader's message about a missing or stale part. */
const REMEDY = 'apply every object synth wrote (kubectl apply -f dist), then start the Job again';

export class MigrationChart extends Chart {
  /** A chart for the spec in a migration.yaml file (SpecError, with file, line and column, when it is invalid). */
  public static fromSpecFile(scope: Construct, id: string, file: string, props: Omit<MigrationChartProps, 'spec'> = {}): MigrationChart {
    return new MigrationChart(scope, id, { ...props, spec: loadSpecFile(file) });
  }

  /** The validated spec, defaults applied. */
  public readonly spec: MigrationSpec;
  public readonly serviceAccount: MigrationServiceAccount;
  public readonly scriptConfigMap: ScriptConfigMap;
  /** The runner's parts, in order. */
  public readonly runnerConfigMaps: readonly RunnerConfigMap[];
  public readonly runtimeConfigMap: RuntimeConfigMap;
  /** Present when job.networkPolicy.enabled. */
  public readonly networkPolicy?: MigrationNetworkPolicy;
  public readonly job: MigrationJob;

  constructor(scope: Construct, id: string, props: MigrationChartProps) {
    const spec = validateSpec(props.spec, `spec of MigrationChart "${id}"`);
    // Names are set explicitly on every object; no hash suffixes even where a construct would add one.
    super(scope, id, { namespace: spec.namespace, disableResourceNameHashes: true });
    this.spec = spec;
    const names = resourceNames(spec);
    const runner = packRunner(props.runnerBundle ?? bundleRunner().code, { partSource: (n) => `ConfigMap ${names.runnerConfigMap(n)}`, remedy: REMEDY });

    // Construct ids are part of the contract (they would name objects if names were not explicit): keep them.
    this.serviceAccount = new MigrationServiceAccount(this, 'ServiceAccount', { spec });
    this.scriptConfigMap = new ScriptConfigMap(this, 'ScriptConfigMap', { spec, runnerManifest: runner.manifest });
    this.runnerConfigMaps = runner.parts.map((part, i) => new RunnerConfigMap(this, `RunnerConfigMap${i + 1}`, { spec, n: i + 1, part }));
    this.runtimeConfigMap = new RuntimeConfigMap(this, 'RuntimeConfigMap', { spec });
    if (spec.job.networkPolicy.enabled) {
      this.networkPolicy = new MigrationNetworkPolicy(this, 'NetworkPolicy', { spec });
    }
    this.job = new MigrationJob(this, 'Job', {
      spec,
      scriptConfigMapName: this.scriptConfigMap.name,
      runnerConfigMapNames: this.runnerConfigMaps.map((cm) => cm.name),
      runtimeConfigMapName: this.runtimeConfigMap.name,
      serviceAccountName: this.serviceAccount.name,
      runnerSha256: runner.manifest.sha256,
      configSha256: this.runtimeConfigMap.configSha256,
    });
    // `cdk8s synth` in an app of one's own refuses, as `db-migration synth` does, what client-side kubectl apply cannot store.
    this.node.addValidation({ validate: () => tooLargeForKubectlApply(this) });
  }

  /**
   * Throws ManifestTooLargeError, naming each object, when client-side `kubectl apply` could not store one of them.
   * (Chart.toJson() would run the chart's validation, which reports the same as a plain Error.)
   */
  public assertFitsKubectlApply(): void {
    checkClientSideApply(this.node.findAll().filter(ApiObject.isApiObject).map((o) => o.toJson() as Record<string, unknown>));
  }
}

/** One line per object that client-side `kubectl apply` could not store (see last-applied.ts). */
function tooLargeForKubectlApply(chart: MigrationChart): string[] {
  try {
    chart.assertFitsKubectlApply();
    return [];
  } catch (err) {
    if (err instanceof ManifestTooLargeError) return err.message.split('\n');
    throw err;
  }
}
