/**
 * Online mode's pre-flight against real PostgreSQL 15 servers: what logical replication needs on both sides
 * (wal_level, REPLICATION, the right to create a subscription), tables a publication would break (no primary
 * key, default replica identity) and what migration.online.tablesWithoutKey does about them, and the
 * replication objects an earlier attempt left. A refused pre-flight creates nothing on either server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { replicationName } from '../src/runner/online/names';
import { preflight, type PreflightProblem, type PreflightReport } from '../src/runner/checks/preflight/checks';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { captureOutput, databaseExists } from './support/runner-helpers';
import { makeRuntimeConfig, type TestDatabase, type TestRuntimeConfig } from './support/runtime-config';

/** wal_level = logical: an online source. */
let logical: PgServer;
/** Started without settings (wal_level = replica, the default): the destination, and a source online mode refuses. */
let plain: PgServer;
const configs: TestRuntimeConfig[] = [];

beforeAll(async () => {
  [logical, plain] = await Promise.all([
    startPgServer({ name: 'opf-src', settings: { wal_level: 'logical' } }),
    startPgServer({ name: 'opf-dst' }),
  ]);
  // A small source database: one table with a primary key, one without (default replica identity).
  const schema = `CREATE TABLE public.k (id int PRIMARY KEY, v text);
    CREATE TABLE public.t (a int, b text);
    INSERT INTO public.k SELECT g, 'k' || g FROM generate_series(1, 100) g;
    INSERT INTO public.t SELECT g, 't' || g FROM generate_series(1, 100) g;`;
  for (const [server, db] of [[logical, 'keyless'], [logical, 'keyed'], [plain, 'replica_src']] as const) {
    await server.query(`CREATE DATABASE ${db}`);
    await server.query(db === 'keyless' ? schema : 'CREATE TABLE public.k (id int PRIMARY KEY, v text); INSERT INTO public.k VALUES (1, \'a\')', db);
  }
});

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([logical?.destroy(), plain?.destroy()]);
});

type OnlineSettings = NonNullable<NonNullable<Parameters<typeof makeRuntimeConfig>[0]['migration']>['online']>;

function onlineConfig(db: TestDatabase, opts: { source?: PgServer; destination?: PgServer; online?: OnlineSettings } = {}): TestRuntimeConfig {
  const t = makeRuntimeConfig({
    source: opts.source ?? logical, destination: opts.destination ?? plain, databases: [db],
    migration: { mode: 'online', online: opts.online ?? {} },
  });
  configs.push(t);
  return t;
}

const errors = (r: PreflightReport) => r.problems.filter((p) => p.severity === 'error');
const warnings = (r: PreflightReport) => r.problems.filter((p) => p.severity === 'warning');
const ofCheck = (ps: readonly PreflightProblem[], check: PreflightProblem['check']) => ps.filter((p) => p.check === check);
/** Problems as one text, for messages when an expectation fails. */
const show = (r: PreflightReport) => r.problems.map((p) => `${p.severity} ${p.check}: ${p.message}${p.fix ? ` | fix: ${p.fix}` : ''}`).join('\n');

async function replicationObjects(source: PgServer, sourceDb: string, name: string) {
  const [slots, pubs] = await Promise.all([
    source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = '${name}'`),
    source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_publication WHERE pubname = '${name}'`, sourceDb),
  ]);
  return { slots: slots[0].n, publications: pubs[0].n };
}

describe('online pre-flight', () => {
  it('fails a source table without a primary key, creates nothing, and passes once tablesWithoutKey says what to do with it', async () => {
    // given a source database whose table public.t has no primary key and the default replica identity
    const db: TestDatabase = { name: 'keyless', source: { database: 'keyless' }, destination: { database: 'keyless_copy' } };
    const t = onlineConfig(db);
    const name = replicationName(t.config.name, 'keyless');

    // when the online migration runs
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 100 });

    // then pre-flight refuses it: the error names the table, the fix is the ALTER TABLE and tablesWithoutKey is mentioned
    expect(summary.ok).toBe(false);
    expect(summary.databases[0]).toMatchObject({ name: 'keyless', status: 'failed', phase: 'preflight' });
    const text = out.text();
    expect(text).toMatch(/❌ \[keyless\] \[preflight\] source .*: 1 table has no primary key and no replica identity: public\.t\b/);
    expect(text).toMatch(/migration\.online\.tablesWithoutKey/);
    expect(text).toMatch(/fix: ALTER TABLE public\.t REPLICA IDENTITY FULL;/);
    expect(text).not.toMatch(/public\.k\b.*no primary key/);
    expect(text).toMatch(/pre-flight failed: nothing was dumped or restored/);
    // and nothing was created: no publication, no slot, no destination database
    expect(await replicationObjects(logical, 'keyless', name)).toEqual({ slots: 0, publications: 0 });
    expect(await logical.query('SELECT slot_name FROM pg_replication_slots')).toEqual([]);
    expect(await databaseExists(plain, 'keyless_copy')).toBe(false);

    // and pre-flight itself reports exactly that one table, with the fix
    const refused = await preflight(t.config, t.env, { binDir: PG_BIN });
    const identity = ofCheck(errors(refused), 'replica-identity');
    expect(identity, show(refused)).toHaveLength(1);
    expect(identity[0]).toMatchObject({ server: 'source', fix: 'ALTER TABLE public.t REPLICA IDENTITY FULL;' });
    expect(identity[0].message).toContain('migration.online.tablesWithoutKey');

    // when the spec excludes it: pre-flight passes, with a warning that it is copied at cutover
    const excluded = onlineConfig(db, { online: { tablesWithoutKey: { 'public.t': 'exclude' } } });
    const passing = await preflight(excluded.config, excluded.env, { binDir: PG_BIN });
    expect(errors(passing), show(passing)).toEqual([]);
    expect(passing.ok).toBe(true);
    const notReplicated = ofCheck(warnings(passing), 'not-replicated');
    expect(notReplicated, show(passing)).toHaveLength(1);
    expect(notReplicated[0].message).toMatch(/not replicated .*: public\.t; copied inside the write pause at cutover/);

    // when the spec says replicaIdentityFull but the table's replica identity is still the default: an error
    const full = onlineConfig(db, { online: { tablesWithoutKey: { 'public.t': 'replicaIdentityFull' } } });
    const notYet = await preflight(full.config, full.env, { binDir: PG_BIN });
    expect(notYet.ok).toBe(false);
    const notFull = ofCheck(errors(notYet), 'replica-identity');
    expect(notFull, show(notYet)).toHaveLength(1);
    expect(notFull[0].message).toMatch(/tablesWithoutKey says public\.t: replicaIdentityFull, but its replica identity is not FULL yet/);
    expect(notFull[0].fix).toBe('ALTER TABLE public.t REPLICA IDENTITY FULL;');

    // when the operator runs the fix on the source: it passes, and the table is replicated (no not-replicated warning)
    await logical.query('ALTER TABLE public.t REPLICA IDENTITY FULL', 'keyless');
    try {
      const fixed = await preflight(full.config, full.env, { binDir: PG_BIN });
      expect(errors(fixed), show(fixed)).toEqual([]);
      expect(fixed.ok).toBe(true);
      expect(ofCheck(fixed.problems, 'not-replicated')).toEqual([]);
    } finally {
      await logical.query('ALTER TABLE public.t REPLICA IDENTITY DEFAULT', 'keyless');
    }
    // and none of these checks created anything either
    expect(await replicationObjects(logical, 'keyless', name)).toEqual({ slots: 0, publications: 0 });
    expect(await databaseExists(plain, 'keyless_copy')).toBe(false);
  });

  it('fails a source whose wal_level is replica, with the ALTER SYSTEM that fixes it', async () => {
    // given a source server started without settings (wal_level = replica)
    const [{ wal_level: walLevel }] = await plain.query<{ wal_level: string }>("SELECT current_setting('wal_level') AS wal_level");
    expect(walLevel).toBe('replica');
    const t = onlineConfig({ name: 'replica', source: { database: 'replica_src' }, destination: { database: 'replica_copy' } },
      { source: plain, destination: logical });

    // when the online migration runs
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

    // then pre-flight fails with a line naming wal_level, and the fix
    expect(summary.databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
    expect(summary.databases[0].error).toMatch(/wal_level is replica/);
    expect(out.text()).toMatch(/❌ \[replica\] \[preflight\] source .*: wal_level is replica; online mode needs logical/);
    expect(out.text()).toMatch(/fix: ALTER SYSTEM SET wal_level = logical;/);
    const report = await preflight(t.config, t.env, { binDir: PG_BIN });
    expect(ofCheck(errors(report), 'wal-level')).toMatchObject([{ server: 'source', fix: expect.stringMatching(/^ALTER SYSTEM SET wal_level = logical;/) }]);
    expect(await databaseExists(logical, 'replica_copy')).toBe(false);
  });

  it('fails a destination user who may not create subscriptions, and a source user without REPLICATION', async () => {
    // given a destination login that may create the destination database (CREATEDB) but is no superuser (PG 15)
    expect(plain.version).toBeLessThan(160000);
    await plain.createRole('dbcreator', 'creator-pw', 'CREATEDB');
    // and a source login that may read the database but has no REPLICATION
    await logical.createRole('reader', 'reader-pw');
    await logical.query('GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader', 'keyed');

    // when pre-flight checks the destination user
    const dst = onlineConfig({ name: 'subpriv', source: { database: 'keyed' }, destination: { database: 'keyed_copy', username: 'dbcreator', password: 'creator-pw' } });
    const dstReport = await preflight(dst.config, dst.env, { binDir: PG_BIN });

    // then it fails with subscription-privilege and the fix, and only on the destination
    const sub = ofCheck(errors(dstReport), 'subscription-privilege');
    expect(sub, show(dstReport)).toHaveLength(1);
    expect(sub[0]).toMatchObject({ server: 'destination' });
    expect(sub[0].message).toMatch(/user "?dbcreator"? may not create a subscription: on PostgreSQL 15 and older that needs a superuser/);
    expect(sub[0].fix).toMatch(/^ALTER ROLE "?dbcreator"? SUPERUSER;/);
    expect(ofCheck(errors(dstReport), 'replication-privilege')).toEqual([]);
    // (the user may create the database, so that is not what fails)
    expect(ofCheck(errors(dstReport), 'destination-database')).toEqual([]);

    // when pre-flight checks the source user without REPLICATION
    const src = onlineConfig({ name: 'replpriv', source: { database: 'keyed', username: 'reader', password: 'reader-pw' }, destination: { database: 'keyed_copy2' } });
    const srcReport = await preflight(src.config, src.env, { binDir: PG_BIN });

    // then it fails with the ALTER ROLE ... REPLICATION fix, on the source
    const repl = ofCheck(errors(srcReport), 'replication-privilege');
    expect(repl, show(srcReport)).toHaveLength(1);
    expect(repl[0]).toMatchObject({ server: 'source' });
    expect(repl[0].message).toMatch(/user "?reader"? may not create a replication slot/);
    expect(repl[0].fix).toMatch(/^ALTER ROLE "?reader"? REPLICATION;$/);
    expect(ofCheck(errors(srcReport), 'subscription-privilege')).toEqual([]);

    // and once the source user has REPLICATION, that error is gone
    await logical.query('ALTER ROLE reader REPLICATION');
    const after = await preflight(src.config, src.env, { binDir: PG_BIN });
    expect(ofCheck(errors(after), 'replication-privilege'), show(after)).toEqual([]);
    expect(await databaseExists(plain, 'keyed_copy')).toBe(false);
  });

  it('warns about a publication, slot and subscription an earlier attempt left under the predictable name', async () => {
    // given the publication and logical slot of this migration's database made by hand on the source
    const t = onlineConfig({ name: 'leftover', source: { database: 'keyed' }, destination: { database: 'keyed_leftover' } });
    const name = replicationName(t.config.name, 'leftover');
    const clean = await preflight(t.config, t.env, { binDir: PG_BIN });
    expect(ofCheck(clean.problems, 'replication-leftovers'), show(clean)).toEqual([]);
    await logical.query(`CREATE PUBLICATION ${name} FOR TABLE public.k`, 'keyed');
    await logical.query(`SELECT pg_create_logical_replication_slot('${name}', 'pgoutput')`, 'keyed');
    // and its subscription in the destination database (not connected: nothing to replicate from)
    await plain.query('CREATE DATABASE keyed_leftover');
    await plain.query(`CREATE SUBSCRIPTION ${name} CONNECTION 'host=${logical.host} port=${logical.port} dbname=keyed' `
      + `PUBLICATION ${name} WITH (connect = false)`, 'keyed_leftover');
    try {
      // when pre-flight runs
      const report = await preflight(t.config, t.env, { binDir: PG_BIN });

      // then it warns about each of them (not an error: a run removes them, or continues from them)
      expect(report.ok, show(report)).toBe(true);
      const left = ofCheck(report.problems, 'replication-leftovers');
      expect(left.map((p) => p.severity)).toEqual(['warning', 'warning']);
      const onSource = left.find((p) => p.server === 'source');
      expect(onSource?.message).toMatch(new RegExp(`publication ${name} and replication slot ${name} of an earlier attempt exist on the source`));
      expect(onSource?.message).toMatch(/db-migration migrate --cleanup/);
      const onDestination = left.find((p) => p.server === 'destination');
      expect(onDestination?.message).toMatch(new RegExp(`subscription ${name} of an earlier attempt exists on the destination`));
    } finally {
      await plain.query(`ALTER SUBSCRIPTION ${name} SET (slot_name = NONE)`, 'keyed_leftover');
      await plain.query(`DROP SUBSCRIPTION ${name}`, 'keyed_leftover');
      await logical.query(`SELECT pg_drop_replication_slot('${name}')`);
      await logical.query(`DROP PUBLICATION ${name}`, 'keyed');
    }
  });
});
