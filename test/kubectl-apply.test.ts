/**
 * `kubectl apply -f dist` and `kubectl apply -k .`, the documented commands, store every object in the
 * `kubectl.kubernetes.io/last-applied-configuration` annotation, and Kubernetes refuses an object whose
 * annotations exceed 262,144 bytes. Here the real kubectl client computes that annotation (a client-side dry run
 * against a stand-in API server that only answers discovery and "not found"), for every object of every fixture
 * spec synthesized with the real runner, and it must equal what synth's own check computes and fit the limit.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ANNOTATIONS_LIMIT_BYTES, appliedAnnotationsBytes, bundleRunner, LAST_APPLIED_ANNOTATION, lastAppliedConfiguration, synthManifests,
} from '../src/chart';
import { loadSpecFile } from '../src/spec/load';
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver';
import { kubectlApply as apply, objectKey as key, synthCheckout } from './support/kubectl-apply';
import { REPO } from './support/repo';

const SPECS: Record<string, string> = {
  'the example migration.yaml': join(REPO, 'migration.yaml'),
  'full.yaml (every option)': join(REPO, 'test', 'fixtures', 'specs', 'full.yaml'),
};

let server: FakeApiServer;
const temps: string[] = [];
beforeAll(async () => { server = await startFakeApiServer(); });
afterAll(async () => {
  await server?.close();
  temps.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** A directory laid out like the repository after `npm run synth`: dist/ and the root kustomization.yaml. */
function checkout(yaml: string): string {
  const dir = synthCheckout(yaml);
  temps.push(dir);
  return dir;
}

/** The objects as `kubectl apply ARGS --dry-run=client` would send them on a first apply, annotation included. */
const kubectlApply = (cwd: string, args: string[]) => apply(server.url, cwd, args);

describe.each(Object.entries(SPECS))('given %s synthesized with the real runner', (_label, file) => {
  const { yaml, objects, appliedSizes } = synthManifests(loadSpecFile(file), { runnerBundle: bundleRunner().code });

  it.each([['-f', 'dist'], ['-k', '.']])('when kubectl apply %s %s computes its annotation, then it is exactly ours and every object fits the limit', async (flag, target) => {
    const applied = await kubectlApply(checkout(yaml), [flag, target]);
    expect(applied.map(key).sort()).toEqual(objects.map(key).sort());
    for (const sent of applied) {
      const ours = objects.find((o) => key(o) === key(sent))!;
      const annotation = sent.metadata.annotations[LAST_APPLIED_ANNOTATION] as string;
      expect(annotation, key(sent)).toBe(lastAppliedConfiguration(ours));
      const total = Object.entries(sent.metadata.annotations as Record<string, string>)
        .reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
      expect(total, key(sent)).toBe(appliedAnnotationsBytes(ours));
      expect(total, `${key(sent)}: ${total} bytes of annotations`).toBeLessThanOrEqual(ANNOTATIONS_LIMIT_BYTES);
    }
    // and synth reports the same sizes
    expect(appliedSizes.map((s) => [s.object, s.annotationsBytes])).toEqual(objects.map((o) => [key(o), appliedAnnotationsBytes(o)]));
  });
});

it('given a script ConfigMap as the runner used to ship it (715 KB of JavaScript), when kubectl computes its annotation, then it is over the limit, as our check says', async () => {
  // the runner before zod/mini and compression, stood in for by the current one repeated to that size, uncompressed
  const code = bundleRunner().code;
  const old = code.repeat(Math.ceil(715_158 / code.length)).slice(0, 715_158);
  const configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'db-migration-script', namespace: 'pharia-ai' }, data: { 'runner.js': old } };
  const [sent] = await kubectlApply(checkout(JSON.stringify(configMap)), ['-f', 'dist']);
  const total = Buffer.byteLength(sent.metadata.annotations[LAST_APPLIED_ANNOTATION]) + LAST_APPLIED_ANNOTATION.length;
  expect(total).toBe(appliedAnnotationsBytes(configMap));
  expect(total).toBeGreaterThan(ANNOTATIONS_LIMIT_BYTES);
});
