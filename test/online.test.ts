/**
 * migration.mode: online against real PostgreSQL 15 servers, the source under a steady write load (pgbench's
 * TPC-B-like script, and inserts, updates and deletes on the realistic schema): copy in the slot's snapshot,
 * replication, the operator's cutover command, the fence, and verification. The copies are compared with the
 * fenced source independently of the runner's own verification.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { controlDir, requestCutover } from '../src/runner/online/control';
import { replicationName } from '../src/runner/online/names';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { pgbenchInit, startPgbench } from './support/pgbench-load';
import { captureOutput, createAppRoles, createRealisticDatabase } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';
import { startWriteLoad, type LoadStatement } from './support/write-load';

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([
    startPgServer({ name: 'online-src', settings: { wal_level: 'logical' } }),
    startPgServer({ name: 'online-dst' }),
  ]);
  await createAppRoles(destination);
}, 300_000);

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

const SHOP_LOAD: LoadStatement[] = [
  { sql: 'INSERT INTO public."café" ("名前", boisson, prix) VALUES (\'neu\', \'thé\', 1.5)' },
  { sql: 'UPDATE inventory.products SET price = price + 1 WHERE id = (1 + floor(random() * 500))::int' },
  { sql: 'DELETE FROM public."café" WHERE id = (SELECT min(id) FROM public."café")' },
  { sql: "SELECT nextval('sales.invoice_number_seq')" },
  { sql: "UPDATE sales.orders SET note = 'changed ' || now() WHERE id = (1 + floor(random() * 100))::int" },
];

/** Tables and sequences equal; materialized views are refreshed at cutover, not replicated, so only their population is compared. */
async function expectSameTables(srcDb: string, dstDb: string): Promise<void> {
  const [a, b] = await Promise.all([fingerprint(source, srcDb), fingerprint(destination, dstDb)]);
  const matviews = new Set((await source.query<{ n: string }>("SELECT schemaname || '.' || matviewname AS n FROM pg_matviews", srcDb)).map((r) => r.n));
  const tables = (f: typeof a) => Object.fromEntries(Object.entries(f.tables).filter(([k]) => !matviews.has(k)));
  expect(Object.keys(tables(a)).length).toBeGreaterThan(0);
  expect(tables(b)).toEqual(tables(a));
  expect(b.sequences).toEqual(a.sequences);
  expect(Object.keys(b.tables).sort()).toEqual(Object.keys(a.tables).sort());
}

async function ourObjects(name: string, srcDb: string, dstDb: string): Promise<string[]> {
  const slots = await source.query<{ n: string }>(`SELECT slot_name AS n FROM pg_replication_slots WHERE slot_name = '${name}'`);
  const pubs = await source.query<{ n: string }>(`SELECT pubname AS n FROM pg_publication WHERE pubname = '${name}'`, srcDb);
  const subs = await destination.query<{ n: string }>(`SELECT subname AS n FROM pg_subscription WHERE subname = '${name}'`, dstDb).catch(() => []);
  return [...slots.map((r) => `slot ${r.n}`), ...pubs.map((r) => `publication ${r.n}`), ...subs.map((r) => `subscription ${r.n}`)];
}

/** The line, or a failure as soon as the run ends without it. */
async function readyOrEnded(out: ReturnType<typeof captureOutput>, run: Promise<unknown>, re: RegExp): Promise<string> {
  return Promise.race([out.waitFor(re, 120_000), run.then(() => { throw new Error(`the run ended before ${re}:\n${out.text()}`); })]);
}

function cutoverOutput(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (c: Buffer) => { text += c.toString(); });
  return { stream, text: () => text };
}

describe('runMigration, mode: online', () => {
  it('copies two databases under a write load, replicates, and cuts both over on the operator\'s command: identical to the fenced source, write pause reported, nothing left behind', async () => {
    // given two source databases under a steady write load: pgbench (TPC-B-like) and the realistic schema
    await createRealisticDatabase(source, 'shop');
    await source.query('CREATE DATABASE bench');
    pgbenchInit(source, 'bench', PG_BIN, 2);
    const bench = startPgbench(source, 'bench', PG_BIN, { rate: 100 });
    const shopLoad = startWriteLoad(source, 'shop', SHOP_LOAD);
    const t = makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_online' } },
        { name: 'bench', source: { database: 'bench' }, destination: { database: 'bench_online' } },
      ],
      // pgbench_history has no primary key: not replicated, copied inside the pause (the runner refuses it otherwise)
      migration: { mode: 'online', verify: 'checksums', restore: { noOwner: false }, copy: { jobs: 2 }, online: { tablesWithoutKey: { 'public.pgbench_history': 'exclude' } } },
    });
    configs.push(t);
    const out = captureOutput();

    // when the migration runs in online mode (cutover: manual, the default) and the operator asks for the cutover once it is ready
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 500 });
    await readyOrEnded(out, run, /ready to cut over: every database has caught up\. Cut over with: db-migration cutover --work-dir /);
    expect(await ourObjects(replicationName(t.config.name, 'shop'), 'shop', 'shop_online')).toHaveLength(3);
    const command = cutoverOutput();
    const code = await requestCutover({ dir: controlDir(t.config.paths.logs), out: command.stream, pollMs: 100 });
    const summary = await run;
    const benchOutput = await bench.stop();

    // then the command succeeded and showed the cutover's progress, both databases are migrated
    expect(code).toBe(0);
    expect(command.text()).toMatch(/\[shop\] fence: database shop on the source is read-only/);
    expect(command.text()).toMatch(/\[bench\] cut over: write pause [\d.]+s/);
    expect(command.text()).toMatch(/cutover succeeded: every database is cut over/);
    expect(summary.ok).toBe(true);
    for (const d of summary.databases) {
      expect(d).toMatchObject({ status: 'migrated', tablesChecksummed: expect.any(Number) });
      expect(d.writePauseSeconds).toBeGreaterThan(0);
      expect(d.catchUpSeconds).toBeGreaterThanOrEqual(0);
      expect(d.undoFenceSql).toBe(`ALTER DATABASE "${d.name}" RESET default_transaction_read_only;`);
    }
    expect(summary.writePauseSeconds).toBe(Math.max(...summary.databases.map((d) => d.writePauseSeconds!)));
    // and the writers were really fenced: sessions ended, new writes refused, the sources read-only
    // (the writers notice on their next write: the fenced sessions were ended, new ones are read-only)
    for (let i = 0; i < 100 && shopLoad.refused() === 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(shopLoad.refused()).toBeGreaterThan(0);
    await shopLoad.stop();
    expect(shopLoad.committed()).toBeGreaterThan(50);
    expect(benchOutput).toMatch(/read-only transaction|terminating connection/);
    await expect(source.query('CREATE TABLE public.after_cutover (x int)', 'shop')).rejects.toThrow(/read-only transaction/);
    // and the destinations equal the fenced sources, table by table and sequence by sequence
    await expectSameTables('shop', 'shop_online');
    await expectSameTables('bench', 'bench_online');
    // and the replication objects are gone from both servers, the destinations accept writes
    for (const db of ['shop', 'bench']) expect(await ourObjects(replicationName(t.config.name, db), db, `${db}_online`)).toEqual([]);
    await destination.query('CREATE TABLE public.after_cutover (x int); DROP TABLE public.after_cutover', 'shop_online');
    // and the log, summary table, summary.json and termination message carry the write pause and the undo SQL
    const text = out.text();
    expect(text).toMatch(/\[shop\] \[replicate\] replicating: lag [\d.]+ (KiB|MiB), [\d.]+s, \d+ rows applied/);
    expect(text).toMatch(/\[shop\] \[cutover\] verified before the fence \(checksums\): \d+ tables, \d+ rows match at consistent points/);
    expect(text).toMatch(/database\s+status\s+phase\s+size\s+dump\s+restore\s+stream\s+copied\s+catch-up\s+write pause/);
    expect(text).toMatch(/write pause \(fence to verified, databases in parallel\): [\d.]+s/);
    expect(text).toContain('shop: ALTER DATABASE "shop" RESET default_transaction_read_only;');
    const json = JSON.parse(readFileSync(join(t.config.paths.logs, 'summary.json'), 'utf8'));
    expect(json.writePauseSeconds).toBe(summary.writePauseSeconds);
    expect(JSON.parse(readFileSync(t.config.paths.terminationLog!, 'utf8')).writePauseSeconds).toBe(summary.writePauseSeconds);
    // and the source password never reached the log (it went into the subscription's connection string)
    expect(text).not.toContain(source.superPassword);

    for (const db of ['shop', 'bench']) await source.query(`ALTER DATABASE ${db} RESET default_transaction_read_only`);
  }, 300_000);

  it('fails a cutover when the source\'s schema changed during replication, names the difference, lifts the fence, keeps replicating; the next cutover succeeds once the destination has the change', async () => {
    // given a source under load, replicating to the destination
    await createRealisticDatabase(source, 'ddl');
    const load = startWriteLoad(source, 'ddl', SHOP_LOAD);
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'ddl', source: { database: 'ddl' }, destination: { database: 'ddl_online' } }],
      migration: { mode: 'online', verify: 'counts' },
    });
    configs.push(t);
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 500 });
    await readyOrEnded(out, run, /ready to cut over: every database has caught up/);

    // when an index is created on the source during catch-up (DDL is not replicated) and the operator cuts over
    await source.query('CREATE INDEX customers_country_idx ON public.customers (country)', 'ddl');
    const first = cutoverOutput();
    const failed = await requestCutover({ dir: controlDir(t.config.paths.logs), out: first.stream, pollMs: 100 });

    // then the cutover fails naming the index, the fence is lifted (the source takes writes again) and replication goes on
    expect(failed).toBe(1);
    expect(first.text()).toMatch(/difference: .*customers_country_idx/);
    expect(first.text()).toMatch(/fence lifted/);
    const committedBefore = load.committed();
    await source.query('CREATE TABLE public.writable_again (x int); DROP TABLE public.writable_again', 'ddl');
    expect(await ourObjects(replicationName(t.config.name, 'ddl'), 'ddl', 'ddl_online')).toHaveLength(3);

    // when the operator applies the change to the destination too and cuts over again
    await destination.query('CREATE INDEX customers_country_idx ON public.customers (country)', 'ddl_online');
    const second = cutoverOutput();
    const ok = await requestCutover({ dir: controlDir(t.config.paths.logs), out: second.stream, pollMs: 100 });
    const summary = await run;
    await load.stop();

    // then it succeeds, and the writes made between the two attempts arrived
    expect(ok).toBe(0);
    expect(load.committed()).toBeGreaterThan(committedBefore);
    expect(summary.ok).toBe(true);
    expect(summary.databases[0].writePauseSeconds).toBeGreaterThan(0);
    await expectSameTables('ddl', 'ddl_online');
    expect(await ourObjects(replicationName(t.config.name, 'ddl'), 'ddl', 'ddl_online')).toEqual([]);
    await source.query('ALTER DATABASE ddl RESET default_transaction_read_only');
  }, 300_000);

  it('copies large objects written, changed and removed during catch-up at the cutover, and pre-flight names them', async () => {
    // given a source with large objects referenced from a table
    await source.query('CREATE DATABASE los');
    await source.query(`CREATE TABLE docs (id int PRIMARY KEY, body oid);
      INSERT INTO docs SELECT g, lo_from_bytea(0, convert_to(repeat('doc ' || g, 1000), 'UTF8')) FROM generate_series(1, 20) g`, 'los');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'los', source: { database: 'los' }, destination: { database: 'los_online' } }],
      migration: { mode: 'online', verify: 'checksums', online: { cutover: 'manual' } },
    });
    configs.push(t);
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 500 });
    await readyOrEnded(out, run, /ready to cut over: every database has caught up/);

    // when large objects are added, changed and removed while it replicates, then the cutover runs
    await source.query(`INSERT INTO docs VALUES (21, lo_from_bytea(0, '\\x0001ff'::bytea));
      SELECT lo_put(body, 0, convert_to('CHANGED', 'UTF8')) FROM docs WHERE id = 1;
      SELECT lo_unlink(body) FROM docs WHERE id = 2; DELETE FROM docs WHERE id = 2;
      SELECT lo_put(body, 1000000, '\\xabcd'::bytea) FROM docs WHERE id = 3`, 'los');
    const code = await requestCutover({ dir: controlDir(t.config.paths.logs), out: cutoverOutput().stream, pollMs: 100 });
    const summary = await run;

    // then the destination has exactly the source's large objects, byte for byte
    expect(code).toBe(0);
    expect(summary.ok).toBe(true);
    const los = (s: PgServer, db: string) => s.query<{ oid: string; md5: string }>(
      'SELECT oid::text, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid', db);
    const [a, b] = await Promise.all([los(source, 'los'), los(destination, 'los_online')]);
    expect(a).toHaveLength(20);
    expect(b).toEqual(a);
    expect(out.text()).toMatch(/large objects 3 copied \/ 1 removed \/ 17 unchanged/);
    // and pre-flight named them: they are copied at cutover, not replicated
    expect(out.text()).toMatch(/20 large objects on the source \(OID \d+(, \d+){9} and 10 more\): large objects are not replicated/);
    await expectSameTables('los', 'los_online');
    await source.query('ALTER DATABASE los RESET default_transaction_read_only');
  }, 300_000);

  it('rides out a source restart during catch-up: the runner and the subscription reconnect, and the cutover succeeds', async () => {
    // given a database replicating under load
    await createRealisticDatabase(source, 'restart');
    const load = startWriteLoad(source, 'restart', SHOP_LOAD);
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'restart', source: { database: 'restart' }, destination: { database: 'restart_online' } }],
      migration: { mode: 'online', verify: 'counts' },
    });
    configs.push(t);
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 500 });
    await readyOrEnded(out, run, /ready to cut over: every database has caught up/);

    // when the source server restarts
    await source.stop('fast');
    await out.waitFor(/cannot read the replication status .*trying again/, 60_000);
    await source.start();
    const reconnected = out.text().length;
    await out.waitFor(/replicating: lag/, 60_000);
    while (!/replicating: lag/.test(out.text().slice(reconnected))) await new Promise((r) => setTimeout(r, 200));

    // then replication goes on, and the operator's cutover succeeds with the data equal
    const code = await requestCutover({ dir: controlDir(t.config.paths.logs), out: cutoverOutput().stream, pollMs: 100 });
    const summary = await run;
    await load.stop();
    expect(code).toBe(0);
    expect(summary.ok).toBe(true);
    await expectSameTables('restart', 'restart_online');
    await source.query('ALTER DATABASE restart RESET default_transaction_read_only');
  }, 300_000);

  it('with fence: none, refuses to finish a cutover while the source still changes, and finishes once the writers are stopped', async () => {
    // given a database replicating with fence: none (the operator stops the writers), a writer still running
    await createRealisticDatabase(source, 'nofence');
    const load = startWriteLoad(source, 'nofence', SHOP_LOAD);
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'nofence', source: { database: 'nofence' }, destination: { database: 'nofence_online' } }],
      migration: { mode: 'online', verify: 'counts', online: { fence: 'none' } },
    });
    configs.push(t);
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 500 });
    await readyOrEnded(out, run, /ready to cut over: every database has caught up/);

    // when the operator cuts over without having stopped the writer, it fails and says why
    const first = cutoverOutput();
    expect(await requestCutover({ dir: controlDir(t.config.paths.logs), out: first.stream, pollMs: 100 })).toBe(1);
    expect(first.text()).toMatch(/the source kept changing after the cutover began \(fence: none\)/);

    // when the writer is stopped and the operator cuts over again, it succeeds; the source was never fenced
    await load.stop();
    expect(await requestCutover({ dir: controlDir(t.config.paths.logs), out: cutoverOutput().stream, pollMs: 100 })).toBe(0);
    const summary = await run;
    expect(summary.ok).toBe(true);
    expect(summary.databases[0].undoFenceSql).toBeUndefined();
    await source.query('CREATE TABLE public.still_writable (x int); DROP TABLE public.still_writable', 'nofence');
    await expectSameTables('nofence', 'nofence_online');
  }, 300_000);
});
