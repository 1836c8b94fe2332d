/**
 * synth refuses, with exit 1 and nothing written, a manifest that `kubectl apply` could not apply: here the runner
 * bundle is replaced by one that gzip cannot shrink below the 262,144 bytes of annotations Kubernetes allows.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it, vi } from 'vitest';
import { REPO, runCli } from './support/cli';

const TOO_LARGE = `console.log(${JSON.stringify(randomBytes(220_000).toString('base64'))});\n`;

vi.mock('../src/chart/runner-bundle', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/chart/runner-bundle')>();
  return { ...actual, bundleRunner: () => ({ code: TOO_LARGE, sha256: actual.sha256Hex(TOO_LARGE), bytes: TOO_LARGE.length }) };
});

const dir = mkdtempSync(join(tmpdir(), 'dbm-too-large-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('given a runner too large for kubectl apply, when synthesized, then synth exits 1 naming the object and its size, and dist/ is untouched', async () => {
  const out = join(dir, 'dist');
  mkdirSync(out);
  writeFileSync(join(out, 'db-migration.k8s.yaml'), 'previous output\n');
  const run = await runCli(['synth', '--spec', join(REPO, 'migration.yaml'), '--out', out]);
  expect(run.code).toBe(1);
  expect(run.stderr).toMatch(/^❌ ConfigMap\/db-migration-script cannot be applied with "kubectl apply": it would carry (\d+) bytes of annotations .*more than Kubernetes' limit of 262144 bytes\n❌ nothing was written to .*\/dist\/\.$/);
  expect(Number(/carry (\d+) bytes/.exec(run.stderr)![1])).toBeGreaterThan(262_144);
  expect(readdirSync(out)).toEqual(['db-migration.k8s.yaml']);
  expect(readFileSync(join(out, 'db-migration.k8s.yaml'), 'utf8')).toBe('previous output\n');
  expect(existsSync(join(out, '..', 'dist.tmp'))).toBe(false);
});
