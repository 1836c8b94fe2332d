/*
 * Stand-in vs. the real cluster (test/e2e, issue 17). e2e/online covers all of this with the real `kubectl exec
 * job/NAME -- sh /opt/db-migration/cutover.sh`, plus a failed cutover and a second one. Here `kubectl exec` is
 * nsenter, whose processes outlive the container, so this stand-in could not show that the kubelet kills the
 * exec'd command once the runner's container ends (exit 137). It shows nothing the cluster suite does not; it runs
 * without the kit.
 */
/**
 * An online migration in the Job, run as the kubelet would (the helper image without node, node from the
 * node-runtime init container), cut over the way the README tells the operator to: `kubectl exec` of the shipped
 * cutover.sh into the running runner container. Here `kubectl exec` is nsenter into the container's mount namespace
 * and root, as the container's user: the script gets nothing but the helper image's shell and coreutils.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthManifests } from '../src/chart/synth';
import { parseSpec } from '../src/spec/load';
import { fingerprint } from './support/compare';
import { runJobPodAsKubelet } from './support/kubelet';
import { startPgServer, type PgServer } from './support/pg-server';
import { REPO } from './support/repo';
import { helperRoot, nodeImageRoot, officialNodeBinary, removeStandInRoots } from './support/rootfs';
import { startWriteLoad } from './support/write-load';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const FIXTURES = join(REPO, '..', 'shared', 'fixtures');
const HELPER_IMAGE = 'ghcr.io/aleph-alpha/shared-images/pharia-helper:latest';
const NODE_IMAGE = 'docker.io/library/node:24-bookworm-slim';

describe('an online migration in the Job, cut over with kubectl exec', () => {
  let source: PgServer;
  let destination: PgServer;

  beforeAll(async () => {
    [source, destination] = await Promise.all([startPgServer({ name: 'jo-src', settings: { wal_level: 'logical' } }), startPgServer({ name: 'jo-dst' })]);
    await source.query('CREATE DATABASE pagila');
    await source.psqlFile(join(FIXTURES, 'pagila', 'pagila-schema.sql'), 'pagila');
    await source.psqlFile(join(FIXTURES, 'pagila', 'pagila-data.sql'), 'pagila');
  });

  afterAll(async () => {
    await Promise.all([source?.destroy(), destination?.destroy()]);
    removeStandInRoots();
  });

  it('replicates pagila under a write load until the operator runs cutover.sh in the pod, then the Job completes with the write pause in its termination message', async () => {
    // given the Job synthesized from an online spec, and writers on the source
    const spec = parseSpec(`namespace: pharia-ai
defaults:
  source:      { host: 127.0.0.1, port: ${source.port}, username: postgres, password: { secret: pg, key: source } }
  destination: { host: 127.0.0.1, port: ${destination.port}, username: postgres, password: { secret: pg, key: destination } }
migration: { mode: online, verify: checksums, retries: { attempts: 1 } }
databases:
  - { name: pagila, source: { database: pagila }, destination: { database: pagila } }
`);
    const objects = synthManifests(spec).objects as Obj[];
    const job = objects.find((o) => o.kind === 'Job')!;
    const { runAsUser, runAsGroup } = job.spec.template.spec.securityContext;
    const load = startWriteLoad(source, 'pagila', [
      { sql: "INSERT INTO actor (first_name, last_name) VALUES ('JOB', 'WRITER')" },
      { sql: 'UPDATE film SET rental_rate = rental_rate + 0.01 WHERE film_id = (1 + floor(random() * 1000))::int' },
    ]);
    let runnerPid: number | undefined;
    const pod = runJobPodAsKubelet({
      objects,
      secrets: { pg: { source: source.superPassword, destination: destination.superPassword } },
      images: { [HELPER_IMAGE]: helperRoot(), [NODE_IMAGE]: nodeImageRoot(officialNodeBinary(24)) },
      timeoutMs: 300_000,
      onStart: (pid, container) => { if (container === 'runner') runnerPid = pid; },
    });
    // `kubectl exec job/NAME -- …`: the runner container's namespaces and root, its user
    const exec = (command: string[]) => spawnSync('nsenter', ['-t', String(runnerPid), '-m', '-r', '-w',
      '-S', String(runAsUser), '-G', String(runAsGroup ?? runAsUser), '--', ...command], { encoding: 'utf8', timeout: 240_000 });

    // when the runner says it is ready, and the operator runs the command the README gives
    let heartbeat = '';
    for (let i = 0; i < 600 && !heartbeat.startsWith('ready'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      if (runnerPid !== undefined) heartbeat = exec(['/bin/cat', '/var/log/db-migration/online/heartbeat']).stdout ?? '';
    }
    expect(heartbeat).toMatch(/^ready /);
    const cutover = exec(['/bin/sh', '/opt/db-migration/cutover.sh']);
    const run = await pod;

    // then the command showed the cutover and exited 0, and the Job's pod completed
    expect(cutover.status, cutover.stdout + cutover.stderr).toBe(0);
    expect(cutover.stdout).toMatch(/\[pagila\] fence: database pagila on the source is read-only/);
    expect(cutover.stdout).toMatch(/cutover succeeded: every database is cut over/);
    expect(run.containers.map((c) => [c.name, c.code]), run.stderr).toEqual([['node-runtime', 0], ['runner', 0]]);
    const message = JSON.parse(run.terminationMessage);
    expect(message.writePauseSeconds).toBeGreaterThan(0);
    expect(message.databases[0]).toMatchObject({ name: 'pagila', status: 'migrated', writePauseSeconds: message.writePauseSeconds });
    expect(run.stdout).toContain('Cut over with: kubectl -n pharia-ai exec job/db-migration -- sh /opt/db-migration/cutover.sh');
    // and the destination equals the fenced source (materialized views are refreshed, not replicated)
    // (the writers notice on their next write: the fenced sessions were ended, new ones are read-only)
    for (let i = 0; i < 100 && load.refused() === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(load.refused()).toBeGreaterThan(0);
    await load.stop();
    const [before, after] = await Promise.all([fingerprint(source, 'pagila'), fingerprint(destination, 'pagila')]);
    const matviews = new Set((await source.query<{ n: string }>("SELECT schemaname || '.' || matviewname AS n FROM pg_matviews", 'pagila')).map((r) => r.n));
    const tables = (f: typeof before) => Object.fromEntries(Object.entries(f.tables).filter(([k]) => !matviews.has(k)));
    expect(tables(after)).toEqual(tables(before));
    expect(after.sequences).toEqual(before.sequences);
    for (const secret of [source.superPassword, destination.superPassword]) expect(run.stdout + run.stderr + cutover.stdout).not.toContain(secret);
  }, 360_000);
});
