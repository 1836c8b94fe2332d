/**
 * The whole migration as one chart: ServiceAccount, the two ConfigMaps, the optional NetworkPolicy and the Job.
 */
import { Chart } from 'cdk8s';
import type { Construct } from 'constructs';
import type { MigrationSpec } from '../spec/schema';
import { assertNoReservedLabels } from './labels';
import { MigrationJob } from './migration-job';
import { MigrationNetworkPolicy } from './network-policy';
import { bundleRunner } from './runner-bundle';
import { RuntimeConfigMap } from './runtime-config-map';
import { ScriptConfigMap } from './script-config-map';
import { MigrationServiceAccount } from './service-account';

export interface MigrationChartProps {
  /** The validated migration spec (from loadSpecFile / parseSpec). */
  readonly spec: MigrationSpec;
  /**
   * The runner JavaScript stored in the `<name>-script` ConfigMap.
   * @default - src/runner/main.ts bundled with esbuild (bundleRunner().code)
   */
  readonly runnerBundle?: string;
}

export class MigrationChart extends Chart {
  public readonly serviceAccount: MigrationServiceAccount;
  public readonly scriptConfigMap: ScriptConfigMap;
  public readonly runtimeConfigMap: RuntimeConfigMap;
  /** Present when job.networkPolicy.enabled. */
  public readonly networkPolicy?: MigrationNetworkPolicy;
  public readonly job: MigrationJob;

  constructor(scope: Construct, id: string, props: MigrationChartProps) {
    const { spec } = props;
    assertNoReservedLabels(spec);
    // Names are set explicitly on every object; no hash suffixes even where a construct would add one.
    super(scope, id, { namespace: spec.namespace, disableResourceNameHashes: true });

    // Construct ids are part of the contract (they would name objects if names were not explicit): keep them.
    this.serviceAccount = new MigrationServiceAccount(this, 'ServiceAccount', { spec });
    this.scriptConfigMap = new ScriptConfigMap(this, 'ScriptConfigMap', {
      spec,
      runnerBundle: props.runnerBundle ?? bundleRunner().code,
    });
    this.runtimeConfigMap = new RuntimeConfigMap(this, 'RuntimeConfigMap', { spec });
    if (spec.job.networkPolicy.enabled) {
      this.networkPolicy = new MigrationNetworkPolicy(this, 'NetworkPolicy', { spec });
    }
    this.job = new MigrationJob(this, 'Job', {
      spec,
      scriptConfigMapName: this.scriptConfigMap.name,
      runtimeConfigMapName: this.runtimeConfigMap.name,
      serviceAccountName: this.serviceAccount.name,
      runnerSha256: this.scriptConfigMap.runnerSha256,
      configSha256: this.runtimeConfigMap.configSha256,
    });
  }
}
