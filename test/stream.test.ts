/**
 * Stream mode against real PostgreSQL 15 servers: a realistic database copied and compared row by row,
 * snapshot consistency under concurrent writes, abort (no source transaction, no child left), clean
 * re-runs, schema filters, text-format COPY, and the runner's memory while streaming a ~200 MB table.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { buildSync } from 'esbuild';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { streamDatabase, StreamAbortedError, type StreamProgress } from '../src/runner/stream';
import type { TableToCopy } from '../src/runner/stream/table-catalog';
import { copyTable } from '../src/runner/stream/copy-table';
import { openSnapshotReader, openWriter } from '../src/runner/stream/snapshot-sessions';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';
import { RUNNER_NODE_OPTIONS } from '../src/spec/runtime-config';

const run = promisify(execFile);
const REALISTIC_SCHEMA = join(__dirname, 'support', 'realistic-schema.sql');

/** Stream-specific objects on top of the realistic schema: the cases COPY must get right. */
const STREAM_EXTRAS = `
  CREATE SCHEMA "Mixed Case";
  CREATE TABLE "Mixed Case"."Weird ""Name"" ü" ("Col ""1""" int PRIMARY KEY, "ß" text);
  INSERT INTO "Mixed Case"."Weird ""Name"" ü" SELECT g, 'straße ' || g FROM generate_series(1, 50) g;
  CREATE TABLE public.generated (id int PRIMARY KEY, a int NOT NULL, gone text, twice int GENERATED ALWAYS AS (a * 2) STORED);
  INSERT INTO public.generated (id, a, gone) SELECT g, g * 3, 'x' FROM generate_series(1, 300) g;
  ALTER TABLE public.generated DROP COLUMN gone;
  CREATE UNLOGGED TABLE public.scratch (k text PRIMARY KEY, v bytea, f float8, d numeric, ts timestamptz, iv interval, arr int[]);
  INSERT INTO public.scratch SELECT 'k' || g, decode(repeat('00ff', g), 'hex'), 1.0 / (g + 0.1), g / 7.0,
    timestamptz '2024-03-01 12:00:00+01' + g * interval '1 second', g * interval '1 day 1 hour', ARRAY[g, NULL, -g]
  FROM generate_series(1, 200) g;
  CREATE TABLE public.no_columns ();
  INSERT INTO public.no_columns DEFAULT VALUES; INSERT INTO public.no_columns DEFAULT VALUES;
  CREATE TABLE public.inherits_parent (id int, note text);
  CREATE TABLE public.inherits_child (extra text) INHERITS (public.inherits_parent);
  INSERT INTO public.inherits_parent VALUES (1, 'parent row');
  INSERT INTO public.inherits_child VALUES (2, 'child row', 'extra');
  SELECT lo_from_bytea(424242, convert_to(repeat('große Datei ', 300000), 'UTF8'));
  SELECT lo_from_bytea(424243, '\\x00010203'::bytea);
  SELECT setval('public.customers_id_seq', 2000, true);
`;

/** Every leaf table of a database with a digest of its rows (ordered, so equal content gives equal digests). */
async function tableDigests(server: PgServer, database: string): Promise<Record<string, { n: number; h: string }>> {
  const tables = await server.query<{ schema: string; name: string }>(
    `SELECT n.nspname AS schema, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      ORDER BY 1, 2`, database);
  const out: Record<string, { n: number; h: string }> = {};
  for (const t of tables) {
    const q = `"${t.schema.replace(/"/g, '""')}"."${t.name.replace(/"/g, '""')}"`;
    const [row] = await server.query<{ n: number; h: string }>(
      `SELECT count(*)::int AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS h FROM ONLY ${q} t`, database);
    out[`${t.schema}.${t.name}`] = row;
  }
  return out;
}

async function sequenceStates(server: PgServer, database: string): Promise<Record<string, string>> {
  const seqs = await server.query<{ q: string }>(
    `SELECT format('%I.%I', schemaname, sequencename) AS q FROM pg_sequences ORDER BY 1`, database);
  const out: Record<string, string> = {};
  for (const s of seqs) {
    const [row] = await server.query<{ v: string }>(`SELECT last_value::text || '/' || is_called AS v FROM ${s.q}`, database);
    out[s.q] = row.v;
  }
  return out;
}

/** Names of indexes, constraints, triggers and populated matviews: what post-data creates. */
async function postDataInventory(server: PgServer, database: string): Promise<string[]> {
  const rows = await server.query<{ x: string }>(`
    SELECT 'index ' || schemaname || '.' || indexname AS x FROM pg_indexes WHERE schemaname NOT IN ('pg_catalog')
    UNION ALL SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || contype::text FROM pg_constraint WHERE connamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema')
    UNION ALL SELECT 'trigger ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL SELECT 'matview ' || schemaname || '.' || matviewname || ' ' || ispopulated FROM pg_matviews
    ORDER BY 1`, database);
  return rows.map((r) => r.x);
}

async function largeObjects(server: PgServer, database: string): Promise<Record<string, string>> {
  const rows = await server.query<{ oid: string; h: string }>(
    'SELECT oid::text AS oid, md5(lo_get(oid)) AS h FROM pg_largeobject_metadata ORDER BY oid', database);
  return Object.fromEntries(rows.map((r) => [r.oid, r.h]));
}

/** Sessions the runner has on a database (pg_dump, pg_restore and its own connections all use this name). */
async function runnerSessions(server: PgServer, database: string): Promise<{ state: string; query: string }[]> {
  return server.query(
    `SELECT state, query FROM pg_stat_activity WHERE datname = '${database}' AND application_name = 'db-migration' AND pid <> pg_backend_pid()`);
}

async function waitForNoRunnerSessions(server: PgServer, database: string, ms = 8000): Promise<{ state: string; query: string }[]> {
  const until = Date.now() + ms;
  let left = await runnerSessions(server, database);
  while (left.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    left = await runnerSessions(server, database);
  }
  return left;
}

/** pg_dump / pg_restore processes whose parent is this process (alive, not zombies). */
function childTools(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === process.pid && state !== 'Z' && /^pg_(dump|restore)$/.test(comm)) found.push(`${pid} ${comm}`);
    } catch { /* exited meanwhile */ }
  }
  return found;
}

describe('streamDatabase', () => {
  let source: PgServer;
  let destination: PgServer;
  const configs: TestRuntimeConfig[] = [];

  const setup = (database: string, destDatabase: string, migration: NonNullable<Parameters<typeof makeRuntimeConfig>[0]['migration']> = {}) => {
    const rc = makeRuntimeConfig({
      source, destination,
      databases: [{ name: database.replace(/_/g, '-'), source: { database }, destination: { database: destDatabase } }],
      migration: { mode: 'stream', copy: { jobs: 3 }, restore: { jobs: 2 }, ...migration },
    });
    configs.push(rc);
    return { config: rc.config, db: rc.config.databases[0], env: { PATH: process.env.PATH, ...rc.env }, workDir: rc.workDir };
  };

  beforeAll(async () => {
    [source, destination] = await Promise.all([startPgServer({ name: 'stream-src' }), startPgServer({ name: 'stream-dst' })]);
    await source.query('CREATE DATABASE app');
    await source.psqlFile(REALISTIC_SCHEMA, 'app');
    await source.query(STREAM_EXTRAS, 'app');
    await destination.query('CREATE ROLE app_owner NOLOGIN; CREATE ROLE app_reader NOLOGIN');
  });

  afterAll(async () => {
    for (const c of configs) c.cleanup();
    await Promise.all([source?.destroy(), destination?.destroy()]);
  });

  it('copies a realistic database: every row, sequence, large object and post-data object, nothing on the dumps volume', async () => {
    // given the realistic database on the source and an empty database on the destination
    await destination.query('CREATE DATABASE app');
    const { config, db, env } = setup('app', 'app');
    const phases: string[] = [];
    const progress: StreamProgress[] = [];
    const logged: string[] = [];

    // when it is streamed
    const result = await streamDatabase(db, config, {
      env, binDir: PG_BIN,
      onProgress: (p) => { progress.push(p); if (phases.at(-1) !== p.phase) phases.push(p.phase); },
      log: (_level, msg) => logged.push(msg),
    });

    // then every table holds the same rows
    const [src, dst] = await Promise.all([tableDigests(source, 'app'), tableDigests(destination, 'app')]);
    expect(Object.keys(dst)).toEqual(Object.keys(src));
    expect(dst).toEqual(src);
    expect(src['audit.events_2024_info'].n).toBeGreaterThan(0); // leaf partitions carry the rows
    expect(src['public.no_columns'].n).toBe(2);
    // and sequences, large objects and post-data objects (indexes, constraints, FKs, triggers, matviews) match
    expect(await sequenceStates(destination, 'app')).toEqual(await sequenceStates(source, 'app'));
    expect(await largeObjects(destination, 'app')).toEqual(await largeObjects(source, 'app'));
    const inventory = await postDataInventory(destination, 'app');
    expect(inventory).toEqual(await postDataInventory(source, 'app'));
    expect(inventory).toContain('trigger sales.orders orders_touch');
    expect(inventory).toContain('matview sales.customer_revenue true');
    expect(inventory).toContain('matview inventory.stock_snapshot false');
    // and the first tables loaded had their indexes built while the copy went on (the rest came after it)
    const early = logged.map((l) => /^(\d+) indexes and constraints of (\d+) tables were built while the copy ran$/.exec(l)).find(Boolean);
    expect(Number(early?.[1])).toBeGreaterThan(0);
    expect(Number(early?.[2])).toBeGreaterThan(0);
    expect(Number(early?.[2])).toBeLessThan(Object.keys(src).length);
    // and the result adds up
    const leafTables = Object.keys(src).length;
    expect(result.tables).toBe(leafTables);
    expect(result.rows).toBe(Object.values(src).reduce((a, t) => a + t.n, 0));
    expect(result.bytes).toBeGreaterThan(3_600_000); // the large object alone is 3.6 MB
    expect(result.snapshot).toMatch(/^[0-9A-F]+-[0-9A-F]+-\d+$/);
    expect(phases).toEqual(['pre-data', 'copy', 'post-data', 'sequences', 'analyze']);
    expect(progress.at(-1)).toMatchObject({ tablesDone: leafTables, tablesTotal: leafTables });
    // and statistics exist, nothing was written to the dumps volume, and no session is left behind
    const [stats] = await destination.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'sales' AND tablename = 'orders'", 'app');
    expect(stats.n).toBeGreaterThan(0);
    expect(readdirSync(config.paths.dumps)).toEqual([]);
    expect(readdirSync(config.paths.tmp)).toEqual([]);
    expect(await waitForNoRunnerSessions(source, 'app')).toEqual([]);
    expect(await waitForNoRunnerSessions(destination, 'app')).toEqual([]);
  });

  it('fails with the index build\'s error when a table\'s early post-data fails, leaving no tool and no session behind', async () => {
    // given a source index whose expression needs a database setting the destination does not have yet
    await source.query('CREATE DATABASE early_fail');
    await source.query(`
      CREATE FUNCTION public.scaled(v int) RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT v / current_setting('app.divisor')::int $$;
      CREATE TABLE public.readings (id int PRIMARY KEY, v int NOT NULL);
      INSERT INTO public.readings SELECT g, g FROM generate_series(1, 5000) g;
      SET app.divisor = '7';
      CREATE INDEX readings_scaled ON public.readings (public.scaled(v));`, 'early_fail');
    await destination.query('CREATE DATABASE early_fail');
    const { config, db, env } = setup('early_fail', 'early_fail');

    // when it is streamed, then pg_restore's error for that index is what fails it
    await expect(streamDatabase(db, config, { env, binDir: PG_BIN }))
      .rejects.toThrow(/unrecognized configuration parameter "app\.divisor"/);
    expect(childTools()).toEqual([]);
    expect(readdirSync(config.paths.tmp)).toEqual([]);
    expect(await waitForNoRunnerSessions(source, 'early_fail')).toEqual([]);
    expect(await waitForNoRunnerSessions(destination, 'early_fail')).toEqual([]);
  });

  it('fails on a destination that already holds the schema, and with restore.clean replaces it', async () => {
    // given a destination database already filled by a previous stream
    await destination.query('CREATE DATABASE app_again');
    const first = setup('app', 'app_again');
    await streamDatabase(first.db, first.config, { env: first.env, binDir: PG_BIN });
    await destination.query('DELETE FROM sales.order_items WHERE order_id < 100; UPDATE "Bücher".titel SET titel = \'changed\'', 'app_again');

    // when it is streamed again without clean, then pg_restore stops at the first existing object
    await expect(streamDatabase(first.db, first.config, { env: first.env, binDir: PG_BIN })).rejects.toThrow(/already exists/);
    expect(await waitForNoRunnerSessions(source, 'app')).toEqual([]);

    // when it is streamed with restore.clean, then the destination equals the source again
    const clean = setup('app', 'app_again', { restore: { clean: true } });
    await streamDatabase(clean.db, clean.config, { env: clean.env, binDir: PG_BIN });
    expect(await tableDigests(destination, 'app_again')).toEqual(await tableDigests(source, 'app'));
    expect(await postDataInventory(destination, 'app_again')).toEqual(await postDataInventory(source, 'app'));
  });

  it('copies only the schemas dump.schemas / dump.excludeSchemas select', async () => {
    // given filters that leave out the audit schema and the Mixed Case one
    await destination.query('CREATE DATABASE app_filtered');
    const { config, db, env } = setup('app', 'app_filtered', { dump: { excludeSchemas: ['audit', '"Mixed Case"'] } });

    // when it is streamed
    const result = await streamDatabase(db, config, { env, binDir: PG_BIN });

    // then those schemas' tables are neither created nor copied, and the rest is identical
    const src = await tableDigests(source, 'app');
    const dst = await tableDigests(destination, 'app_filtered');
    const expected = Object.fromEntries(Object.entries(src).filter(([k]) => !k.startsWith('audit.') && !k.startsWith('Mixed Case.')));
    expect(dst).toEqual(expected);
    expect(result.tables).toBe(Object.keys(expected).length);
  });

  it('copies with text COPY as well (used between different major versions)', async () => {
    // given a table with floats, numerics, intervals, arrays, bytea, and a copy of its schema
    await destination.query('CREATE DATABASE text_copy');
    await destination.query('CREATE TABLE public.scratch (k text PRIMARY KEY, v bytea, f float8, d numeric, ts timestamptz, iv interval, arr int[])', 'text_copy');
    const { db, env } = setup('app', 'text_copy');
    const snap = await new Client({ host: source.host, port: source.port, user: 'postgres', password: source.superPassword, database: 'app' });
    await snap.connect();
    await snap.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const [{ id }] = (await snap.query<{ id: string }>('SELECT pg_export_snapshot() AS id')).rows;
    const reader = await openSnapshotReader(db.source, id, { env, connectTimeoutSeconds: 10 });
    const writer = await openWriter(db.destination, { env, connectTimeoutSeconds: 10 });
    const table: TableToCopy = {
      oid: 0, schema: 'public', name: 'scratch', bytes: 0,
      columns: ['k', 'v', 'f', 'd', 'ts', 'iv', 'arr'].map((name) => ({ name, binary: true })),
    };
    try {
      // when it is copied in text format
      const res = await copyTable(reader, writer, table, { format: 'text', signal: new AbortController().signal });
      // then every value arrives unchanged
      expect(res.rows).toBe(200);
      const digest = `SELECT md5(string_agg(t::text, ',' ORDER BY k)) AS h FROM public.scratch t`;
      const [a] = await source.query<{ h: string }>(digest, 'app');
      const [b] = await destination.query<{ h: string }>(digest, 'text_copy');
      expect(b.h).toBe(a.h);
    } finally {
      await Promise.all([reader.end(), writer.end(), snap.end()]);
    }
  });

  describe('with a ~200 MB table', () => {
    beforeAll(async () => {
      await source.query('CREATE DATABASE big');
      await source.query(`
        CREATE TABLE public.wide (id bigint PRIMARY KEY, payload text NOT NULL, n numeric NOT NULL);
        INSERT INTO public.wide SELECT g, repeat(md5(g::text), 7), g / 3.0 FROM generate_series(1, 800000) g;
        CREATE TABLE public.small (id serial PRIMARY KEY, v text);
        INSERT INTO public.small (v) SELECT 'v' || g FROM generate_series(1, 1000) g;`, 'big');
      await source.query('VACUUM ANALYZE', 'big');
    });

    it('sees only the snapshot: rows written to the source during the stream are not copied', async () => {
      // given the source's state before the stream
      await destination.query('CREATE DATABASE big_consistent');
      const before = await tableDigests(source, 'big');
      const { config, db, env } = setup('big', 'big_consistent', { copy: { jobs: 2 } });
      let writes: Promise<unknown> | undefined;

      // when another session inserts, updates and deletes as soon as the snapshot is exported
      const result = await streamDatabase(db, config, {
        env, binDir: PG_BIN,
        log: (_level, msg) => {
          if (msg.startsWith('source snapshot')) {
            writes = source.query(`
              INSERT INTO public.small (v) SELECT 'late' FROM generate_series(1, 500);
              UPDATE public.wide SET payload = 'changed' WHERE id % 1000 = 0;
              DELETE FROM public.wide WHERE id > 790000;`, 'big');
          }
        },
      });
      await writes;

      // then the destination holds the state at the snapshot, not the later one
      const after = await tableDigests(source, 'big');
      expect(after['public.small'].n).toBe(1500);
      expect(await tableDigests(destination, 'big_consistent')).toEqual(before);
      expect(result.rows).toBe(801_000);
      const [seq] = await destination.query<{ last_value: string }>('SELECT last_value::text FROM public.small_id_seq', 'big_consistent');
      expect(Number(seq.last_value)).toBeGreaterThanOrEqual(1000);
      // and the source is as the other session left it
      expect(after['public.wide'].n).toBe(790_000);
      await source.query(`
        DELETE FROM public.small WHERE v = 'late';
        UPDATE public.wide SET payload = repeat(md5(id::text), 7) WHERE id % 1000 = 0;
        INSERT INTO public.wide SELECT g, repeat(md5(g::text), 7), g / 3.0 FROM generate_series(790001, 800000) g;`, 'big');
      expect(await tableDigests(source, 'big')).toEqual(before);
    });

    it('fails with StreamAbortedError when aborted mid-copy, leaving no source transaction and no child process', async () => {
      // given a stream under way
      await destination.query('CREATE DATABASE big_abort');
      const { config, db, env } = setup('big', 'big_abort');
      const ctl = new AbortController();
      let abortedAt: StreamProgress | undefined;

      // when it is aborted once COPY has moved 20 MB
      const streaming = streamDatabase(db, config, {
        env, binDir: PG_BIN, signal: ctl.signal,
        onProgress: (p) => {
          if (!abortedAt && p.phase === 'copy' && p.bytesCopied > 20 * 1048576) { abortedAt = p; ctl.abort(); }
        },
      });

      // then it rejects as aborted, mid-copy
      await expect(streaming).rejects.toBeInstanceOf(StreamAbortedError);
      expect(abortedAt?.tablesDone).toBeLessThan(2);
      // and no runner session (so no open transaction) is left on either server, and no tool runs
      expect(await waitForNoRunnerSessions(source, 'big')).toEqual([]);
      expect(await waitForNoRunnerSessions(destination, 'big_abort')).toEqual([]);
      expect(childTools()).toEqual([]);
      // and the big table was not committed on the destination
      const [wide] = await destination.query<{ n: number }>('SELECT count(*)::int AS n FROM public.wide', 'big_abort');
      expect(wide.n).toBe(0);
    });

    it('fails with StreamAbortedError when aborted while pg_dump runs, and stops it', async () => {
      // given a stream that is aborted right after the snapshot export, while pg_dump dumps the schema
      await destination.query('CREATE DATABASE big_abort_early');
      const { config, db, env } = setup('big', 'big_abort_early');
      const ctl = new AbortController();
      let toolsSeen: string[] = [];
      const streaming = streamDatabase(db, config, {
        env, binDir: PG_BIN, signal: ctl.signal,
        log: (_l, msg) => {
          if (msg.startsWith('source snapshot')) setTimeout(() => { toolsSeen = childTools(); ctl.abort(); }, 30);
        },
      });

      // then it rejects as aborted; pg_dump was running and is gone, and so are the sessions
      await expect(streaming).rejects.toBeInstanceOf(StreamAbortedError);
      expect(toolsSeen.join(' ')).toMatch(/pg_dump/);
      expect(childTools()).toEqual([]);
      expect(await waitForNoRunnerSessions(source, 'big')).toEqual([]);
    });

    it('keeps the runner\'s memory bounded while streaming the table (peak RSS of a bundled runner < 100 MiB)', async () => {
      // given the stream engine bundled as the Job runs it (no TypeScript loader in the process)
      await destination.query('CREATE DATABASE big_memory');
      const { config, db, env, workDir } = setup('big', 'big_memory', { copy: { jobs: 2 } });
      const bundle = join(mkdtempSync(join(tmpdir(), 'dbm-stream-bundle-')), 'stream.js');
      buildSync({ entryPoints: [join(__dirname, '..', 'src', 'runner', 'stream', 'index.ts')], bundle: true, platform: 'node', target: 'node20', format: 'cjs', outfile: bundle, logLevel: 'error' });
      const input = join(workDir, 'probe-input.json');
      writeFileSync(input, JSON.stringify({ db, config, binDir: PG_BIN }));
      const probe = `
        const { streamDatabase } = require(${JSON.stringify(bundle)});
        const { db, config, binDir } = require(${JSON.stringify(input)});
        let peak = 0, samples = 0;
        const sample = () => { peak = Math.max(peak, process.memoryUsage().rss); samples++; };
        const baseline = process.memoryUsage().rss;
        const timer = setInterval(sample, 20);
        let copyStart, copyEnd;
        streamDatabase(db, config, { env: process.env, binDir, onProgress: (p) => {
          sample();
          if (p.phase === 'copy' && !copyStart) copyStart = Date.now();
          if (p.phase === 'post-data' && !copyEnd) copyEnd = Date.now();
        } }).then((result) => {
          clearInterval(timer);
          console.log(JSON.stringify({ baseline, peak, samples, result, copyMs: copyEnd - copyStart }));
        }, (err) => { console.error(err); process.exit(1); });`;

      // when a separate node process, started with the runner's node options, streams the database and samples its RSS every 20 ms
      const { stdout } = await run(process.execPath, [...RUNNER_NODE_OPTIONS, '-e', probe], { env: { ...env, PATH: process.env.PATH }, maxBuffer: 1 << 20 });
      const out = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
        baseline: number; peak: number; samples: number; copyMs: number;
        result: { rows: number; bytes: number; seconds: { preData: number; copy: number; postData: number } };
      };
      rmSync(bundle, { force: true });
      const mib = (n: number) => (n / 1048576).toFixed(1);
      console.log(`stream of big: ${out.result.rows} rows, ${mib(out.result.bytes)} MiB COPY payload; copy ${out.result.seconds.copy}s `
        + `(${Math.round(out.result.rows / out.result.seconds.copy)} rows/s, ${mib(out.result.bytes / out.result.seconds.copy)} MiB/s), `
        + `pre-data ${out.result.seconds.preData}s, post-data ${out.result.seconds.postData}s; RSS baseline ${mib(out.baseline)} MiB, `
        + `peak ${mib(out.peak)} MiB over ${out.samples} samples`);

      // then every row arrived and memory stayed bounded (memory is not timing: this bound is safe to assert)
      expect(out.result.rows).toBe(801_000);
      expect(out.result.bytes).toBeGreaterThan(190 * 1048576);
      expect(out.samples).toBeGreaterThan(10);
      expect(out.peak).toBeLessThan(100 * 1048576);
      expect(await tableDigests(destination, 'big_memory')).toEqual(await tableDigests(source, 'big'));
    });
  });
});
