/**
 * `db-migration synth`: validate the spec, synthesize the manifests, replace the output directory whole.
 */
import { resolve } from 'node:path';
import { ANNOTATIONS_LIMIT_BYTES, ManifestTooLargeError } from '../chart/last-applied';
import { synthManifests, type SynthResult } from '../chart/synth';
import { CliError, EXIT, loadSpecOrExplain, type Io } from './context';
import { replaceDirectory } from './output-dir';

/** The one file synth writes; the root kustomization.yaml lists it. */
export const MANIFEST_FILE = 'db-migration.k8s.yaml';

export interface SynthOptions {
  readonly spec: string;
  /** @default - $CDK8S_OUTDIR when the cdk8s CLI runs us, otherwise "dist" */
  readonly out?: string;
}

export function synthCommand(opts: SynthOptions, io: Io): number {
  const started = process.hrtime.bigint();
  const spec = loadSpecOrExplain(opts.spec);
  const out = opts.out ?? process.env.CDK8S_OUTDIR ?? 'dist';
  let result: SynthResult;
  try {
    result = synthManifests(spec);
  } catch (err) {
    if (err instanceof ManifestTooLargeError) {
      const lines = [...err.message.split('\n'), `nothing was written to ${out}/.`];
      throw new CliError(lines.map((l) => `❌ ${l}`).join('\n'), EXIT.failed);
    }
    throw err;
  }
  const { yaml, objects, appliedSizes } = result;
  replaceDirectory(out, { [MANIFEST_FILE]: yaml });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const kinds = objects.map((o) => `${o.kind}/${(o.metadata as { name: string }).name}`).join(', ');
  io.out(`✅ ${resolve(out, MANIFEST_FILE)}: ${objects.length} objects (${kinds}) in ${ms.toFixed(0)} ms`);
  const largest = appliedSizes.reduce((a, b) => (b.annotationsBytes > a.annotationsBytes ? b : a));
  io.out(`   largest object: ${largest.object}, ${kib(largest.annotationsBytes)} as kubectl apply stores it, of the ${kib(ANNOTATIONS_LIMIT_BYTES)} `
    + `Kubernetes allows (${Math.round((100 * largest.annotationsBytes) / ANNOTATIONS_LIMIT_BYTES)}%)`);
  io.out(`   apply with: kubectl apply -f ${out}   (or kubectl apply -k .)`);
  io.out(`   an earlier Job ${spec.name} still exists? Its pod template cannot change: kubectl -n ${spec.namespace} delete job ${spec.name} --ignore-not-found && kubectl apply -f ${out}`);
  return 0;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}
