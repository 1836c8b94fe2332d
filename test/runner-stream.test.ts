/**
 * runMigration with migration.mode: stream against real PostgreSQL 15 servers: the stream engine wired into the
 * runner (marker protocol, retries that start clean, resume of a half-streamed database, dry run, summary),
 * with the copies compared independently of the runner's own verification.
 */
import { readdirSync } from 'node:fs';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMarker, parseMarker } from '../src/runner/checks/progress-marker';
import { runMigration } from '../src/runner/migrate';
import { directorySize } from '../src/runner/report/progress';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { captureOutput, createAppRoles, createRealisticDatabase, databaseExists, matviewStates, superuserSession, waitForLockWait } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'ssrc' }), startPgServer({ name: 'sdst' })]);
  await createRealisticDatabase(source, 'shop');
  await createAppRoles(destination);
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

function track(c: TestRuntimeConfig): TestRuntimeConfig {
  configs.push(c);
  return c;
}

const sessionOn = (server: PgServer, database: string) => superuserSession(server, database, clients);


async function expectSameData(srcDb: string, dstDb: string): Promise<void> {
  const [a, b] = await Promise.all([fingerprint(source, srcDb), fingerprint(destination, dstDb)]);
  expect(Object.keys(a.tables).length).toBeGreaterThanOrEqual(10);
  expect(b.tables).toEqual(a.tables);
  expect(b.sequences).toEqual(a.sequences);
  expect(await matviewStates(destination, dstDb)).toEqual(await matviewStates(source, srcDb));
}

async function markerOf(server: PgServer, database: string) {
  const [row] = await server.query<{ c: string | null }>(
    `SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = '${database}'`);
  return parseMarker(row?.c);
}

describe('runMigration, mode: stream', () => {
  it('streams a database: data, sequences and matviews match, the marker says verified, nothing touches the dumps volume', async () => {
    // given a source database and a destination without it
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_streamed' } }],
      migration: { mode: 'stream', copy: { jobs: 3 }, restore: { jobs: 2, noOwner: false }, verify: 'counts' },
    }));
    const out = captureOutput();
    let peakDumpBytes = 0;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        peakDumpBytes = Math.max(peakDumpBytes, await directorySize(t.config.paths.dumps));
        await new Promise((r) => setTimeout(r, 25));
      }
    })();

    // when the migration runs in stream mode
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 50 });
    polling = false;
    await poll;

    // then it is migrated and verified, with the stream's figures in the summary
    expect(summary.ok).toBe(true);
    const d = summary.databases[0];
    expect(d).toMatchObject({ status: 'migrated' });
    expect(d.streamSeconds).toBeGreaterThanOrEqual(0);
    expect(d.bytesCopied).toBeGreaterThan(100_000);
    expect(d.rowsCopied).toBeGreaterThan(20_000);
    expect(d.rowsVerified).toBeGreaterThanOrEqual(d.rowsCopied!);
    expect(d.dumpSeconds).toBeUndefined();
    expect(d.restoreSeconds).toBeUndefined();
    // and the copy matches the source independently of the runner's verification
    await expectSameData('shop', 'shop_streamed');
    // and nothing was ever written to the dumps volume, nor left in tmp
    expect(peakDumpBytes).toBe(0);
    expect(readdirSync(t.config.paths.dumps)).toEqual([]);
    expect(readdirSync(t.config.paths.tmp)).toEqual([]);
    // and the marker records a verified copy of this source, created by the run
    expect(await markerOf(destination, 'shop_streamed')).toMatchObject({ state: 'verified', created: true, database: 'shop', verify: 'counts' });
    // and the log shows the stream's phases, progress lines and the summary table's stream columns
    const text = out.text();
    expect(text).toMatch(/\[shop\] \[stream\] streaming with 3 COPY workers; time limit/);
    expect(text).toMatch(/\[shop\] \[stream\] copy \(\d+ tables, about [\d.]+ (KiB|MiB)\)/);
    expect(text).toMatch(/\[shop\] \[stream\] streaming \((pre-data|copy|post-data|sequences|analyze)\): [\d.]+ (B|KiB|MiB)( of about [\d.]+ (B|KiB|MiB) \(\d+%\)(, ([\d.]+ (B|KiB|MiB)\/s|rate not measured yet), (about \S+ left|time left unknown[^;]*))?| copied); \d+\/\d+ tables, \d+ rows copied, \d+s elapsed/);
    expect(text).toMatch(/\[shop\] \[stream\] streamed \d+ tables, \d+ rows, [\d.]+ (KiB|MiB) in/);
    expect(text).toMatch(/database\s+status\s+phase\s+size\s+dump\s+restore\s+stream\s+copied\s+verify/);
    expect(text).not.toMatch(/\[analyze\]/);
  });

  it('dry run shows the stream steps with the exact pg_dump and pg_restore commands, and moves nothing', async () => {
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_stream_dry' } }],
      migration: { mode: 'stream', dryRun: true, copy: { jobs: 2 }, restore: { jobs: 3, noAcl: true } },
    }));
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    expect(summary.ok).toBe(true);
    expect(summary.databases[0].status).toBe('dry-run');
    const text = out.text();
    expect(text).toMatch(/\[dry-run\] would run: .*PGPASSWORD=<from \$DBM_SHOP_SOURCE_PASSWORD> \S*pg_dump --format=custom --section=pre-data --section=post-data '--snapshot=<snapshot exported at run time>'/);
    expect(text).toMatch(/\[dry-run\] would run: .*PGPASSWORD=<from \$DBM_SHOP_DEST_PASSWORD> \S*pg_restore --section=pre-data --exit-on-error --no-password --no-owner --no-acl /);
    expect(text).toMatch(/\[dry-run\] then the rest of post-data .*pg_restore --section=post-data --exit-on-error --no-password --jobs=3 .*--use-list=<what was not built early>/);
    expect(text).toMatch(/indexes and primary key, unique and exclusion constraints are restored as soon as it is loaded/);
    expect(text).toMatch(/then: COPY every table source → destination in the snapshot, 2 at a time/);
    expect(text).not.toContain(source.superPassword);
    expect(await databaseExists(destination, 'shop_stream_dry')).toBe(false);
  });

  it('retries a stream whose pre-data session was terminated, starting clean (--clean --if-exists) in a database it did not create', async () => {
    // given an empty destination database an admin created, and the pre-data restore held by an uncommitted
    // CREATE SCHEMA of the same name in another session (some schemas already restored)
    await destination.query('CREATE DATABASE shop_stream_retry');
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_stream_retry' } }],
      migration: { mode: 'stream', retries: { attempts: 3, delaySeconds: 1 } },
    }));
    const out = captureOutput();
    const blocker = await sessionOn(destination, 'shop_stream_retry');
    await blocker.query('BEGIN; CREATE SCHEMA sales');
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    await waitForLockWait(destination);
    const [{ n: restoredSoFar }] = await destination.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname IN ('audit', 'inventory')", 'shop_stream_retry');
    expect(await markerOf(destination, 'shop_stream_retry')).toMatchObject({ state: 'restoring', created: false });

    // when the waiting session is terminated (transient) and the blocker goes away
    await destination.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'db-migration' AND wait_event_type = 'Lock'");
    await blocker.query('ROLLBACK');
    const summary = await run;

    // then the first attempt had restored part of the schema, the retry replaced it and streamed everything
    expect(restoredSoFar).toBeGreaterThan(0);
    expect(out.text()).toMatch(/⚠️ \[shop\] \[stream\] attempt 2\/3 after server shut down the session/);
    expect(summary.databases[0]).toMatchObject({ status: 'migrated' });
    await expectSameData('shop', 'shop_stream_retry');
    expect(await markerOf(destination, 'shop_stream_retry')).toMatchObject({ state: 'verified', created: false });
  });

  it('on --resume, resets a database left half-streamed: re-created when the run created it, --clean otherwise', async () => {
    // given two complete stream copies, one into a database the run created and one into an admin-created one
    await destination.query('CREATE DATABASE shop_half_admin');
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'created', source: { database: 'shop' }, destination: { database: 'shop_half_created' } },
        { name: 'admin', source: { database: 'shop' }, destination: { database: 'shop_half_admin' } },
      ],
      migration: { mode: 'stream' },
    }));
    expect((await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: captureOutput().stream })).ok).toBe(true);
    // and both turned into half-streamed ones: marker back to "restoring", rows lost (and in the one the run
    // created, a table the source does not have)
    for (const db of ['shop_half_created', 'shop_half_admin']) {
      const m = (await markerOf(destination, db))!;
      await destination.query(`COMMENT ON DATABASE ${db} IS '${formatMarker({ ...m, state: 'restoring' }).replace(/'/g, "''")}'`);
      await destination.query('DELETE FROM audit.events WHERE id % 3 = 0', db);
    }
    await destination.query('CREATE TABLE public.leftover (x int)', 'shop_half_created');
    const [{ oid: createdOid }] = await destination.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = 'shop_half_created'");

    // when the migration runs again with resume
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, resume: true });

    // then both are reset and streamed again, and match the source
    expect(summary.ok).toBe(true);
    expect(out.text()).toMatch(/\[created\] \[preflight\] an earlier attempt left it half-restored .* dropped and re-created/);
    expect(out.text()).toMatch(/\[admin\] \[preflight\] an earlier attempt left it half-restored .* restored with --clean --if-exists/);
    const [{ oid: newOid }] = await destination.query<{ oid: number }>("SELECT oid::int AS oid FROM pg_database WHERE datname = 'shop_half_created'");
    expect(newOid).not.toBe(createdOid);
    await expectSameData('shop', 'shop_half_created');
    await expectSameData('shop', 'shop_half_admin');
    expect(await destination.query("SELECT 1 FROM pg_class WHERE relname = 'leftover'", 'shop_half_created')).toHaveLength(0);
  });
});
