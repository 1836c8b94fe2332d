/**
 * What `images`, `validate` and `synth` print for an operator: the images to mirror (both the helper image and
 * the node runtime's, after the registry override), and synth's summary of the largest object's size against
 * what `kubectl apply` can store, with the command that replaces an earlier Job.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { appliedAnnotationsBytes } from '../src/chart/last-applied';
import { REPO, runCli } from './support/cli';

const FULL = join(REPO, 'test', 'fixtures', 'specs', 'full.yaml');
const EXAMPLE = join(REPO, 'migration.yaml');
const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = () => { const d = mkdtempSync(join(tmpdir(), 'dbm-cli-')); temps.push(d); return d; };

describe('db-migration images', () => {
  it('given the example, when listed, then it prints the helper image and the node runtime image', async () => {
    const run = await runCli(['images', '--spec', EXAMPLE]);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout.split('\n')).toEqual(['ghcr.io/aleph-alpha/shared-images/pharia-helper:latest', 'docker.io/library/node:24-bookworm-slim']);
  });

  it('given a registry override (full.yaml), when listed, then both images are rewritten, each pinned by its digest', async () => {
    const run = await runCli(['images', '--spec', FULL]);
    expect(run.stdout.split('\n')).toEqual([
      'registry.airgap.example.com:5000/mirror/aleph-alpha/shared-images/pharia-helper@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      'registry.airgap.example.com:5000/mirror/library/node@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210',
    ]);
  });

  it('given image.runtime.enabled false, when listed, then only the helper image is printed', async () => {
    const spec = join(tempDir(), 'migration.yaml');
    writeFileSync(spec, 'namespace: apps\nimage: { registry: mirror.corp, runtime: { enabled: false } }\n'
      + 'defaults: { source: { host: a, username: u, password: { secret: s, key: a } }, destination: { host: b, username: u, password: { secret: s, key: b } } }\n'
      + 'databases: [{ name: one, source: { database: one }, destination: { database: one } }]\n');
    expect((await runCli(['images', '--spec', spec])).stdout).toBe('mirror.corp/aleph-alpha/shared-images/pharia-helper:latest');
  });
});

describe('db-migration validate', () => {
  it('given the example, when validated, then it shows both images and the node-runtime volume', async () => {
    const run = await runCli(['validate', '--spec', EXAMPLE]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('  ghcr.io/aleph-alpha/shared-images/pharia-helper:latest (runner: PostgreSQL client tools; pull IfNotPresent)');
    expect(run.stdout).toContain('  docker.io/library/node:24-bookworm-slim (init container node-runtime: node for images without it; pull IfNotPresent)');
    expect(run.stdout).toContain('  node-runtime emptyDir 256Mi at /opt/db-migration-node');
  });
});

describe('db-migration synth', () => {
  it('given the example, when synthesized, then the summary shows the largest object against the kubectl apply limit and how to replace an old Job', async () => {
    const out = join(tempDir(), 'dist');
    const run = await runCli(['synth', '--spec', EXAMPLE, '--out', out]);
    expect(run.code).toBe(0);
    // the largest object of those written, as kubectl apply would store it
    const sizes = parseAllDocuments(readFileSync(join(out, 'db-migration.k8s.yaml'), 'utf8'))
      .map((d) => d.toJS() as Record<string, any>) // eslint-disable-line @typescript-eslint/no-explicit-any
      .map((o) => ({ object: `${o.kind}/${o.metadata.name}`, bytes: appliedAnnotationsBytes(o) }))
      .sort((a, b) => b.bytes - a.bytes);
    expect(sizes[0].object).toMatch(/^ConfigMap\/db-migration-runner-\d+$/);
    expect(run.stdout).toContain(`\n   largest object: ${sizes[0].object}, ${(sizes[0].bytes / 1024).toFixed(1)} KiB as kubectl apply stores it, `
      + `of the 256.0 KiB Kubernetes allows (${Math.round((100 * sizes[0].bytes) / 262_144)}%)\n`);
    expect(run.stdout).toContain(`an earlier Job db-migration still exists? Its pod template cannot change: kubectl -n pharia-ai delete job db-migration --ignore-not-found && kubectl apply -f ${out}`);
  });
});
