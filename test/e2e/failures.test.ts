/**
 * Failures in a real one-node Kubernetes (../shared/k8s), seen as the operator sees them with kubectl: a wrong
 * password (the Job fails after its retries; the reason in the termination message and `kubectl describe`), a source
 * that accepts connections and never answers (the Job's deadline ends it; the summary names the database and phase),
 * and `kubectl delete pod` in the middle of a restore (the Job's next pod resets the half-restored database and
 * converges on an identical copy).
 */
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clusterReport, cleanUp, createNamespace, deleteNamespace, E2E_TIMEOUT, jobPods, kubectlOk, POD_GATEWAY, reportFailures, RUN_E2E, runnerTermination, startCluster, waitForJob } from '../support/k8s-cluster';
import { createBigDatabase, createSmallDatabase, defaultImages, tableDigests } from '../support/k8s-fixtures';
import { assertNoSecret, createPasswordSecret, followLogs, specYaml, startPodReachableServer, Workspace, type SpecOptions } from '../support/k8s-migration';
import type { PgServer } from '../support/pg-server';

const JOB_TIMEOUT = 300_000;

describe.skipIf(!RUN_E2E)('failures in a real cluster', () => {
  let source: PgServer;
  let destination: PgServer;
  let ws: Workspace;
  const namespaces: string[] = [];

  beforeAll(async () => {
    ws = new Workspace();
    await startCluster(() => defaultImages(ws));
    [source, destination] = await Promise.all([startPodReachableServer('e2e-fail-src'), startPodReachableServer('e2e-fail-dst')]);
    await createSmallDatabase(source, 'inventory');
    await createBigDatabase(source, 'ledger');
  }, 900_000);

  afterAll(async () => {
    await cleanUp(...namespaces.map((ns) => () => deleteNamespace(ns)), () => source?.destroy(), () => destination?.destroy(), () => ws?.remove());
  }, 300_000);
  reportFailures(() => namespaces);

  /** A restricted namespace with the Secret `pg`, and the Job of `spec` applied with kubectl apply -f dist. */
  async function applyJob(prefix: string, spec: Omit<SpecOptions, 'namespace' | 'source' | 'destination'> & { sourcePort?: number }, sourcePassword?: string): Promise<string> {
    const ns = await createNamespace(prefix);
    namespaces.push(ns);
    await createPasswordSecret(ws, ns, source, destination, { source: sourcePassword });
    await ws.synth(specYaml({ ...spec, namespace: ns, source: { port: spec.sourcePort ?? source.port }, destination }));
    await kubectlOk(['apply', '-f', ws.dist]);
    return ns;
  }

  it('a wrong password: the Job fails after its retries, with the reason in each pod\'s termination message and in kubectl describe', async () => {
    // given a Secret whose source password is wrong, and one retry
    const ns = await applyJob('e2e-pw', { name: 'wrong-pw', databases: ['inventory'], job: { backoffLimit: 1 } }, 'not-the-password');
    // when the Job runs, then it fails once its retry failed too
    const job = await waitForJob(ns, 'wrong-pw', 'Failed', JOB_TIMEOUT);
    expect(job.status.conditions).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'Failed', reason: 'BackoffLimitExceeded' })]));
    const pods = await jobPods(ns, 'wrong-pw');
    expect(pods).toHaveLength(2);
    for (const pod of pods) {
      const termination = runnerTermination(pod)!;
      expect(termination.exitCode).toBe(1);
      const summary = JSON.parse(termination.message);
      expect(summary).toMatchObject({ ok: false, databases: [{ name: 'inventory', status: 'failed', phase: 'preflight' }] });
      expect(summary.databases[0].error).toMatch(/password authentication failed for user "postgres"/);
    }
    const described = await kubectlOk(['-n', ns, 'describe', 'pods', '-l', 'job-name=wrong-pw']);
    expect(described.match(/password authentication failed for user/g)?.length).toBeGreaterThanOrEqual(2);
    expect(await kubectlOk(['-n', ns, 'describe', 'job', 'wrong-pw'])).toMatch(/BackoffLimitExceeded/);
    // and nothing reached the destination, and no password reached the logs
    expect(await destination.query("SELECT 1 FROM pg_database WHERE datname = 'inventory'")).toEqual([]);
    const logs = await kubectlOk(['-n', ns, 'logs', '-l', 'job-name=wrong-pw', '--all-containers', '--prefix', '--tail=-1']);
    expect(logs).toMatch(/password authentication failed/);
    // each pod's log says that nothing moved
    for (const pod of pods) expect(logs).toMatch(new RegExp(`^\\[pod/${pod.metadata.name}/runner\\] .*pre-flight failed: nothing was dumped or restored`, 'm'));
    assertNoSecret([source.superPassword, destination.superPassword, 'not-the-password'], logs, described);
  }, E2E_TIMEOUT);

  it('a source that never answers: the Job\'s deadline ends it, and the summary says which database and phase', async () => {
    // given a "source" that accepts connections and never says a word, and a Job with a short deadline
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => { sockets.push(s); s.on('error', () => undefined); });
    await new Promise<void>((resolve) => silent.listen(0, POD_GATEWAY, resolve));
    try {
      const port = (silent.address() as { port: number }).port;
      const ns = await applyJob('e2e-silent', {
        name: 'silent', databases: ['inventory'], sourcePort: port,
        job: { activeDeadlineSeconds: 45, backoffLimit: 0 }, migration: { timeouts: { connect: 600 } },
      });
      // when the operator follows the log until the runner stops
      const log = followLogs(ns, 'job/silent');
      const job = await waitForJob(ns, 'silent', 'Failed', JOB_TIMEOUT);
      expect(job.status.conditions).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'Failed', reason: 'DeadlineExceeded' })]));
      await Promise.race([log.ended, new Promise((resolve) => setTimeout(resolve, 60_000))]);
      log.stop();
      // then the runner had connected (the listener saw it), got SIGTERM, and its summary names the database and phase
      expect(sockets.length).toBeGreaterThan(0);
      const text = log.text();
      const context = `${text}\n${await clusterReport(ns)}`;
      expect(text, context).toMatch(/received SIGTERM: stopping the running tool and writing the summary/);
      expect(text, context).toMatch(/^inventory\s+interrupted\s+preflight\s/m);
      expect(text, context).toMatch(/INTERRUPTED: 0\/1 migrated, 0 failed, 1 interrupted/);
    } finally {
      await new Promise((resolve) => { silent.close(resolve); for (const s of sockets) s.destroy(); });
    }
  }, E2E_TIMEOUT);

  it('kubectl delete pod in the middle of a restore: the next pod resets the half-restored database and converges on an identical copy', async () => {
    // given the Job migrating a database whose restore takes a while
    const ns = await applyJob('e2e-delete', { name: 'big', databases: ['ledger'], migration: { verbose: true, restore: { jobs: 1 } }, job: { backoffLimit: 2 } });
    const first = followLogs(ns, 'job/big');
    // when the log says the restore has begun, the operator deletes the pod
    await first.waitFor(/\[ledger\] \[restore\].*marked database "ledger" restoring/, JOB_TIMEOUT);
    const [pod] = await jobPods(ns, 'big');
    await kubectlOk(['-n', ns, 'delete', 'pod', pod.metadata.name, '--timeout=90s'], { timeoutMs: 100_000 });
    await Promise.race([first.ended, new Promise((resolve) => setTimeout(resolve, 30_000))]);
    first.stop();
    // then that runner stopped pg_restore and recorded the restore as interrupted
    expect(first.text()).toMatch(/received SIGTERM/);
    expect(first.text()).toMatch(/^ledger\s+interrupted\s+restore\s/m);

    // and the Job's next pod resets the half-restored database, migrates it again and verifies it
    await waitForJob(ns, 'big', 'Complete', JOB_TIMEOUT);
    const pods = await jobPods(ns, 'big');
    expect(pods.map((p) => p.metadata.name)).not.toContain(pod.metadata.name);
    const log = await kubectlOk(['-n', ns, 'logs', pods[pods.length - 1].metadata.name]);
    expect(log).toMatch(/an earlier attempt left it half-restored .*: it is .* and migrated again/);
    expect(log).toMatch(/^ledger\s+migrated\s/m);
    const [before, after] = await Promise.all([tableDigests(source, 'ledger'), tableDigests(destination, 'ledger')]);
    expect(after).toEqual(before);
    assertNoSecret([source.superPassword, destination.superPassword], first.text(), log);
  }, E2E_TIMEOUT);
});
