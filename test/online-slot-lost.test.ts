/**
 * Online mode when the source invalidates the replication slot, against real PostgreSQL 15 servers: the source keeps
 * at most max_slot_wal_keep_size (32MB) of WAL for a slot; the destination is stopped during catch-up while the
 * source writes past that, the slot is reported unreserved, and a checkpoint invalidates it (wal_status lost). The
 * database fails at once, while the destination is still down, naming the invalidated slot, the cause and the fix;
 * slot and publication are removed at once, the subscription as soon as the destination is back; nothing is left.
 * A slot dropped by someone else fails the database the same way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { replicationName } from '../src/runner/online/names';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { jsonLines, replicationObjects, until } from './support/replication-faults';
import { captureOutput, createAppRoles, createRealisticDatabase } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

const TEST_TIMEOUT = 240_000;
const INTERVAL_MS = 2000;

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([
    // A slot may hold back 32MB (two 16MB segments) of WAL; max_wal_size is large so that only the test's CHECKPOINT invalidates it.
    startPgServer({ name: 'osl-src', settings: { wal_level: 'logical', max_slot_wal_keep_size: '32MB', min_wal_size: '32MB', max_wal_size: '1GB' } }),
    startPgServer({ name: 'osl-dst' }),
  ]);
  await createRealisticDatabase(source, 'shop');
  await source.query('CREATE TABLE public.filler (id serial PRIMARY KEY, at timestamptz DEFAULT now())');
  await source.query('CREATE TABLE public.filler_wide (v text)');
  await createAppRoles(destination);
}, 120_000);

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

/** Moves the source's WAL on by `segments` 16MB segments (a row in another database, then a switch, each time). */
async function writeWalSegments(segments: number): Promise<void> {
  for (let i = 0; i < segments; i++) {
    await source.query('INSERT INTO public.filler DEFAULT VALUES');
    await source.query('SELECT pg_switch_wal()');
  }
}

/** Writes about `bytes` of WAL (rows of 1000 bytes, each a little more in WAL) in another database. */
async function writeWalBytes(bytes: number): Promise<void> {
  await source.query(`INSERT INTO public.filler_wide SELECT repeat('w', 1000) FROM generate_series(1, ${Math.ceil(bytes / 1000)})`);
}

async function safeWalSize(name: string): Promise<number> {
  const [row] = await source.query<{ s: number }>(`SELECT safe_wal_size::float8 AS s FROM pg_replication_slots WHERE slot_name = '${name}'`);
  return row.s;
}

async function slotStatus(name: string): Promise<string | undefined> {
  const [row] = await source.query<{ wal_status: string }>(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = '${name}'`);
  return row?.wal_status;
}

describe('online mode: the slot invalidated by max_slot_wal_keep_size', () => {
  it('fails the database as soon as the slot is lost, while the destination is down, and leaves nothing on either server', async () => {
    // given an online migration (JSON log lines) that has copied and caught up
    await source.query('CREATE DATABASE shop_lost TEMPLATE shop');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'lost', source: { database: 'shop_lost' }, destination: { database: 'shop_lost_copy' } }],
      migration: { mode: 'online', logFormat: 'json', restore: { noOwner: false }, retries: { attempts: 1 } },
    });
    configs.push(t);
    const name = replicationName(t.config.name, 'lost');
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: INTERVAL_MS });
    await out.waitFor(/"database":"lost".*caught up/, 120_000);
    expect(await slotStatus(name)).toBe('reserved');

    // when the destination goes down and the source writes until the slot may fall only about 4MB more behind
    await destination.stop('fast');
    await writeWalSegments(2);
    await writeWalBytes(await safeWalSize(name) - 4 * 1048576);

    // then the log warns that the slot's WAL runs low, with how long it lasts at the current WAL rate
    expect(await slotStatus(name)).toBe('reserved');
    const low = JSON.parse(await out.waitFor(/"fault":"slot-wal-low"/, 30_000)) as Record<string, unknown>;
    expect(low).toMatchObject({ level: 'warn', database: 'lost', phase: 'replicate', walStatus: 'reserved' });
    expect(low.safeWalSize).toBeGreaterThan(0);
    expect(low.safeWalSize).toBeLessThan(8 * 1048576);
    expect(String(low.msg)).toMatch(new RegExp(`replication slot ${name} may fall only [\\d.]+ MiB more behind before the source invalidates it `
      + '\\(max_slot_wal_keep_size 32\\.0 MiB, wal_status reserved\\); at the source\'s current WAL rate of [\\d.]+ [KM]iB/s that lasts about \\d+s'));

    // when the source writes past what it keeps for the slot
    await writeWalSegments(1);

    // then the slot is past what the source keeps for it, and the log warns, with wal_status and safe_wal_size as fields
    expect(await slotStatus(name)).toBe('unreserved');
    const unreserved = JSON.parse(await out.waitFor(/"fault":"slot-unreserved"/, 30_000)) as Record<string, unknown>;
    expect(unreserved).toMatchObject({ level: 'warn', database: 'lost', phase: 'replicate', walStatus: 'unreserved' });
    expect(unreserved.safeWalSize).toBeLessThanOrEqual(0);
    expect(String(unreserved.msg)).toMatch(/next checkpoint removes WAL it still needs and invalidates it/);

    // when a checkpoint invalidates it
    await source.query('CHECKPOINT');
    const lostAt = Date.now();
    expect(await slotStatus(name)).toBe('lost');

    // then, with the destination still down, the database's failure is logged naming the invalidated slot
    const lostLine = JSON.parse(await out.waitFor(/"level":"error".*"fault":"slot-lost"/, 30_000)) as Record<string, unknown>;
    const reportedAfterMs = Date.now() - lostAt;
    expect(lostLine).toMatchObject({ database: 'lost', phase: 'replicate', walStatus: 'lost', safeWalSize: null });
    expect(String(lostLine.msg)).toContain(`replication slot ${name} was invalidated by the source (wal_status lost)`);
    expect(String(lostLine.msg)).toMatch(/max_slot_wal_keep_size .*Run again to copy the database again, after raising max_slot_wal_keep_size/);
    // and slot and publication are removed at once, the subscription waits for the destination
    await out.waitFor(/removed replication slot \S+ \(source\), publication \S+ \(source\); subscription \S+ on the destination waits for its server to answer/, 30_000);
    expect(await replicationObjects(source, destination, 'shop_lost', name).catch(() => 'destination down')).toBe('destination down');
    const [{ n }] = await source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = '${name}'`);
    expect(n).toBe(0);

    // when the destination is back
    await destination.start();
    const summary = await run;

    // then the run failed for that database with the explanation and the fault in the summary
    const db = summary.databases[0];
    expect(db, out.text()).toMatchObject({ name: 'lost', status: 'failed', phase: 'replicate' });
    expect(db.fault).toEqual({ kind: 'slot-lost', walStatus: 'lost', safeWalSize: null });
    expect(db.error).toMatch(/was invalidated by the source \(wal_status lost\): the source removed WAL the slot still needed/);
    // and nothing of the migration's replication is left on either server
    expect(await replicationObjects(source, destination, 'shop_lost', name)).toEqual([]);
    const removed = jsonLines(out.text()).find((l) => /^removed the replication objects: /.test(String(l.msg)));
    expect(String(removed?.msg)).toMatch(/replication slot \S+ \(source\), publication \S+ \(source\), subscription \S+ \(destination\)/);
    // and the source was never fenced
    const [{ ro }] = await source.query<{ ro: string }>("SELECT current_setting('default_transaction_read_only') AS ro", 'shop_lost');
    expect(ro).toBe('off');
    console.log(`[measure] slot invalidated (CHECKPOINT returned) -> database failure logged: ${reportedAfterMs} ms (interval ${INTERVAL_MS} ms, destination down)`);
  }, TEST_TIMEOUT);

  it('fails the database at once when its slot is dropped by someone else, and removes the rest', async () => {
    // given an online migration that has copied and caught up
    await source.query('CREATE DATABASE shop_gone TEMPLATE shop');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'gone', source: { database: 'shop_gone' }, destination: { database: 'shop_gone_copy' } }],
      migration: { mode: 'online', logFormat: 'json', restore: { noOwner: false }, retries: { attempts: 1 } },
    });
    configs.push(t);
    const name = replicationName(t.config.name, 'gone');
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: INTERVAL_MS });
    await out.waitFor(/"database":"gone".*caught up/, 120_000);

    // when someone disables the subscription and drops the slot by hand
    await destination.query(`ALTER SUBSCRIPTION ${name} DISABLE`, 'shop_gone_copy');
    await until('the slot is released', async () => (await source.query<{ a: boolean }>(`SELECT active AS a FROM pg_replication_slots WHERE slot_name = '${name}'`))[0]?.a === false);
    await source.query(`SELECT pg_drop_replication_slot('${name}')`);
    const summary = await run;

    // then the database failed saying the slot is gone, and the subscription and publication were removed too
    const db = summary.databases[0];
    expect(db, out.text()).toMatchObject({ name: 'gone', status: 'failed', phase: 'replicate', fault: { kind: 'slot-missing' } });
    expect(db.error).toContain(`replication slot ${name} no longer exists on the source`);
    expect(jsonLines(out.text()).some((l) => l.level === 'error' && l.fault === 'slot-missing')).toBe(true);
    expect(await replicationObjects(source, destination, 'shop_gone', name)).toEqual([]);
  }, TEST_TIMEOUT);
});
