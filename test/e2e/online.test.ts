/**
 * Online mode in a real one-node Kubernetes (../shared/k8s) under a write load, cut over as the README tells the
 * operator: wait for "ready to cut over" in `kubectl logs -f`, then `kubectl exec job/NAME -- sh
 * /opt/db-migration/cutover.sh`. A cutover that finds DDL run on the source during replication exits 1 and the Job
 * keeps replicating; after the same DDL on the destination the second cutover exits 0 with the outcome printed
 * (the exec'd command gets its answer although the container ends right after), and the Job completes. While it
 * replicates, `kubectl exec` shows the runner container as the kubelet made it: the pod's non-root user and fsGroup,
 * a read-only root, no capability, no_new_privs, and no node of its own (the helper image has neither node nor
 * libstdc++): the node it runs is the one the init container copied, with the libraries it needs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from '../support/compare';
import { cleanUp, createNamespace, deleteNamespace, E2E_TIMEOUT, jobPods, kubectl, kubectlOk, reportFailures, RUN_E2E, runnerTermination, startCluster, waitForJob } from '../support/k8s-cluster';
import { defaultImages, loadPagila } from '../support/k8s-fixtures';
import { assertNoSecret, createPasswordSecret, followLogs, specYaml, startPodReachableServer, Workspace } from '../support/k8s-migration';
import type { PgServer } from '../support/pg-server';
import { startWriteLoad, type WriteLoad } from '../support/write-load';

const DDL = 'CREATE INDEX e2e_actor_names ON actor (last_name, first_name)';
const CUTOVER = ['sh', '/opt/db-migration/cutover.sh'];
/** What the runner container is, seen through kubectl exec (the helper image's shell and coreutils only). */
const PROBE = [
  'echo "uid=$(id -u) groups=$(id -G)"',
  'echo "write to /: $( (: > /probe) 2>&1 | sed \'s/.*: //\')"',
  'command -v node >/dev/null 2>&1 && echo "node on PATH" || echo "no node on PATH"',
  'echo "copied libraries: $(ls /opt/db-migration-node/lib | tr \'\\n\' \' \')"',
  'echo "without them: $(/opt/db-migration-node/ld.so /opt/db-migration-node/node -e 0 2>&1 | sed -n 1p)"',
  'echo "with them: $(/opt/db-migration-node/ld.so --library-path /opt/db-migration-node/lib /opt/db-migration-node/node --version)"',
  'grep -E "^(CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):" /proc/self/status',
].join('\n');

describe.skipIf(!RUN_E2E)('online mode in a real cluster', () => {
  let source: PgServer;
  let destination: PgServer;
  let ws: Workspace;
  let ns: string;
  let load: WriteLoad | undefined;

  beforeAll(async () => {
    ws = new Workspace();
    await startCluster(() => defaultImages(ws));
    [source, destination] = await Promise.all([
      startPodReachableServer('e2e-online-src', { settings: { wal_level: 'logical' } }),
      startPodReachableServer('e2e-online-dst'),
    ]);
    await loadPagila(source);
    ns = await createNamespace('e2e-online');
    await createPasswordSecret(ws, ns, source, destination);
  }, 900_000);

  afterAll(async () => {
    await cleanUp(() => load?.stop(), () => deleteNamespace(ns), () => source?.destroy(), () => destination?.destroy(), () => ws?.remove());
  }, 300_000);
  reportFailures(() => [ns]);

  const exec = (args: string[]) => kubectl(['-n', ns, 'exec', 'job/live', '--', ...args], { timeoutMs: 240_000 });

  it('replicates under a write load until the operator cuts over with kubectl exec; a failed cutover (DDL on the source) exits 1 and replication goes on; after the fix the cutover exits 0 with the outcome', async () => {
    // given writers on the source, and the online Job applied
    load = startWriteLoad(source, 'pagila', [
      { sql: "INSERT INTO actor (first_name, last_name) VALUES ('E2E', 'WRITER')" },
      { sql: 'UPDATE film SET rental_rate = rental_rate + 0.01 WHERE film_id = (1 + floor(random() * 1000))::int' },
    ]);
    await ws.synth(specYaml({ name: 'live', namespace: ns, source, destination, databases: ['pagila'], migration: { mode: 'online', verify: 'checksums' } }));
    await kubectlOk(['apply', '-f', ws.dist]);
    const log = followLogs(ns, 'job/live', 900_000);
    try {
      // when the log says it is ready, and how to cut over
      await log.waitFor(/ready to cut over/, 300_000);
      await log.waitFor(new RegExp(`Cut over with: kubectl -n ${ns} exec job/live -- sh /opt/db-migration/cutover\\.sh`), 120_000);
      await expectRunnerContainerAsMade();

      // and DDL runs on the source during replication, then the operator cuts over
      await source.query(DDL, 'pagila');
      const failed = await exec(CUTOVER);
      // then the command exits 1 naming the database and the difference, and the fence is lifted
      expect(failed.code, failed.stdout + failed.stderr).toBe(1);
      expect(failed.stdout + failed.stderr).toMatch(/pagila/);
      expect(failed.stdout + failed.stderr).toMatch(/e2e_actor_names/);
      // and the Job keeps replicating: its pod runs, the slot is in use, writes on the source go on and arrive
      await expectStillReplicating(failed.stdout);

      // when the operator runs the same DDL on the destination and cuts over again
      await destination.query(DDL, 'pagila');
      const cutover = await exec(CUTOVER);
      // then the command prints the outcome and exits 0, and the Job completes
      expect(cutover.code, cutover.stdout + cutover.stderr).toBe(0);
      expect(cutover.stdout).toMatch(/\[pagila\] fence: database pagila on the source is read-only/);
      expect(cutover.stdout).toMatch(/cutover succeeded: every database is cut over/);
      assertNoSecret([source.superPassword, destination.superPassword], failed.stdout + failed.stderr, cutover.stdout + cutover.stderr);
      await waitForJob(ns, 'live', 'Complete', 300_000);
      await log.ended;
    } finally {
      log.stop();
    }
    const [pod] = await jobPods(ns, 'live');
    const summary = JSON.parse(runnerTermination(pod)!.message);
    expect(summary.writePauseSeconds).toBeGreaterThan(0);
    expect(summary.databases[0]).toMatchObject({ name: 'pagila', status: 'migrated', writePauseSeconds: summary.writePauseSeconds });

    // and the destination equals the fenced source (materialized views are refreshed, not replicated), no slot is left
    await load.stop();
    expect(load.refused()).toBeGreaterThan(0);
    const [before, after] = await Promise.all([fingerprint(source, 'pagila'), fingerprint(destination, 'pagila')]);
    const matviews = new Set((await source.query<{ n: string }>("SELECT format('%I.%I', schemaname, matviewname) AS n FROM pg_matviews", 'pagila')).map((r) => r.n));
    const tables = (f: typeof before) => Object.fromEntries(Object.entries(f.tables).filter(([k]) => !matviews.has(k)));
    expect(tables(after)).toEqual(tables(before));
    expect(after.sequences).toEqual(before.sequences);
    expect(await source.query('SELECT slot_name FROM pg_replication_slots')).toEqual([]);
    assertNoSecret([source.superPassword, destination.superPassword], log.text(), await kubectlOk(['-n', ns, 'logs', 'job/live']));
  }, E2E_TIMEOUT);

  /** kubectl exec of PROBE into the replicating runner: the Job's user, read-only root, no capability, the copied node. */
  async function expectRunnerContainerAsMade(): Promise<void> {
    const job = JSON.parse(await kubectlOk(['-n', ns, 'get', 'job', 'live', '-o', 'json']));
    const { runAsUser, fsGroup } = job.spec.template.spec.securityContext;
    const probe = await exec(['sh', '-c', PROBE]);
    expect(probe.code, probe.stdout + probe.stderr).toBe(0);
    const out = probe.stdout;
    expect(out).toContain(`uid=${runAsUser} groups=`);
    expect(out.match(/^uid=\d+ groups=(.*)$/m)![1].split(' '), out).toContain(String(fsGroup));
    expect(out).toContain('write to /: Read-only file system\n');
    expect(out).toContain('no node on PATH\n');
    expect(out).toMatch(/^copied libraries: .*libstdc\+\+\.so\.6/m);
    expect(out).toMatch(/^without them: .*error while loading shared libraries: libstdc\+\+\.so\.6: cannot open shared object file/m);
    expect(out).toMatch(/^with them: v24\.\d+\.\d+$/m);
    for (const set of ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect(out, set).toMatch(new RegExp(`^${set}:\\s+0{16}$`, 'm'));
    expect(out).toMatch(/^NoNewPrivs:\s+1$/m);
  }

  /** The pod runs, its slot is active, and a row written on the source now reaches the destination. */
  async function expectStillReplicating(context: string): Promise<void> {
    const [pod] = await jobPods(ns, 'live');
    expect(pod.status.phase, context).toBe('Running');
    const slots = await source.query<{ active: boolean }>("SELECT active FROM pg_replication_slots WHERE slot_type = 'logical'");
    expect(slots, context).toEqual([{ active: true }]);
    const [{ id }] = await source.query<{ id: number }>("INSERT INTO actor (first_name, last_name) VALUES ('AFTER', 'FAILED CUTOVER') RETURNING actor_id AS id", 'pagila');
    const deadline = Date.now() + 60_000;
    while ((await destination.query(`SELECT 1 FROM actor WHERE actor_id = ${id}`, 'pagila')).length === 0) {
      if (Date.now() > deadline) throw new Error(`row ${id} written on the source after the failed cutover never reached the destination\n${context}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
});
