/*
 * Stand-in vs. the real cluster (test/e2e, issue 17). The cluster suite runs synthesized Jobs under a real kubelet,
 * containerd and runc in a namespace enforcing Pod Security `restricted` (volumes from the ConfigMaps, passwords
 * from a Secret, read-only root, non-root, the termination message: e2e/readme-path; a wrong password:
 * e2e/failures; an Indexed Job: e2e/indexed-job). What only this file shows: the example migration.yaml run
 * unchanged, its two host names resolved (here through the pod's /etc/hosts) to servers on port 5432, and a
 * destination that refuses connections without TLS; and, after the run, what the pod's emptyDirs hold (the log and
 * summary.json in the logs volume, the dumps volume emptied once verified), which kubectl cannot read once the pod
 * has ended. The cluster suite's servers have no DNS names and no TLS;
 * the kit's cluster could give them both (the pods' resolver is the gateway address 198.18.200.1, where a test
 * DNS responder can answer, and a second address on the bridge holds the second port 5432).
 *
 * The manifest contract: the Job synthesized from the example spec, run as the kubelet would run its pod (volumes
 * from the ConfigMaps, env from a Secret, read-only root, non-root, its own command), with node and the real
 * PostgreSQL client tools, migrates a real database. Its host names resolve to two throwaway servers through the
 * pod's /etc/hosts, and the destination requires TLS, as in the example.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthManifests } from '../src/chart/synth';
import { loadSpecFile } from '../src/spec/load';
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
});
