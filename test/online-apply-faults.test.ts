/**
 * Online mode when the subscription's apply worker fails, against real PostgreSQL 15 servers: a row written on the
 * destination that a replicated insert conflicts with, and a column added on the source only. A warning names the
 * database, the subscription, the error count, the usual causes and where the error text is, within a second or
 * two; once the operator fixes the destination, the log says apply moves again and the cutover succeeds, every
 * table equal to the fenced source. With a short migration.online.applyStallSeconds the database fails with the
 * same explanation and its replication objects are removed.
 */
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { controlDir, requestCutover } from '../src/runner/online/control';
import { replicationName } from '../src/runner/online/names';
import type { RunSummary } from '../src/runner/report/summary';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { expectSameData, jsonLines, replicationObjects, until } from './support/replication-faults';
import { captureOutput, createAppRoles, createRealisticDatabase, type Captured } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

const TEST_TIMEOUT = 240_000;
const INTERVAL_MS = 3000;

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([
    startPgServer({ name: 'oaf-src', settings: { wal_level: 'logical' } }),
    startPgServer({ name: 'oaf-dst' }),
  ]);
  await createRealisticDatabase(source, 'shop');
  await createAppRoles(destination);
}, 120_000);

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

interface Running {
  readonly t: TestRuntimeConfig;
  readonly name: string;
  readonly out: Captured;
  readonly run: Promise<RunSummary>;
}

/** An online migration (cutover: manual, JSON log lines) of a fresh copy of shop, caught up. */
async function replicating(label: string, online: { applyStallSeconds?: number } = {}): Promise<Running> {
  await source.query(`CREATE DATABASE shop_${label} TEMPLATE shop`);
  const t = makeRuntimeConfig({
    source, destination,
    databases: [{ name: label, source: { database: `shop_${label}` }, destination: { database: `shop_${label}_copy` } }],
    migration: { mode: 'online', logFormat: 'json', restore: { noOwner: false }, online },
  });
  configs.push(t);
  const out = captureOutput();
  const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: INTERVAL_MS });
  await Promise.race([out.waitFor(new RegExp(`"database":"${label}".*caught up`), 120_000), run.then(() => { throw new Error(out.text()); })]);
  return { t, name: replicationName(t.config.name, label), out, run };
}

async function applyErrorCount(db: string, name: string): Promise<number> {
  const [row] = await destination.query<{ n: number }>(`SELECT apply_error_count::int AS n FROM pg_stat_subscription_stats WHERE subname = '${name}'`, db);
  return row?.n ?? 0;
}

/** The first apply error's time (polled on the destination) and the warning's, for the report; asserts nothing about them. */
async function errorThenWarning(r: Running, db: string): Promise<{ warning: Record<string, unknown>; afterMs: number }> {
  let firstError = 0;
  const polling = until('an apply error', async () => {
    if (await applyErrorCount(db, r.name) > 0) firstError = Date.now();
    return firstError > 0;
  });
  const warning = JSON.parse(await r.out.waitFor(/"fault":"apply-stalled"/, 60_000)) as Record<string, unknown>;
  const warnedAt = Date.now();
  await polling;
  return { warning, afterMs: warnedAt - firstError };
}

function expectStallWarning(w: Record<string, unknown>, label: string, name: string): void {
  expect(w).toMatchObject({ level: 'warn', database: label, phase: 'replicate' });
  expect(w.applyErrorCount).toBeGreaterThanOrEqual(1);
  const msg = String(w.msg);
  expect(msg).toMatch(new RegExp(`replication of database ${label} is stuck: its apply worker failed \\d+ time\\(s\\) \\(apply_error_count \\d+\\)`));
  expect(msg).toContain(`subscription ${name} has applied nothing for`);
  expect(msg).toMatch(/a row written on the destination .*DDL run on the source only .*privilege/);
  expect(msg).toContain(`destination server's log, on the lines of the "logical replication apply worker" for subscription "${name}"`);
  expect(msg).toMatch(/keeps waiting for up to migration\.online\.applyStallSeconds/);
}

/** The operator's cutover command; resolves with its exit code once the run has ended too. */
async function cutOver(r: Running): Promise<{ code: number; summary: RunSummary }> {
  const code = await requestCutover({ dir: controlDir(r.t.config.paths.logs), out: new PassThrough().resume(), pollMs: 100 });
  return { code, summary: await r.run };
}

describe('online mode: the subscription\'s apply worker fails', () => {
  it('warns when a row written on the destination conflicts, says when apply moves again once it is deleted, and cuts over to an identical copy', async () => {
    // given a database replicating, and a row written on the destination
    const r = await replicating('conflict');
    await destination.query('INSERT INTO public."café" (id, "名前", boisson, prix) VALUES (900001, \'written on the destination\', \'eau\', 1)', 'shop_conflict_copy');

    // when the source inserts the same key
    await source.query('INSERT INTO public."café" (id, "名前", boisson, prix) VALUES (900001, \'from the source\', \'thé\', 2)', 'shop_conflict');

    // then a warning names the database, the subscription, the error count, the usual causes and where the error is
    const { warning, afterMs } = await errorThenWarning(r, 'shop_conflict_copy');
    expectStallWarning(warning, 'conflict', r.name);
    // and the database is not ready to cut over meanwhile
    expect(await replicationObjects(source, destination, 'shop_conflict', r.name)).toEqual(['slot', 'publication', 'subscription']);

    // when the operator deletes the row on the destination
    await destination.query('DELETE FROM public."café" WHERE id = 900001', 'shop_conflict_copy');

    // then the log says apply moves again, and the cutover succeeds with every table equal to the fenced source
    const resumed = JSON.parse(await r.out.waitFor(/"fault":"apply-resumed"/, 60_000)) as Record<string, unknown>;
    expect(resumed).toMatchObject({ level: 'ok', database: 'conflict' });
    expect(String(resumed.msg)).toMatch(new RegExp(`apply of subscription ${r.name} moves again after \\d+s`));
    const { code, summary } = await cutOver(r);
    expect(code, r.out.text()).toBe(0);
    expect(summary.databases[0]).toMatchObject({ name: 'conflict', status: 'migrated' });
    await expectSameData(source, 'shop_conflict', destination, 'shop_conflict_copy');
    const [row] = await destination.query<{ n: string }>('SELECT "名前" AS n FROM public."café" WHERE id = 900001', 'shop_conflict_copy');
    expect(row.n).toBe('from the source');
    expect(await replicationObjects(source, destination, 'shop_conflict', r.name)).toEqual([]);
    console.log(`[measure] first apply error (conflicting row) -> warning: ${afterMs} ms (interval ${INTERVAL_MS} ms)`);
  }, TEST_TIMEOUT);

  it('warns when a column is added on the source only, and cuts over once the same DDL ran on the destination', async () => {
    // given a database replicating
    const r = await replicating('ddl');

    // when a column is added on the source only, and a row uses it
    await source.query('ALTER TABLE public."café" ADD COLUMN note text', 'shop_ddl');
    await source.query('INSERT INTO public."café" ("名前", boisson, prix, note) VALUES (\'new\', \'thé\', 2, \'with a note\')', 'shop_ddl');

    // then the same warning
    const { warning, afterMs } = await errorThenWarning(r, 'shop_ddl_copy');
    expectStallWarning(warning, 'ddl', r.name);

    // when the operator runs the same DDL on the destination
    await destination.query('ALTER TABLE public."café" ADD COLUMN note text', 'shop_ddl_copy');

    // then apply moves again, and the cutover succeeds with every table equal to the fenced source
    await r.out.waitFor(/"fault":"apply-resumed"/, 60_000);
    const { code, summary } = await cutOver(r);
    expect(code, r.out.text()).toBe(0);
    expect(summary.databases[0]).toMatchObject({ name: 'ddl', status: 'migrated' });
    await expectSameData(source, 'shop_ddl', destination, 'shop_ddl_copy');
    expect(await replicationObjects(source, destination, 'shop_ddl', r.name)).toEqual([]);
    console.log(`[measure] first apply error (column added on the source only) -> warning: ${afterMs} ms (interval ${INTERVAL_MS} ms)`);
  }, TEST_TIMEOUT);

  it('with a short applyStallSeconds fails the database with the explanation and removes its replication objects', async () => {
    // given a database replicating with applyStallSeconds: 6, and a conflicting row nobody removes
    const r = await replicating('stall', { applyStallSeconds: 6 });
    await destination.query('INSERT INTO public."café" (id, "名前", boisson, prix) VALUES (900002, \'in the way\', \'eau\', 1)', 'shop_stall_copy');
    await source.query('INSERT INTO public."café" (id, "名前", boisson, prix) VALUES (900002, \'blocked\', \'thé\', 2)', 'shop_stall');

    // when the run goes on by itself
    const summary = await r.run;

    // then the database failed with the explanation and the fault, after the warning
    const db = summary.databases[0];
    expect(db, r.out.text()).toMatchObject({ name: 'stall', status: 'failed', phase: 'replicate' });
    expect(db.error).toMatch(/replication of database stall is stuck: .*longer than migration\.online\.applyStallSeconds \(6s\): replication stopped and its objects are removed/);
    expect(db.error).toMatch(/a row written on the destination .*destination server's log/);
    expect(db.fault).toMatchObject({ kind: 'apply-stall-exceeded' });
    expect(db.fault!.applyErrorCount).toBeGreaterThanOrEqual(1);
    const lines = jsonLines(r.out.text());
    const warned = lines.findIndex((l) => l.fault === 'apply-stalled');
    const failed = lines.findIndex((l) => l.level === 'error' && l.fault === 'apply-stall-exceeded');
    expect(warned).toBeGreaterThanOrEqual(0);
    expect(failed).toBeGreaterThan(warned);
    // and nothing of its replication is left; the source was never fenced
    expect(await replicationObjects(source, destination, 'shop_stall', r.name)).toEqual([]);
    const [{ ro }] = await source.query<{ ro: string }>("SELECT current_setting('default_transaction_read_only') AS ro", 'shop_stall');
    expect(ro).toBe('off');
  }, TEST_TIMEOUT);
});
