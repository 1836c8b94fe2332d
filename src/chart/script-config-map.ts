/**
 * `<name>-script`: the runner (gzip-compressed), its loader, the entrypoint that picks node and checks the image
 * before starting it, the node-runtime init container's copy script, and the operator's cutover command for an
 * online migration (`kubectl exec job/<name> -- sh /opt/db-migration/cutover.sh`: the image has a shell, not
 * always node).
 */
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import { controlDir, cutoverScript } from '../runner/online/control';
import { imageReference, nodeRuntimeImageReference } from '../spec/image';
import { CONTAINER_PATHS } from '../spec/runtime-config';
import type { MigrationSpec } from '../spec/schema';
import { renderEntrypoint } from './entrypoint';
import { migrationLabels, resourceNames } from './labels';
import { COPY_NODE_RUNTIME_FILE, renderCopyNodeRuntime } from './node-runtime';
import { assertFitsConfigMap, sha256Hex } from './runner-bundle';
import { gzipRunner, LOAD_RUNNER_JS, RUNNER_GZ_FILE, RUNNER_LOADER_FILE } from './runner-loader';

/** The operator's cutover command, next to the entrypoint (CONTAINER_PATHS.runnerDir). */
export const CUTOVER_SCRIPT_FILE = 'cutover.sh';

export interface ScriptConfigMapProps {
  /** The validated migration spec (name, namespace, labels, image). */
  readonly spec: MigrationSpec;
  /** The runner bundle, stored gzip-compressed as `runner.js.gz`. */
  readonly runnerBundle: string;
}

export class ScriptConfigMap extends kplus.ConfigMap {
  /** Hex sha256 of runner.js (uncompressed). */
  public readonly runnerSha256: string;

  constructor(scope: Construct, id: string, props: ScriptConfigMapProps) {
    const { spec } = props;
    const runtime = spec.image.runtime.enabled ? nodeRuntimeImageReference(spec.image) : undefined;
    const data: Record<string, string> = {
      'entrypoint.sh': renderEntrypoint({ image: imageReference(spec.image), nodeRuntimeImage: runtime }),
      [RUNNER_LOADER_FILE]: LOAD_RUNNER_JS,
      ...(runtime !== undefined ? { [COPY_NODE_RUNTIME_FILE]: renderCopyNodeRuntime(runtime) } : {}),
      [CUTOVER_SCRIPT_FILE]: cutoverScript(controlDir(CONTAINER_PATHS.logs)),
    };
    const binaryData = { [RUNNER_GZ_FILE]: gzipRunner(props.runnerBundle).toString('base64') };
    assertFitsConfigMap(resourceNames(spec).scriptConfigMap, data, binaryData);
    super(scope, id, {
      metadata: { name: resourceNames(spec).scriptConfigMap, labels: migrationLabels(spec, 'runner') },
      data,
      binaryData,
    });
    this.runnerSha256 = sha256Hex(props.runnerBundle);
  }
}
