/*
 * Stand-in vs. the real cluster (test/e2e, issue 17). The cluster suite now runs synthesized Jobs under a real
 * kubelet, containerd and runc in a namespace enforcing Pod Security `restricted`: volumes from the ConfigMaps,
 * passwords from a Secret, read-only root, non-root, the termination message (e2e/readme-path), a wrong password
 * (e2e/failures) and an Indexed Job whose pods each migrate their database (e2e/indexed-job). What only this
 * stand-in still shows: the example migration.yaml run unchanged, with its DNS names resolved (hostAliases) and a
 * destination that refuses connections without TLS; the kit's cluster has no DNS and its suite's servers no TLS.
 */
/**
 * The manifest contract: the Job synthesized from a spec, run as the kubelet would run its pod (volumes from
 * the ConfigMaps, env from a Secret, read-only root, non-root, its own command), with node and the real
 * PostgreSQL client tools, migrates real databases. The example spec runs unchanged: its host names resolve
 * to two throwaway servers through the pod's /etc/hosts, and the destination requires TLS, as in the example.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthManifests } from '../src/chart/synth';
import { loadSpecFile, parseSpec } from '../src/spec/load';
import { fingerprint } from './support/compare';
import { runJobPodAsKubelet } from './support/kubelet';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { REPO } from './support/repo';
import { createAppRoles, createRealisticDatabase } from './support/runner-helpers';

const IMAGE_ENV = { PATH: `${PG_BIN}:/usr/local/bin:/usr/bin:/bin` };
const SOURCE_IP = '127.0.0.2';
const DEST_IP = '127.0.0.3';
const PASSWORDS = { source: 'src-Pw-7f3a9c', destination: 'dst-Pw-2b8e41' };

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe('the Job, run as the kubelet would', () => {
  let source: PgServer;
  let destination: PgServer;

  beforeAll(async () => {
    // given the two servers the example spec names, on port 5432 of two loopback addresses; the destination
    // refuses connections without TLS, so a run that succeeds used TLS as the example's sslmode require asks
    [source, destination] = await Promise.all([
      startPgServer({ name: 'job-src', host: SOURCE_IP, port: 5432 }),
      startPgServer({ name: 'job-dst', host: DEST_IP, port: 5432, ssl: 'required' }),
    ]);
    for (const [server, password] of [[source, PASSWORDS.source], [destination, PASSWORDS.destination]] as const) {
      await server.createRole('temporal', password);
      await createAppRoles(server);
    }
    // the source user reads everything (a typical migration user); the destination user owns its database
    await source.query('GRANT pg_read_all_data TO temporal');
    await createRealisticDatabase(source, 'temporal');
    await destination.query('CREATE DATABASE temporal OWNER temporal');
  });

  afterAll(async () => {
    await Promise.all([source?.destroy(), destination?.destroy()]);
  });

  it('migrates the example spec\'s database and reports the outcome in the termination message', async () => {
    // when the Job synthesized from the example spec runs
    const { objects } = synthManifests(loadSpecFile(join(REPO, 'migration.yaml')));
    const run = await runJobPodAsKubelet({
      objects,
      secrets: { 'db-migration-secrets': { 'temporal-source-password': PASSWORDS.source, 'temporal-destination-password': PASSWORDS.destination } },
      imageEnv: IMAGE_ENV,
      hostAliases: { 'postgres.pharia-ai.svc.cluster.local': SOURCE_IP, 'new-postgres.example.internal': DEST_IP },
      timeoutMs: 300_000,
    });

    // then it succeeds and the data arrived
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    const [before, after] = await Promise.all([fingerprint(source, 'temporal'), fingerprint(destination, 'temporal')]);
    expect(Object.keys(before.tables).length).toBeGreaterThan(8);
    expect(after).toEqual(before);

    const termination = JSON.parse(run.terminationMessage) as Obj;
    expect(JSON.stringify(termination)).toContain('pharia_temporal');
    expect(JSON.stringify(termination)).toMatch(/migrated/);

    // the logs volume holds the log and the summary; no password anywhere the operator can see
    const logs = run.volumes.logs;
    expect(existsSync(join(logs, 'migration.log'))).toBe(true);
    const summary = readFileSync(join(logs, 'summary.json'), 'utf8');
    expect(summary).toContain('pharia_temporal');
    const visible = [run.stdout, run.stderr, run.terminationMessage, summary, readFileSync(join(logs, 'migration.log'), 'utf8')].join('\n');
    for (const secret of Object.values(PASSWORDS)) expect(visible).not.toContain(secret);
    // and the dump was removed once verified
    expect(readdirSync(run.volumes.dumps)).toEqual([]);
  });

  it('fails with a clear pre-flight message and moves nothing when a Secret holds a wrong password', async () => {
    const { objects } = synthManifests(loadSpecFile(join(REPO, 'migration.yaml')));
    const run = await runJobPodAsKubelet({
      objects,
      secrets: { 'db-migration-secrets': { 'temporal-source-password': 'not-the-password', 'temporal-destination-password': PASSWORDS.destination } },
      imageEnv: IMAGE_ENV,
      hostAliases: { 'postgres.pharia-ai.svc.cluster.local': SOURCE_IP, 'new-postgres.example.internal': DEST_IP },
      timeoutMs: 120_000,
    });
    expect(run.code).toBe(1);
    expect(run.stdout + run.stderr).toMatch(/password authentication failed for user "temporal"/);
    expect(run.stdout + run.stderr).toContain('pre-flight failed: nothing was dumped or restored');
    expect(readdirSync(run.volumes.dumps)).toEqual([]);
    expect(JSON.parse(run.terminationMessage)).toMatchObject({ databases: [expect.objectContaining({ status: 'failed', phase: 'preflight' })] });
    expect(run.stdout + run.stderr).not.toContain('not-the-password');
  });

  it('as an Indexed Job (parallelism 3, five databases), each completion index migrates exactly its database', async () => {
    // given five small databases and a spec with job.parallelism: 3
    const names = ['alpha', 'bravo', 'charlie', 'delta', 'echo'];
    for (const name of names) {
      await source.query(`CREATE DATABASE ${name}`);
      await source.query(`CREATE TABLE t (id int PRIMARY KEY, db text); INSERT INTO t SELECT g, '${name}' FROM generate_series(1, ${names.indexOf(name) + 10}) g`, name);
    }
    const spec = parseSpec(`namespace: apps
job: { parallelism: 3 }
defaults:
  source: { host: ${SOURCE_IP}, username: postgres, password: { secret: pg, key: source }, sslmode: disable }
  destination: { host: ${DEST_IP}, username: postgres, password: { secret: pg, key: destination }, sslmode: require }
databases:
${names.map((n) => `  - { name: ${n}, source: { database: ${n} }, destination: { database: ${n} } }`).join('\n')}
`);
    const { objects } = synthManifests(spec);
    const job = objects.find((o) => o.kind === 'Job') as Obj;
    expect(job.spec).toMatchObject({ completionMode: 'Indexed', completions: 5, parallelism: 3 });
    const secrets = { pg: { source: source.superPassword, destination: destination.superPassword } };

    // when indexes 3 and then 1 run, each as its own pod with JOB_COMPLETION_INDEX
    const exists = async (db: string) => (await destination.query(`SELECT 1 FROM pg_database WHERE datname = '${db}'`)).length === 1;
    for (const index of [3, 1]) {
      const run = await runJobPodAsKubelet({ objects, secrets, imageEnv: IMAGE_ENV, extraEnv: { JOB_COMPLETION_INDEX: String(index) }, timeoutMs: 120_000 });
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
      // then exactly that database arrived, with its rows
      const rows = await destination.query<{ db: string; n: string }>('SELECT db, count(*) AS n FROM t GROUP BY db', names[index]);
      expect(rows).toEqual([{ db: names[index], n: String(index + 10) }]);
    }
    expect(await Promise.all(names.map(exists))).toEqual([false, true, false, true, false]);
  });
});

