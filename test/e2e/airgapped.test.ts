/**
 * The airgapped override in a real one-node Kubernetes (../shared/k8s): with `image.registry` set, the manifests
 * name both images under the mirror, and the Job runs from images that the cluster holds only under those names
 * (imported with k8s-image after the Job could not pull them; nothing is ever pulled from a registry here).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../support/compare';
import { cleanUp, createNamespace, deleteNamespace, E2E_TIMEOUT, importImage, jobPods, kubectlOk, removeImages, reportFailures, RUN_E2E, startCluster, waitForJob } from '../support/k8s-cluster';
import { createSmallDatabase, defaultImages } from '../support/k8s-fixtures';
import { assertNoSecret, createPasswordSecret, specYaml, startPodReachableServer, Workspace } from '../support/k8s-migration';
import type { PgServer } from '../support/pg-server';

const MIRROR = 'registry.airgap.e2e.internal';
/**
 * The mirror's copies are the same root filesystems; this variable in their config gives them an image id of their
 * own, so that removing them (crictl rmi removes every name of an image id) never removes the default names.
 */
const MIRROR_ENV = `E2E_MIRRORED_FROM=${MIRROR}`;

describe.skipIf(!RUN_E2E)('an airgapped cluster', () => {
  let source: PgServer;
  let destination: PgServer;
  let ws: Workspace;
  let ns: string;
  let mirrored: string[] = [];

  beforeAll(async () => {
    ws = new Workspace();
    await startCluster(() => defaultImages(ws));
    [source, destination] = await Promise.all([startPodReachableServer('e2e-air-src'), startPodReachableServer('e2e-air-dst')]);
    await createSmallDatabase(source, 'catalog');
    ns = await createNamespace('e2e-airgap');
    await createPasswordSecret(ws, ns, source, destination);
  }, 900_000);

  afterAll(async () => {
    await cleanUp(() => deleteNamespace(ns), () => removeImages(mirrored), () => source?.destroy(), () => destination?.destroy(), () => ws?.remove());
  }, 300_000);
  reportFailures(() => [ns]);

  it('image.registry set: both images named under the mirror, and the Job runs from images present only under those names', async () => {
    // given a spec with image.registry, and the list of images to mirror that the README's command prints
    const spec = specYaml({ name: 'airgap', namespace: ns, source, destination, databases: ['catalog'], image: { registry: MIRROR } });
    mirrored = await ws.images(spec);
    expect(mirrored).toEqual([`${MIRROR}/aleph-alpha/shared-images/pharia-helper:latest`, `${MIRROR}/library/node:24-bookworm-slim`]);
    await removeImages(mirrored); // what an earlier run may have left

    // when the Job is applied before the mirror holds the images
    await ws.synth(spec);
    await kubectlOk(['apply', '-f', ws.dist]);
    const job = JSON.parse(await kubectlOk(['-n', ns, 'get', 'job', 'airgap', '-o', 'json']));
    const podSpec = job.spec.template.spec;
    expect([...podSpec.initContainers, ...podSpec.containers].map((c: { image: string }) => c.image)).toEqual([mirrored[1], mirrored[0]]);
    // then its pod cannot start: nothing else provides those names
    await waitForPullFailure(ns, 'airgap', mirrored[1]);

    // when the mirrored images are imported under the rewritten names only
    await importImage(mirrored[0], 'helper', '--cmd', 'sh', '--env', MIRROR_ENV);
    await importImage(mirrored[1], 'node', '--cmd', 'node', '--env', MIRROR_ENV);

    // then the kubelet's next attempt finds them, and the Job completes with the copy identical
    await waitForJob(ns, 'airgap', 'Complete', 300_000);
    const [pod] = await jobPods(ns, 'airgap');
    const ran = [...pod.status.initContainerStatuses, ...pod.status.containerStatuses].map((c: { image: string }) => c.image);
    expect(ran).toEqual([mirrored[1], mirrored[0]]);
    const log = await kubectlOk(['-n', ns, 'logs', 'job/airgap']);
    expect(log).toContain(`copied from ${mirrored[1]} by the node-runtime init container (${mirrored[0]} has no node)`);
    const [before, after] = await Promise.all([fingerprint(source, 'catalog'), fingerprint(destination, 'catalog')]);
    expect(after).toEqual(before);
    assertNoSecret([source.superPassword, destination.superPassword], log);
  }, E2E_TIMEOUT);
});

/** Waits (at most 120 s) until the Job's pod reports ErrImagePull or ImagePullBackOff for `image`. */
async function waitForPullFailure(ns: string, job: string, image: string): Promise<void> {
  const deadline = Date.now() + 120_000;
  let seen = '';
  while (Date.now() < deadline) {
    const pods = await jobPods(ns, job);
    const statuses = pods.flatMap((p) => [...(p.status?.initContainerStatuses ?? []), ...(p.status?.containerStatuses ?? [])]);
    const waiting = statuses.find((s: { image: string; state?: { waiting?: { reason?: string } } }) => s.image === image && /ErrImagePull|ImagePullBackOff/.test(s.state?.waiting?.reason ?? ''));
    if (waiting) return;
    seen = JSON.stringify(statuses);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(`the Job's pod never failed to pull ${image}: ${seen}`);
}
