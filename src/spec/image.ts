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

/** The image reference the Job uses: the registry override replaces the registry host, a digest pins it. */
export function imageReference(image: MigrationSpec['image']): string {
  const { registry, path } = splitRegistry(image.repository);
  const host = image.registry !== '' ? image.registry : registry;
  const repo = host ? `${host}/${path}` : path;
  return image.digest ? `${repo}@${image.digest}` : `${repo}:${image.tag}`;
}
