/**
 * `db-migration images`: every image reference the manifests use, after the registry override, one a line:
 * the checklist for mirroring into an airgapped registry.
 */
import { imageReferences } from '../spec/image';
import { loadSpecOrExplain, type Io } from './context';

export function imagesCommand(opts: { spec: string }, io: Io): number {
  const spec = loadSpecOrExplain(opts.spec);
  for (const image of imageReferences(spec.image)) io.out(image);
  return 0;
}
