/**
 * Image references, with the airgapped registry override applied.
 */
import type { MigrationSpec } from './schema';

/** Splits `host[:port]/path` into its registry host (if the first component names one) and the rest. */
export function splitRegistry(repository: string): { registry: string | undefined; path: string } {
  const slash = repository.indexOf('/');
  if (slash < 0) return { registry: undefined, path: repository };
  const first = repository.slice(0, slash);
  // Docker's rule: the first component is a registry when it has a '.', a ':' or is 'localhost'.
  if (first.includes('.') || first.includes(':') || first === 'localhost') {
    return { registry: first, path: repository.slice(slash + 1) };
  }
  return { registry: undefined, path: repository };
}

interface ImageName {
  readonly repository: string;
  readonly tag: string;
  readonly digest?: string;
}

/** The helper image reference the Job uses: the registry override replaces the registry host, a digest pins it. */
export function imageReference(image: MigrationSpec['image']): string {
  return reference(image, image.registry);
}

/** The image node is copied from (image.runtime), with the same registry override. */
export function nodeRuntimeImageReference(image: MigrationSpec['image']): string {
  return reference(image.runtime, image.registry);
}

/** Every image the manifests use, after the override: the helper image, then the node runtime's when enabled. */
export function imageReferences(image: MigrationSpec['image']): string[] {
  return [...new Set([imageReference(image), ...(image.runtime.enabled ? [nodeRuntimeImageReference(image)] : [])])];
}

function reference(image: ImageName, registryOverride: string): string {
  const { registry, path } = splitRegistry(image.repository);
  const host = registryOverride !== '' ? registryOverride : registry;
  const repo = host ? `${host}/${path}` : path;
  return image.digest ? `${repo}@${image.digest}` : `${repo}:${image.tag}`;
}
