/**
 * migration.copy.splitTablesLargerThan and the measured COPY format, against real PostgreSQL 15 servers: a large
 * table split into parts (by its integer primary key, or by ctid block ranges without one) arrives identical by
 * checksum, exactly once, in the stream's snapshot (rows inserted after it are not copied); an interrupted split
 * copy converges on re-run; pgbench_accounts-like rows go as text, wide numerics as binary.
 */
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tableChecksums } from '../src/runner/checks/checksum';
import { runMigration } from '../src/runner/migrate';
import { streamDatabase } from '../src/runner/stream';
import { copyTable } from '../src/runner/stream/copy-table';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { pgbenchInit } from './support/pgbench-load';
import { prepareServerVersions } from './support/pg-versions';
import { captureOutput } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];

const BIG = `
  CREATE TABLE public.with_pk (id bigint PRIMARY KEY, v text NOT NULL, n numeric);
  INSERT INTO public.with_pk SELECT g, md5(g::text), g * 1.5 FROM generate_series(1, 150000) g;
  DELETE FROM public.with_pk WHERE id % 7 = 0;                       -- holes in the key range
  CREATE TABLE public.no_pk (a int, v text);
  INSERT INTO public.no_pk SELECT g % 1000, md5(g::text) FROM generate_series(1, 150000) g;
  INSERT INTO public.no_pk SELECT 1, 'duplicate' FROM generate_series(1, 10);  -- identical rows, each once
  CREATE INDEX no_pk_a ON public.no_pk (a);
  CREATE TABLE public.small (id int PRIMARY KEY); INSERT INTO public.small SELECT generate_series(1, 10);`;

async function session(server: PgServer, database: string): Promise<Client> {
  const c = new Client({ host: server.host, port: server.port, user: server.superuser, password: server.superPassword, database });
  await c.connect();
  return c;
}

async function checksums(server: PgServer, database: string) {
  const c = await session(server, database);
  try {
    return Object.fromEntries([...(await tableChecksums(c)).entries()].map(([k, v]) => [k, { rows: v.rows, checksum: v.checksum }]));
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'split-src' }), startPgServer({ name: 'split-dst' })]);
  await source.query('CREATE DATABASE big');
  await source.query(BIG, 'big');
}, 180_000);

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

function setup(dst: string, migration: Record<string, unknown>): TestRuntimeConfig {
  const t = makeRuntimeConfig({
    source, destination, databases: [{ name: 'big', source: { database: 'big' }, destination: { database: dst } }],
    migration: { mode: 'stream', ...migration },
  });
  configs.push(t);
  return t;
}

describe('stream mode, large tables split into parts', () => {
  it('copies a table split by its primary key and one split by block ranges exactly once, in the snapshot: rows inserted after it are not copied', async () => {
    // given both large tables split into 4 parts each (the threshold is a quarter of their size), copied by 3 workers
    await destination.query('CREATE DATABASE big_split');
    const t = setup('big_split', { copy: { jobs: 3, splitTablesLargerThan: '2Mi' }, verify: 'checksums' });
    const before = await checksums(source, 'big');
    const logged: string[] = [];
    const writer = await session(source, 'big');

    // when it is streamed, and rows are inserted into both tables once the snapshot is taken
    const result = await streamDatabase(t.config.databases[0], t.config, {
      env: t.env, binDir: PG_BIN, log: (_l, m) => logged.push(m),
      onSnapshot: async () => {
        await writer.query("INSERT INTO public.with_pk VALUES (1000001, 'late', 1); INSERT INTO public.no_pk VALUES (-1, 'late')");
      },
    });
    await writer.end();

    // then both tables were split and every part copied, and the destination equals the source as of the snapshot
    expect(logged).toContainEqual(expect.stringMatching(/^split "public"."with_pk" \(\d+ MiB\) into \d+ parts by its primary key id$/));
    expect(logged).toContainEqual(expect.stringMatching(/^split "public"."no_pk" \(\d+ MiB\) into \d+ parts by block ranges \(ctid\)$/));
    const parts = logged.filter((l) => /^copied part \d+\/\d+ of "public"."(with_pk|no_pk)"/.test(l));
    expect(parts.length).toBeGreaterThanOrEqual(4);
    expect(logged).not.toContainEqual(expect.stringMatching(/"public"."small" .*parts/));
    expect(await checksums(destination, 'big_split')).toEqual(before);
    expect(result.sourceRowCounts.get('"public"."with_pk"')).toBe(before['"public"."with_pk"'].rows);
    // and the table's index was built after its parts were loaded
    const [idx] = await destination.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_indexes WHERE indexname = 'no_pk_a'", 'big_split');
    expect(idx.n).toBe(1);
    await source.query("DELETE FROM public.with_pk WHERE id = 1000001; DELETE FROM public.no_pk WHERE a = -1", 'big');
  });

  it('converges when the run is interrupted during the split copy and run again', async () => {
    // given a migration of the database with splitting, interrupted once the first part is copied
    const t = setup('big_resumed', { copy: { jobs: 2, splitTablesLargerThan: '1Mi' }, verify: 'checksums', verbose: true });
    const stop = new AbortController();
    const out = captureOutput();
    const first = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, signal: stop.signal });
    await out.waitFor(/copied part 1\/\d+ of/);
    stop.abort();
    const interrupted = await first;
    expect(interrupted.interrupted).toBe(true);

    // when it runs again (resume), then it resets the half-copied database and the copy equals the source
    const again = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: captureOutput().stream, resume: true });
    expect(again.ok).toBe(true);
    expect(await checksums(destination, 'big_resumed')).toEqual(await checksums(source, 'big'));
  });
});

describe('stream mode, splitting from a PostgreSQL 13 source', () => {
  it('splits a table by its primary key, leaves one without a key whole (ctid ranges need 14) and says why; both arrive identical', async () => {
    // given a PostgreSQL 13 source with the two large tables
    const bin = await prepareServerVersions([13]);
    const old = await startPgServer({ name: 'split-13', binDir: bin[13] });
    try {
      await old.query('CREATE DATABASE big');
      await old.query(BIG, 'big');
      const t = makeRuntimeConfig({
        source: old, destination, databases: [{ name: 'big', source: { database: 'big' }, destination: { database: 'big_from_13' } }],
        migration: { mode: 'stream', copy: { jobs: 2, splitTablesLargerThan: '2Mi' }, verify: 'checksums' },
      });
      configs.push(t);
      const out = captureOutput();

      // when it is streamed with splitting on
      const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

      // then the keyed table is split, the other is copied whole with the reason, and both are identical
      expect(summary.ok).toBe(true);
      expect(out.text()).toMatch(/split "public"."with_pk" \(\d+ MiB\) into \d+ parts by its primary key id/);
      expect(out.text()).toMatch(/not split "public"."no_pk" \(\d+ MiB\): no integer primary key, and block ranges \(ctid\) need a PostgreSQL 14 source/);
      expect(await checksums(destination, 'big_from_13')).toEqual(await checksums(old, 'big'));
    } finally {
      await old.destroy();
    }
  });
});

describe('stream mode, the COPY format of each large table', () => {
  it('sends pgbench_accounts as text (fewer bytes) and a table of wide numerics and timestamps as binary, and both arrive identical', async () => {
    // given pgbench's accounts (narrow integers, a blank-padded char(84)) and a table of wide values
    await source.query('CREATE DATABASE formats');
    pgbenchInit(source, 'formats', PG_BIN, 1);
    await source.query(`CREATE TABLE public.wide (id bigint PRIMARY KEY, a numeric, b timestamptz, c double precision, d uuid);
      INSERT INTO public.wide SELECT g, g * 12345.678901, timestamptz '2024-01-01' + g * interval '1 s', g / 7.0, md5(g::text)::uuid
      FROM generate_series(1, 120000) g`, 'formats');
    const t = makeRuntimeConfig({
      source, destination, databases: [{ name: 'formats', source: { database: 'formats' }, destination: { database: 'formats' } }],
      migration: { mode: 'stream', verify: 'checksums' },
    });
    configs.push(t);
    const out = captureOutput();

    // when it is streamed
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

    // then the log gives each measured table's format with the sample's sizes, and the data is identical
    expect(summary.ok).toBe(true);
    const line = (table: string) => new RegExp(`COPY format of "public"."${table}": (text|binary) \\(2000 sample rows: ([\\d.]+) KiB as text, ([\\d.]+) KiB as binary\\)`).exec(out.text());
    const accounts = line('pgbench_accounts');
    const wide = line('wide');
    expect(accounts?.[1]).toBe('text');
    expect(Number(accounts?.[2])).toBeLessThan(Number(accounts?.[3]));
    expect(wide?.[1]).toBe('binary');
    expect(Number(wide?.[3])).toBeLessThan(Number(wide?.[2]));
    expect(await checksums(destination, 'formats')).toEqual(await checksums(source, 'formats'));
  });

  it('sends character(n) values without their blank padding, and they arrive identical in text and in binary format', async () => {
    // given a table with character(n), arrays of it, unbounded bpchar and varchar, with empty, blank and leading-blank values
    await source.query('CREATE DATABASE padded');
    await destination.query('CREATE DATABASE padded');
    const ddl = 'CREATE TABLE t (id int, c char(10), d char(3)[], e bpchar, f varchar(5)); ';
    await source.query(`${ddl} INSERT INTO t VALUES (1, 'ab', '{x,yy}', 'q  ', 'z'), (2, NULL, NULL, NULL, NULL),
      (3, '', '{}', '', ''), (4, ' lead', '{" a "}', ' ', 'sp '); INSERT INTO t SELECT g, 'x', NULL, NULL, NULL FROM generate_series(5, 1004) g`, 'padded');
    await destination.query(ddl, 'padded');
    const table = { oid: 0, schema: 'public', name: 't', bytes: 0, columns: [
      { name: 'id', binary: true }, { name: 'c', binary: true, padded: true }, { name: 'd', binary: true }, { name: 'e', binary: true }, { name: 'f', binary: true }] };
    const digest = "SELECT md5(string_agg(t::text || '|' || coalesce(octet_length(c::bytea), -1), ',' ORDER BY id)) AS d FROM t";
    for (const format of ['text', 'binary'] as const) {
      const [src, dst] = await Promise.all([session(source, 'padded'), session(destination, 'padded')]);
      try {
        // when it is copied
        await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const res = await copyTable(src, dst, table, { format, signal: new AbortController().signal });
        // then every value is stored exactly as on the source, padding included, and the wire carried no padding
        expect(res.rows).toBe(1004);
        expect((await dst.query(digest)).rows).toEqual((await src.query(digest)).rows);
        // a padded 'x' row is 25 bytes as text, 36 as binary; trimmed, 16 and 27
        expect(res.bytes).toBeLessThan(1004 * (format === 'text' ? 20 : 32));
      } finally {
        await Promise.all([src.end(), dst.end()]);
      }
    }
  });
});
