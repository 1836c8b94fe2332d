/**
 * `db-migration synth`: validate the spec, synthesize the manifests, replace the output directory whole.
 */
import { resolve } from 'node:path';
import { synthManifests } from '../chart/synth';
import { loadSpecOrExplain, type Io } from './context';
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
  const { yaml, objects } = synthManifests(spec);
  const out = opts.out ?? process.env.CDK8S_OUTDIR ?? 'dist';
  replaceDirectory(out, { [MANIFEST_FILE]: yaml });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const kinds = objects.map((o) => `${o.kind}/${(o.metadata as { name: string }).name}`).join(', ');
  io.out(`✅ ${resolve(out, MANIFEST_FILE)}: ${objects.length} objects (${kinds}) in ${ms.toFixed(0)} ms`);
  io.out(`   apply with: kubectl apply -f ${out}   (or kubectl apply -k .)`);
  return 0;
}
