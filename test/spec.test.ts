/**
 * The spec: defaults, the committed JSON Schema, image references, runtime config, Secret manifests files.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadSecretsFile, resolveSecret } from '../src/cli/secrets-file';
import { quantityValue } from '../src/spec/formats';
import { imageReference, imageReferences, nodeRuntimeImageReference } from '../src/spec/image';
import { specJsonSchemaText } from '../src/spec/json-schema';
import { loadSpecFile, parseSpec } from '../src/spec/load';
import { runtimeConfigSchema, secretUses, toRuntimeConfig } from '../src/spec/runtime-config';
import { migrationSpecSchema } from '../src/spec/schema';
import { REPO } from './support/repo';

const MINIMAL = `
namespace: apps
databases:
  - name: orders
    source: { host: old, database: orders, username: orders, password: { secret: s, key: src } }
    destination: { host: new, database: orders, username: orders, password: { secret: s, key: dst } }
`;

describe('spec defaults', () => {
  it('gives a minimal spec the operators\' seed values', () => {
    // given a spec with only what has no default
    const spec = parseSpec(MINIMAL);
    // then every default is the value of the hand-written manifests it replaces
    expect(spec.name).toBe('db-migration');
    expect(spec.image).toEqual({
      repository: 'ghcr.io/aleph-alpha/shared-images/pharia-helper', tag: 'latest', registry: '', pullPolicy: 'IfNotPresent', pullSecrets: [],
      // the seed's helper image has no node: the Job brings its own from a maintained Node.js LTS image
      runtime: { enabled: true, repository: 'docker.io/library/node', tag: '24-bookworm-slim' },
    });
    // the deadline is left unset: the chart gives 7200 s, or in online mode the wait for the cutover (jobDeadlineSeconds)
    expect(spec.job.activeDeadlineSeconds).toBeUndefined();
    expect(spec.job).toMatchObject({
      backoffLimit: 2, ttlSecondsAfterFinished: 86400,
      resources: { requests: { memory: '256Mi', cpu: '250m' }, limits: { memory: '1Gi', cpu: '1000m' } },
      storage: { dumps: '30Gi', logs: '1Gi', tmp: '256Mi' },
      networkPolicy: { enabled: false },
    });
    expect(spec.migration).toMatchObject({
      dryRun: false, verbose: false, timeouts: { dump: 3600, restore: 3600 }, retries: { attempts: 3, delaySeconds: 10 },
      dump: { jobs: 2, compression: 0, extraArgs: [] }, restore: { jobs: 2, noOwner: true, noAcl: false, clean: false, extraArgs: [] },
      verify: 'counts',
    });
    expect(spec.defaults.source).toMatchObject({ port: 5432, sslmode: 'prefer' });
    expect(spec.databases[0].enabled).toBe(true);
  });

  it('accepts the example migration.yaml', () => {
    const spec = loadSpecFile(join(REPO, 'migration.yaml'));
    expect(spec.namespace).toBe('pharia-ai');
    expect(spec.databases.map((d) => d.name)).toEqual(['pharia_temporal']);
    expect(spec.defaults.destination.sslmode).toBe('require');
  });
});

describe('JSON Schema', () => {
  it('is committed as generated from the zod schema (run `npm run schema` after changing it)', () => {
    expect(readFileSync(join(REPO, 'migration.schema.json'), 'utf8')).toBe(specJsonSchemaText());
  });

  it('is referenced from the example for the YAML language server', () => {
    expect(readFileSync(join(REPO, 'migration.yaml'), 'utf8')).toMatch(/^# yaml-language-server: \$schema=\.\/migration\.schema\.json$/m);
  });

  it('describes passwords as Secret references and refuses unknown keys', () => {
    const schema = JSON.parse(specJsonSchemaText());
    const endpoint = schema.properties.databases.items.properties.source;
    expect(endpoint.additionalProperties).toBe(false);
    expect(endpoint.properties.password.required).toEqual(['secret', 'key']);
    expect(schema.required).toEqual(expect.arrayContaining(['namespace', 'databases']));
  });
});

describe('image references', () => {
  const base = migrationSpecSchema.shape.image.parse({});

  it('keeps the repository\'s own registry when no override is set', () => {
    expect(imageReference(base)).toBe('ghcr.io/aleph-alpha/shared-images/pharia-helper:latest');
  });

  it('replaces the registry host with the airgapped registry', () => {
    expect(imageReference({ ...base, registry: 'your-registry.company.com' }))
      .toBe('your-registry.company.com/aleph-alpha/shared-images/pharia-helper:latest');
    expect(imageReference({ ...base, registry: 'mirror.local:5000/proxy' }))
      .toBe('mirror.local:5000/proxy/aleph-alpha/shared-images/pharia-helper:latest');
  });

  it('prefixes a Docker Hub style repository that names no registry', () => {
    expect(imageReference({ ...base, repository: 'library/postgres', tag: '17', registry: 'reg.corp' })).toBe('reg.corp/library/postgres:17');
  });

  it('pins by digest when one is given', () => {
    const digest = `sha256:${'a'.repeat(64)}`;
    expect(imageReference({ ...base, digest })).toBe(`ghcr.io/aleph-alpha/shared-images/pharia-helper@${digest}`);
  });

  it('rewrites the node runtime image with the same registry override, and lists both images to mirror', () => {
    const digest = `sha256:${'b'.repeat(64)}`;
    expect(nodeRuntimeImageReference(base)).toBe('docker.io/library/node:24-bookworm-slim');
    const airgapped = { ...base, registry: 'your-registry.company.com', runtime: { ...base.runtime, digest } };
    expect(nodeRuntimeImageReference(airgapped)).toBe(`your-registry.company.com/library/node@${digest}`);
    expect(imageReferences(airgapped)).toEqual([
      'your-registry.company.com/aleph-alpha/shared-images/pharia-helper:latest', `your-registry.company.com/library/node@${digest}`,
    ]);
    expect(imageReferences({ ...airgapped, runtime: { ...airgapped.runtime, enabled: false } }))
      .toEqual(['your-registry.company.com/aleph-alpha/shared-images/pharia-helper:latest']);
  });
});

describe('runtime config', () => {
  it('merges defaults, names password variables, and holds no secret reference or value', () => {
    const spec = parseSpec(`
namespace: apps
defaults:
  destination: { host: new, port: 6432, sslmode: verify-full, caCert: { secret: tls, key: ca.crt } }
databases:
  - name: my-orders
    source: { host: old, database: orders, username: orders, password: { secret: s, key: src } }
    destination: { database: orders, username: orders, password: { secret: s, key: dst } }
`);
    const config = toRuntimeConfig(spec);
    expect(runtimeConfigSchema.parse(config)).toEqual(config);
    expect(config.databases[0].source).toEqual({
      host: 'old', port: 5432, database: 'orders', username: 'orders', sslmode: 'prefer', passwordEnv: 'DBM_MY_ORDERS_SOURCE_PASSWORD',
    });
    expect(config.databases[0].destination).toEqual({
      host: 'new', port: 6432, database: 'orders', username: 'orders', sslmode: 'verify-full',
      passwordEnv: 'DBM_MY_ORDERS_DEST_PASSWORD', caCertFile: '/etc/db-migration/tls/tls/ca.crt',
    });
    expect(JSON.stringify(config)).not.toMatch(/"secret"|"key"/);
    expect(config.storage.dumpsBytes).toBe(30 * 2 ** 30);
    expect(secretUses(spec).map((u) => `${u.kind}:${u.ref.secret}/${u.ref.key}->${u.target}`)).toEqual([
      'password:s/src->DBM_MY_ORDERS_SOURCE_PASSWORD',
      'password:s/dst->DBM_MY_ORDERS_DEST_PASSWORD',
      'caCert:tls/ca.crt->/etc/db-migration/tls/tls/ca.crt',
    ]);
  });

  it('fails a hand-edited config that has a literal password field', () => {
    const config = toRuntimeConfig(parseSpec(MINIMAL)) as unknown as { databases: { source: Record<string, unknown> }[] };
    config.databases[0].source.password = 'x';
    const res = runtimeConfigSchema.safeParse(config);
    expect(res.success).toBe(false);
  });

  it('reads Kubernetes quantities', () => {
    expect(quantityValue('30Gi')).toBe(32212254720);
    expect(quantityValue('250m')).toBe(0.25);
    expect(quantityValue('1e3')).toBe(1000);
    expect(quantityValue('2k')).toBe(2000);
  });
});

describe('secrets file', () => {
  it('resolves data (base64) and stringData keys of Secret manifests', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-secrets-'));
    const file = join(dir, 'secrets.yaml');
    writeFileSync(file, `apiVersion: v1
kind: Secret
metadata: { name: s, namespace: apps }
data:
  src: ${Buffer.from('pä$$word').toString('base64')}
stringData:
  dst: other
---
apiVersion: v1
kind: Secret
metadata: { name: t }
stringData: { k: v }
`);
    const store = loadSecretsFile(file, 'apps');
    expect(resolveSecret(store, { secret: 's', key: 'src' }, file)).toBe('pä$$word');
    expect(resolveSecret(store, { secret: 's', key: 'dst' }, file)).toBe('other');
    expect(() => resolveSecret(store, { secret: 's', key: 'nope' }, file)).toThrow('Secret "s" has no key "nope" (it has: src, dst)');
    expect(() => resolveSecret(store, { secret: 'u', key: 'k' }, file)).toThrow('no Secret named "u"');
  });

  it('fails a file that holds something other than Secrets, or a Secret of another namespace', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-secrets-'));
    const file = join(dir, 'secrets.yaml');
    writeFileSync(file, 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: c }\n');
    expect(() => loadSecretsFile(file)).toThrow('document 1 is a ConfigMap, not a Secret');
    writeFileSync(file, 'apiVersion: v1\nkind: Secret\nmetadata: { name: c, namespace: other }\n');
    expect(() => loadSecretsFile(file, 'apps')).toThrow('Secret "c" is in namespace "other", but the spec\'s namespace is "apps"');
  });
});

describe('README spec reference', () => {
  it('lists every field as generated from the schema (run `npm run schema` after changing it)', async () => {
    const { REFERENCE_BEGIN, REFERENCE_END, specReferenceMarkdown } = await import('../src/spec/reference');
    const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
    const block = readme.slice(readme.indexOf(REFERENCE_BEGIN) + REFERENCE_BEGIN.length, readme.indexOf(REFERENCE_END)).trim();
    expect(block).toBe(specReferenceMarkdown());
    expect(block).toContain('`databases[].source.password.secret`');
  });
});
