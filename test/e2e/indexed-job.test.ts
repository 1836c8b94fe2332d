/**
 * Many databases with `job.parallelism` in a real one-node Kubernetes (../shared/k8s): an Indexed Job whose pods
 * each migrate the database at their completion index (spec order), two at a time; the three sample databases of
 * ../shared/fixtures arrive identical, and each pod's log and termination message name only its own database.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../support/compare';
import { cleanUp, createNamespace, deleteNamespace, E2E_TIMEOUT, jobPods, kubectlOk, reportFailures, RUN_E2E, runnerTermination, startCluster, waitForJob } from '../support/k8s-cluster';
import { defaultImages, loadChinook, loadNorthwind, loadPagila } from '../support/k8s-fixtures';
import { assertNoSecret, createPasswordSecret, specYaml, startPodReachableServer, Workspace } from '../support/k8s-migration';
import type { PgServer } from '../support/pg-server';

const DATABASES = ['pagila', 'chinook_auto_increment', 'northwind'];
const LABELS = ['pagila', 'chinook', 'northwind'];

describe.skipIf(!RUN_E2E)('an Indexed Job in a real cluster', () => {
  let source: PgServer;
  let destination: PgServer;
  let ws: Workspace;
  let ns: string;

  beforeAll(async () => {
    ws = new Workspace();
    await startCluster(() => defaultImages(ws));
    [source, destination] = await Promise.all([startPodReachableServer('e2e-idx-src'), startPodReachableServer('e2e-idx-dst')]);
    await Promise.all([loadPagila(source), loadChinook(source), loadNorthwind(source)]);
    ns = await createNamespace('e2e-indexed');
    await createPasswordSecret(ws, ns, source, destination);
  }, 900_000);

  afterAll(async () => {
    await cleanUp(() => deleteNamespace(ns), () => source?.destroy(), () => destination?.destroy(), () => ws?.remove());
  }, 300_000);
  reportFailures(() => [ns]);

  it('job.parallelism 2 over three databases: each pod migrates the database at its index, and all three arrive identical', async () => {
    // given the spec with three databases and job.parallelism 2, synthesized and applied
    await ws.synth(specYaml({
      name: 'fleet', namespace: ns, source, destination, job: { parallelism: 2 },
      databases: DATABASES.map((database, i) => ({ name: LABELS[i], source: { database }, destination: { database } })),
    }));
    await kubectlOk(['apply', '-f', ws.dist]);
    const job = JSON.parse(await kubectlOk(['-n', ns, 'get', 'job', 'fleet', '-o', 'json']));
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 3, parallelism: 2 });

    // when it runs to completion
    await waitForJob(ns, 'fleet', 'Complete', 600_000);

    // then there was one pod per index, and each migrated exactly the database at its index
    const pods = await jobPods(ns, 'fleet');
    const byIndex = new Map(pods.map((p) => [Number(p.metadata.annotations['batch.kubernetes.io/job-completion-index']), p]));
    expect([...byIndex.keys()].sort()).toEqual([0, 1, 2]);
    for (const [index, pod] of byIndex) {
      const summary = JSON.parse(runnerTermination(pod)!.message);
      const migrated = summary.databases.filter((d: { status: string }) => d.status === 'migrated').map((d: { name: string }) => d.name);
      expect(migrated, `pod ${pod.metadata.name} (index ${index})`).toEqual([LABELS[index]]);
      const log = await kubectlOk(['-n', ns, 'logs', pod.metadata.name]);
      expect(log).toMatch(new RegExp(`^${LABELS[index]}\\s+migrated\\s`, 'm'));
      for (const other of LABELS.filter((l) => l !== LABELS[index])) expect(log).not.toMatch(new RegExp(`^${other}\\s+migrated\\s`, 'm'));
      assertNoSecret([source.superPassword, destination.superPassword], log);
    }
    // and `kubectl logs -l job-name=… --prefix` shows every pod's summary
    const all = await kubectlOk(['-n', ns, 'logs', '-l', 'job-name=fleet', '--prefix', '--tail=-1']);
    expect(all.match(/SUCCEEDED: 1\/1 migrated/g)).toHaveLength(3);
    // and every database is identical on the destination
    for (const database of DATABASES) {
      const [before, after] = await Promise.all([fingerprint(source, database), fingerprint(destination, database)]);
      expect(Object.keys(before.tables).length, database).toBeGreaterThan(3);
      expect(after, database).toEqual(before);
    }
  }, E2E_TIMEOUT);
});
