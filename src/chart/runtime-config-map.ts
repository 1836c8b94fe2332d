/**
 * `<name>-config`: the runtime config the runner reads. It names the environment variables and files that carry
 * secrets, never their values.
 */
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import { toRuntimeConfig } from '../spec/runtime-config';
import type { MigrationSpec } from '../spec/schema';
import { migrationLabels, resourceNames } from './labels';
import { assertFitsConfigMap, sha256Hex } from './runner-bundle';

export interface RuntimeConfigMapProps {
  /** The validated migration spec; its runtime config is stored as `config.json`. */
  readonly spec: MigrationSpec;
}

export class RuntimeConfigMap extends kplus.ConfigMap {
  /** Hex sha256 of config.json. */
  public readonly configSha256: string;

  constructor(scope: Construct, id: string, props: RuntimeConfigMapProps) {
    const name = resourceNames(props.spec).runtimeConfigMap;
    const data = { 'config.json': JSON.stringify(toRuntimeConfig(props.spec), null, 2) };
    assertFitsConfigMap(name, data);
    super(scope, id, { metadata: { name, labels: migrationLabels(props.spec, 'config') }, data });
    this.configSha256 = sha256Hex(data['config.json']);
  }
}
