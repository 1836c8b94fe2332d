/**
 * Progress lines with a rate and a time left (issue 13): the estimator and the lines' text and JSON fields as pure
 * functions, then runs against real PostgreSQL servers in stream and dump mode whose JSON progress lines are parsed
 * and checked field by field (no timing assertions: only what every line must hold).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { estimate, RateWindow } from '../src/runner/report/eta';
import { runMigration } from '../src/runner/migrate';
import { streamProgressLine } from '../src/runner/phases/stream';
import { dumpProgressLine, parseTableDataEntry, RestoreProgress, restoreProgressLine, RunProgress } from '../src/runner/report/progress';
import { finishSummary, formatSummaryTable } from '../src/runner/report/summary';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { captureOutput, createAppRoles, createRealisticDatabase } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('the rate estimator', () => {
  it('gives no rate until two samples span some time, then the rate over the window', () => {
    const w = new RateWindow(10_000);
    expect(w.perSecond()).toBeUndefined();
    w.add(0, 0);
    expect(w.perSecond()).toBeUndefined();
    w.add(500, 1000);
    expect(w.perSecond()).toBe(500);
  });

  it('slides: a stall shows as a falling rate, and the window keeps one sample before its start', () => {
    const w = new RateWindow(10_000);
    w.add(0, 0);
    w.add(1000, 10_000);
    w.add(1000, 15_000);
    expect(w.perSecond()).toBe(1000 / 15); // from the sample at 0 (the last one at or before the window's start)
    w.add(1000, 20_000);
    expect(w.perSecond()).toBe(0); // from the sample at 10 s
    w.reset();
    expect(w.perSecond()).toBeUndefined();
  });

  it('estimates the time left of what remains, keeps the share below 100% and gives no time left past the estimate', () => {
    expect(estimate(35, 100, 5)).toEqual({ done: 35, total: 100, perSecond: 5, percent: 35, etaSeconds: 13 });
    expect(estimate(150, 100, 5)).toEqual({ done: 150, total: 150, perSecond: 5, percent: 99, etaSeconds: undefined });
    expect(estimate(100, 100, 5).percent).toBe(99);
    expect(estimate(10, undefined, 5)).toMatchObject({ total: undefined, percent: undefined, etaSeconds: undefined });
    expect(estimate(10, 0, 5).total).toBeUndefined();
    expect(estimate(10, 100, undefined).etaSeconds).toBeUndefined();
    expect(estimate(10, 100, 0).etaSeconds).toBeUndefined();
  });
});

describe('progress lines', () => {
  it('stream copy: bytes of the expected total, rate, time left, tables; the same figures as JSON numbers', () => {
    const line = streamProgressLine({
      phase: 'copy', tablesDone: 12, tablesTotal: 40, bytesCopied: 1.2 * GiB, bytesExpected: 3.4 * GiB, rowsCopied: 52_000,
    }, 48.2 * MiB, 65);
    expect(line.msg).toBe('streaming (copy): 1.2 GiB of about 3.4 GiB (35%), 48.2 MiB/s, about 47s left; 12/40 tables, 52000 rows copied, 1m05s elapsed');
    expect(line.fields).toEqual({
      bytesDone: 1.2 * GiB, bytesTotal: 3.4 * GiB, bytesPerSecond: Math.round(48.2 * MiB), percent: 35, etaSeconds: 47,
      tablesDone: 12, tablesTotal: 40, rowsDone: 52_000, elapsedSeconds: 65,
    });
  });

  it('stream: no rate yet, past the estimate, after the copy, before anything is known', () => {
    const p = { phase: 'copy' as const, tablesDone: 0, tablesTotal: 3, bytesCopied: 0, bytesExpected: 1024, rowsCopied: 0 };
    expect(streamProgressLine(p, undefined, 1).msg).toBe('streaming (copy): 0 B of about 1.0 KiB (0%), rate not measured yet, time left unknown; 0/3 tables, 0 rows copied, 1s elapsed');
    expect(streamProgressLine(p, undefined, 1).fields).toMatchObject({ bytesPerSecond: null, etaSeconds: null });
    expect(streamProgressLine({ ...p, bytesCopied: 2048 }, 100, 1).msg).toContain('2.0 KiB of about 2.0 KiB (99%), 100 B/s, time left unknown (past the estimate);');
    const after = streamProgressLine({ ...p, phase: 'post-data', tablesDone: 3, bytesCopied: 2048 }, undefined, 9);
    expect(after.msg).toBe('streaming (post-data): 2.0 KiB copied; 3/3 tables, 0 rows copied, 9s elapsed');
    expect(after.fields).toMatchObject({ bytesDone: 2048, bytesTotal: 2048, percent: 100, etaSeconds: null });
    expect(streamProgressLine(undefined, undefined, 2)).toMatchObject({ msg: 'streaming: starting, 2s elapsed', fields: { bytesDone: 0, bytesTotal: null, etaSeconds: null } });
  });

  it('dump: bytes written of the database size, with an upper bound on the time left', () => {
    const line = dumpProgressLine(1 * GiB, 4 * GiB, 100 * MiB, 30);
    expect(line.msg).toBe('dumping: 1.0 GiB written of a 4.0 GiB database (25%; compressed dumps stay below 100%), 100.0 MiB/s, up to about 31s left, 30s elapsed');
    expect(line.fields).toEqual({ bytesDone: GiB, bytesTotal: 4 * GiB, bytesPerSecond: 100 * MiB, percent: 25, etaSeconds: 31, elapsedSeconds: 30 });
    expect(dumpProgressLine(1024, undefined, 10, 3).msg).toBe('dumping: 1.0 KiB written, 10 B/s, time left unknown, 3s elapsed');
  });

  it('restore: TOC items done of the total', () => {
    const line = restoreProgressLine(120, 340, 4.1, 65);
    expect(line.msg).toBe('restoring: 120/340 items (35%), 4.1 items/s, about 54s left, 1m05s elapsed');
    expect(line.fields).toEqual({ itemsDone: 120, itemsTotal: 340, itemsPerSecond: 4.1, percent: 35, etaSeconds: 54, elapsedSeconds: 65 });
    expect(restoreProgressLine(3, 0, undefined, 1).msg).toBe('restoring: 3/? items, rate not measured yet, time left unknown, 1s elapsed');
  });

  it('restore: bytes of the dump\'s data files while the tables load, then the items left', () => {
    const loading = restoreProgressLine(40, 340, 4.1, 65, { done: GiB, total: 4 * GiB, perSecond: 100 * MiB });
    expect(loading.msg).toBe('restoring: 1.0 GiB of 4.0 GiB table data (25%), 100.0 MiB/s, about 31s left for the data; 40/340 items, 1m05s elapsed');
    expect(loading.fields).toEqual({ bytesDone: GiB, bytesTotal: 4 * GiB, bytesPerSecond: 100 * MiB, percent: 25, etaSeconds: 31, itemsDone: 40, itemsTotal: 340, elapsedSeconds: 65 });
    const building = restoreProgressLine(300, 340, 4, 90, { done: 4 * GiB, total: 4 * GiB, perSecond: 0 });
    expect(building.msg).toBe('restoring: table data loaded (4.0 GiB); indexes and constraints: 300/340 items (88%), 4.0 items/s, about 10s left, 1m30s elapsed');
  });

  it('restore: a parallel pg_restore says when each table\'s data is finished; a serial one, when the next item starts', () => {
    const entries = [{ id: 3343, table: 'public.t1', bytes: 1000 }, { id: 3344, table: 'public.t2', bytes: 500 }];
    expect(parseTableDataEntry('3343; 0 16386 TABLE DATA public t1 postgres')).toEqual({ id: 3343, table: 'public.t1' });
    expect(parseTableDataEntry('3200; 1259 16392 INDEX public t1_g_idx postgres')).toBeUndefined();
    const parallel = new RestoreProgress(5, entries, true);
    expect(parallel.bytesTotal).toBe(1500);
    parallel.onStderrLine('pg_restore: processing data for table "public.t1"');
    parallel.onStderrLine('pg_restore: processing data for table "public.t2"');
    parallel.onStderrLine('pg_restore: finished item 3344 TABLE DATA t2');
    expect(parallel.bytesDone).toBe(500);
    parallel.onStderrLine('pg_restore: finished item 3343 TABLE DATA t1');
    expect(parallel.bytesDone).toBe(1500);
    const serial = new RestoreProgress(5, entries);
    serial.onStderrLine('pg_restore: processing data for table "public.t1"');
    expect(serial.bytesDone).toBe(0);
    serial.onStderrLine('pg_restore: processing data for table "public.t2"');
    expect(serial.bytesDone).toBe(1000);
    serial.complete();
    expect(serial.bytesDone).toBe(1500);
  });

  it('the run: databases done, their sizes weighted by each one\'s share done; nothing once one database is left', () => {
    const run = new RunProgress([{ name: 'a', bytes: 100 * MiB }, { name: 'b', bytes: 300 * MiB }, { name: 'c' }], 0);
    run.update('a', 0.5);
    const line = run.line(10_000)!;
    expect(line.msg).toBe('0/3 databases done; 50.0 MiB of about 400.0 MiB (12%), 5.0 MiB/s, about 1m10s left, 10s elapsed');
    expect(line.fields).toEqual({
      databasesDone: 0, databasesTotal: 3, bytesDone: 50 * MiB, bytesTotal: 400 * MiB, bytesPerSecond: 5 * MiB, percent: 12, etaSeconds: 70, elapsedSeconds: 10,
    });
    run.finish('a');
    run.update('a', 0); // a finished database stays done
    expect(run.line(20_000)!.fields).toMatchObject({ databasesDone: 1, bytesDone: 100 * MiB });
    run.finish('c');
    expect(run.line(30_000)).toBeUndefined();
  });

  it('the summary gives each database\'s average rate: the stream\'s as recorded, dump mode\'s over dump and restore', () => {
    const s = finishSummary({ name: 'm', dryRun: false, startedAt: new Date(0), finishedAt: new Date(60_000) }, [
      { name: 'a', status: 'migrated', dumpBytes: 300 * MiB, dumpSeconds: 10, restoreSeconds: 20 },
      { name: 'b', status: 'migrated', streamSeconds: 9, bytesCopied: 90 * MiB, bytesPerSecond: 15 * MiB },
      { name: 'c', status: 'failed', phase: 'restore', dumpBytes: 1, dumpSeconds: 1 },
    ]);
    expect(s.databases.map((d) => d.bytesPerSecond)).toEqual([10 * MiB, 15 * MiB, undefined]);
    const table = formatSummaryTable(s);
    expect(table).toMatch(/rows verified\s+rate\n/);
    expect(table).toMatch(/^a\s+migrated.*10\.0 MiB\/s$/m);
    expect(table).toMatch(/^c\s+failed.*-$/m);
    expect(formatSummaryTable({ ...s, databases: [{ name: 'x', status: 'migrated' }] })).not.toMatch(/\brate\b/);
  });
});

// Against real servers: a database with one table large enough that the copy and the dump take several 50 ms ticks.
let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];
const BULK = `CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) AS payload FROM generate_series(1, 400000) g;
  ALTER TABLE public.bulk ADD PRIMARY KEY (id)`;

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'esrc' }), startPgServer({ name: 'edst' })]);
  await Promise.all([createRealisticDatabase(source, 'eta', BULK), createRealisticDatabase(source, 'eta2'), createAppRoles(destination)]);
});

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

type Json = Record<string, unknown>;

function jsonLines(text: string): Json[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json);
}

/** Every progress line of one database and phase holds numbers, grows, and stays within its total. */
function expectProgressFields(lines: Json[], unit: 'bytes' | 'items'): void {
  let last = 0;
  for (const l of lines) {
    const done = l[`${unit}Done`];
    const total = l[`${unit}Total`];
    const rate = l[`${unit}PerSecond`];
    expect(typeof done).toBe('number');
    expect(total === null || typeof total === 'number').toBe(true);
    expect(rate === null || typeof rate === 'number').toBe(true);
    expect(l.etaSeconds === null || typeof l.etaSeconds === 'number').toBe(true);
    expect(l.percent === null || (typeof l.percent === 'number' && l.percent >= 0 && l.percent <= 100)).toBe(true);
    expect(typeof l.elapsedSeconds).toBe('number');
    expect(done as number).toBeGreaterThanOrEqual(last);
    last = done as number;
    if (typeof total === 'number') expect(done as number).toBeLessThanOrEqual(total);
    // Once there is a rate and something left of the estimate, there is a time left.
    if (typeof rate === 'number' && rate > 0 && typeof total === 'number' && total > (done as number) && l.percent !== 100) {
      expect(typeof l.etaSeconds).toBe('number');
    }
  }
}

describe('progress lines of a run (JSON)', () => {
  it('stream mode: copy lines carry bytes of the expected total, rate and time left as numbers; the summary the average rate', async () => {
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'eta', source: { database: 'eta' }, destination: { database: 'eta_streamed' } }],
      migration: { mode: 'stream', copy: { jobs: 2 }, verify: 'counts', logFormat: 'json' },
    });
    configs.push(t);
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 50 });
    expect(summary.ok).toBe(true);

    const lines = jsonLines(out.text());
    const progress = lines.filter((l) => l.phase === 'stream' && /^streaming( \(|:)/.test(l.msg as string));
    expect(progress.length).toBeGreaterThan(0);
    for (const l of progress) expect(Object.keys(l)).toEqual(expect.arrayContaining(['bytesDone', 'bytesTotal', 'bytesPerSecond', 'etaSeconds', 'tablesDone', 'tablesTotal']));
    expectProgressFields(progress, 'bytes');
    const copy = progress.filter((l) => (l.msg as string).startsWith('streaming (copy)'));
    expect(copy.length).toBeGreaterThan(0); // 400000 rows take more than one tick
    for (const l of copy) {
      expect(l.bytesTotal).toBeGreaterThan(10 * MiB); // the tables' on-disk size, from the catalog
      expect(l.tablesTotal).toBeGreaterThan(10);
    }
    expect(summary.databases[0].bytesPerSecond).toBeGreaterThan(0);
  });

  it('dump mode: dump lines (bytes of the database size), restore lines (items of the TOC) and a run line across databases', async () => {
    const t = makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'eta', source: { database: 'eta' }, destination: { database: 'eta_dumped' } },
        { name: 'eta2', source: { database: 'eta2' }, destination: { database: 'eta2_dumped' } },
      ],
      migration: { mode: 'dump', verify: 'counts', logFormat: 'json' },
    });
    configs.push(t);
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: 50 });
    expect(summary.ok).toBe(true);

    const lines = jsonLines(out.text());
    const of = (database: string, phase: string, prefix: string) =>
      lines.filter((l) => l.database === database && l.phase === phase && (l.msg as string).startsWith(prefix));
    const dumping = of('eta', 'dump', 'dumping:');
    expect(dumping.length).toBeGreaterThan(0);
    expectProgressFields(dumping, 'bytes');
    for (const l of dumping) expect(l.bytesTotal).toBeGreaterThan(10 * MiB); // the database's size from pre-flight
    const restoring = of('eta', 'restore', 'restoring:');
    expect(restoring.length).toBeGreaterThan(0);
    // while the table data loads: bytes of the dump's data files; then the indexes and constraints, in items
    const loading = restoring.filter((l) => l.bytesPerSecond !== undefined);
    const building = restoring.filter((l) => l.bytesPerSecond === undefined);
    expectProgressFields(loading, 'bytes');
    expectProgressFields(building, 'items');
    for (const l of restoring) expect(l.itemsTotal).toBeGreaterThan(10);
    for (const l of loading) expect(l.bytesTotal).toBeGreaterThan(MiB);
    expect(loading.length + building.length).toBe(restoring.length);

    const run = lines.filter((l) => l.phase === 'run' && l.database === undefined);
    expect(run.length).toBeGreaterThan(0);
    expectProgressFields(run, 'bytes');
    for (const l of run) expect(l).toMatchObject({ databasesTotal: 2, databasesDone: expect.any(Number) });

    for (const d of summary.databases) expect(d.bytesPerSecond).toBeGreaterThan(0);
  });
});
