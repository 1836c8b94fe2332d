/**
 * Reads a file of Kubernetes Secret manifests (the ones the operator applies to the cluster), so that on a
 * workstation every `{ secret, key }` reference resolves exactly as it will inside the Job.
 */
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';
import type { SecretKeyRef } from '../spec/schema';

export class SecretsFileError extends Error {}

export type SecretStore = Map<string, Map<string, string>>;

export function loadSecretsFile(file: string, namespace?: string): SecretStore {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SecretsFileError(`${file}: cannot read the secrets file (${(err as NodeJS.ErrnoException).code})`);
  }
  const store: SecretStore = new Map();
  for (const [i, doc] of parseAllDocuments(text).entries()) {
    if ('errors' in doc && doc.errors.length > 0) {
      throw new SecretsFileError(`${file}: document ${i + 1} is not valid YAML (${doc.errors[0].message.split('\n')[0]})`);
    }
    const obj = doc.toJS() as Record<string, unknown> | null;
    if (obj === null) continue;
    if (obj.kind !== 'Secret') {
      throw new SecretsFileError(`${file}: document ${i + 1} is a ${String(obj.kind ?? 'document without kind')}, not a Secret (the file holds Secret manifests only)`);
    }
    const meta = (obj.metadata ?? {}) as Record<string, unknown>;
    const name = meta.name;
    if (typeof name !== 'string') throw new SecretsFileError(`${file}: document ${i + 1} has no metadata.name`);
    if (namespace && typeof meta.namespace === 'string' && meta.namespace !== namespace) {
      throw new SecretsFileError(`${file}: Secret "${name}" is in namespace "${meta.namespace}", but the spec's namespace is "${namespace}"`);
    }
    const values = store.get(name) ?? new Map<string, string>();
    for (const [k, v] of Object.entries((obj.data ?? {}) as Record<string, unknown>)) {
      values.set(k, Buffer.from(String(v), 'base64').toString('utf8'));
    }
    for (const [k, v] of Object.entries((obj.stringData ?? {}) as Record<string, unknown>)) values.set(k, String(v));
    store.set(name, values);
  }
  return store;
}

export function resolveSecret(store: SecretStore, ref: SecretKeyRef, file: string): string {
  const secret = store.get(ref.secret);
  if (!secret) throw new SecretsFileError(`${file}: no Secret named "${ref.secret}" (the spec refers to it)`);
  const value = secret.get(ref.key);
  if (value === undefined) {
    throw new SecretsFileError(`${file}: Secret "${ref.secret}" has no key "${ref.key}" (it has: ${[...secret.keys()].join(', ') || 'no keys'})`);
  }
  return value;
}
