/**
 * `<name>-script`: the runner's loader and the manifest of its parts (the parts are in `<name>-runner-<n>`), the
 * entrypoint that picks node and checks the image before starting it, the node-runtime init container's copy
 * script, and the operator's cutover command for an online migration (`kubectl exec job/<name> -- sh
 * /opt/db-migration/cutover.sh`: the image has a shell, not always node).
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
import { assertFitsConfigMap } from './runner-bundle';
import { LOAD_RUNNER_JS, RUNNER_LOADER_FILE, RUNNER_MANIFEST_FILE, type RunnerManifest } from './runner-loader';
import { renderManifest } from './runner-parts';

/** The operator's cutover command, next to the entrypoint (CONTAINER_PATHS.runnerDir). */
export const CUTOVER_SCRIPT_FILE = 'cutover.sh';

export interface ScriptConfigMapProps {
  /** The validated migration spec (name, namespace, labels, image). */
  readonly spec: MigrationSpec;
  /** The runner's parts and digests, stored as `runner.json` for the loader. */
  readonly runnerManifest: RunnerManifest;
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
      [RUNNER_MANIFEST_FILE]: renderManifest(props.runnerManifest),
      ...(runtime !== undefined ? { [COPY_NODE_RUNTIME_FILE]: renderCopyNodeRuntime(runtime) } : {}),
      [CUTOVER_SCRIPT_FILE]: cutoverScript(controlDir(CONTAINER_PATHS.logs)),
    };
    assertFitsConfigMap(resourceNames(spec).scriptConfigMap, data);
    super(scope, id, { metadata: { name: resourceNames(spec).scriptConfigMap, labels: migrationLabels(spec, 'runner') }, data });
    this.runnerSha256 = props.runnerManifest.sha256;
  }
}
