/**
 * `<name>-runner-<n>`: part n of the compressed runner (runner-parts.ts), in binaryData under the file name the
 * loader looks for. The Job mounts every part beside the script ConfigMap's files, in one directory.
 */
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import type { MigrationSpec } from '../spec/schema';
import { migrationLabels, resourceNames } from './labels';
import { assertFitsConfigMap } from './runner-bundle';
import type { RunnerPart } from './runner-parts';

export interface RunnerConfigMapProps {
  /** The validated migration spec (name, namespace, labels). */
  readonly spec: MigrationSpec;
  /** Which part (from 1): it names the ConfigMap. */
  readonly n: number;
  /** The part's file name and bytes. */
  readonly part: RunnerPart;
}

export class RunnerConfigMap extends kplus.ConfigMap {
  constructor(scope: Construct, id: string, props: RunnerConfigMapProps) {
    const name = resourceNames(props.spec).runnerConfigMap(props.n);
    const binaryData = { [props.part.file]: props.part.data.toString('base64') };
    assertFitsConfigMap(name, {}, binaryData);
    super(scope, id, { metadata: { name, labels: migrationLabels(props.spec, 'runner') }, binaryData });
  }
}
