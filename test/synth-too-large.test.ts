/**
 * synth refuses, with exit 1 and nothing written, a manifest that `kubectl apply` could not apply. The runner no
 * longer can be the cause (it is split over as many ConfigMaps as it needs: runner-split.test.ts); a spec still can:
 * here its pod annotations alone exceed the 262,144 bytes of annotations Kubernetes allows on the Job.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { REPO, runCli } from './support/cli';

const dir = mkdtempSync(join(tmpdir(), 'dbm-too-large-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('given a Job too large for kubectl apply, when synthesized, then synth exits 1 naming the object and its size, and dist/ is untouched', async () => {
  const spec = join(dir, 'migration.yaml');
  const example = readFileSync(join(REPO, 'migration.yaml'), 'utf8');
  expect(example).toMatch(/^job:\n/m);
  writeFileSync(spec, example.replace(/^job:\n/m, `job:\n  annotations:\n    example.com/notes: "${'x'.repeat(270_000)}"\n`));
  const out = join(dir, 'dist');
  mkdirSync(out);
  writeFileSync(join(out, 'db-migration.k8s.yaml'), 'previous output\n');
  const run = await runCli(['synth', '--spec', spec, '--out', out]);
  expect(run.code).toBe(1);
  expect(run.stderr).toMatch(/^❌ Job\/db-migration cannot be applied with "kubectl apply": it would carry (\d+) bytes of annotations .*more than Kubernetes' limit of 262144 bytes\n❌ nothing was written to .*\/dist\/\.$/);
  expect(Number(/carry (\d+) bytes/.exec(run.stderr)![1])).toBeGreaterThan(262_144);
  expect(readdirSync(out)).toEqual(['db-migration.k8s.yaml']);
  expect(readFileSync(join(out, 'db-migration.k8s.yaml'), 'utf8')).toBe('previous output\n');
  expect(existsSync(join(out, '..', 'dist.tmp'))).toBe(false);
});
