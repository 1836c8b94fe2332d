/**
 * Online mode when open transactions hold up the replication slot's creation, against real PostgreSQL 15 servers
 * (sources with wal_level = logical and max_prepared_transactions > 0): a session idle in a transaction on
 * *another* database of the source server, and a prepared transaction. Pre-flight names the prepared transaction;
 * while the slot waits the log names each blocker (pid, gid) with the statement that ends it; once they end the
 * migration goes on and cuts over to an identical copy. With a short migration.online.slotWaitSeconds the database
 * fails with the same list, nothing of its replication is left, and a database on another server migrates.
 */
import type { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { preflight } from '../src/runner/checks/preflight/checks';
import { replicationName } from '../src/runner/online/names';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { expectSameData, idleInTransaction, jsonLines, preparedTransaction, replicationObjects, until } from './support/replication-faults';
import { captureOutput, createAppRoles, createRealisticDatabase } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

const TEST_TIMEOUT = 240_000;
/** Progress interval of these runs: every blocker must be named within it. */
const INTERVAL_MS = 5000;

let source: PgServer;
let otherSource: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];
const held: Client[] = [];

beforeAll(async () => {
  [source, otherSource, destination] = await Promise.all([
    startPgServer({ name: 'osb-src', settings: { wal_level: 'logical', max_prepared_transactions: '5' } }),
    startPgServer({ name: 'osb-src2', settings: { wal_level: 'logical' } }),
    startPgServer({ name: 'osb-dst' }),
  ]);
  await createRealisticDatabase(source, 'shop');
  await createRealisticDatabase(otherSource, 'shop');
  // Another database of the source server, where the blocking transactions are.
  await source.query('CREATE DATABASE otherdb');
  await source.query('CREATE TABLE public.scratch (id serial PRIMARY KEY, note text)', 'otherdb');
  await createAppRoles(destination);
}, 120_000);

afterAll(async () => {
  for (const c of held) await c.end().catch(() => undefined);
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), otherSource?.destroy(), destination?.destroy()]);
});

/** The ages the runner's waiting line gives ("has waited 1s"), in seconds. */
const waitedSeconds = (line: string) => Number(/has waited (\d+)s/.exec(line)?.[1] ?? NaN);

describe('online mode: transactions that block the replication slot', () => {
  it('names the idle-in-transaction session and the prepared transaction while the slot waits, and cuts over once they end', async () => {
    // given, on another database of the source server, a session idle in a transaction that wrote a row and a prepared transaction
    await source.query('CREATE DATABASE shop_blk TEMPLATE shop');
    const pid = await idleInTransaction(source, 'otherdb', held);
    await preparedTransaction(source, 'otherdb', 'dbm_forgotten_gid');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'blk', source: { database: 'shop_blk' }, destination: { database: 'shop_blk_copy' } }],
      migration: { mode: 'online', restore: { noOwner: false }, online: { cutover: 'auto' } },
    });
    configs.push(t);
    const name = replicationName(t.config.name, 'blk');

    // when the online migration runs
    const out = captureOutput();
    const started = Date.now();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: INTERVAL_MS });

    // then pre-flight names the prepared transaction with the statement that ends it, in its database
    await out.waitFor(/\[blk\] \[preflight\] .*prepared transaction 'dbm_forgotten_gid'/, 60_000);
    expect(out.text()).toMatch(/ROLLBACK PREPARED 'dbm_forgotten_gid';\s+-- in database "otherdb"/);
    // and while the slot waits, a line names both blockers within one interval, with what ends each and whose call it is
    const first = await out.waitFor(/\[blk\] \[replicate\] creating replication slot \S+ has waited/, 60_000);
    const namedAfterMs = Date.now() - started;
    expect(first).toContain(`session pid ${pid} (user postgres, database otherdb, application forgotten-pool, client 127.0.0.1, idle in transaction, transaction open`);
    expect(first).toContain(`end it with SELECT pg_terminate_backend(${pid})`);
    expect(first).toContain('prepared transaction \'dbm_forgotten_gid\' (database otherdb, owner postgres');
    expect(first).toContain('end it with ROLLBACK PREPARED \'dbm_forgotten_gid\' in database "otherdb"');
    expect(first).toMatch(/Ending them is your call/);
    expect(waitedSeconds(first)).toBeLessThanOrEqual(INTERVAL_MS / 1000);
    expect(out.text()).not.toMatch(/publication and logical replication slot \S+ created/);

    // when the operator ends the session
    await source.query(`SELECT pg_terminate_backend(${pid})`);

    // then the next line names only the prepared transaction
    const second = await out.waitFor(/has waited \d+s: .*Waiting for 1: prepared transaction 'dbm_forgotten_gid'/, 60_000);
    expect(second).not.toContain(`pid ${pid}`);

    // when the operator rolls the prepared transaction back, in its database
    await source.query('ROLLBACK PREPARED \'dbm_forgotten_gid\'', 'otherdb');
    const summary = await run;

    // then the slot was created after the lines, the migration went on and cut over to an identical copy, and nothing is left
    const text = out.text();
    expect(summary.databases[0], text).toMatchObject({ name: 'blk', status: 'migrated' });
    expect(text.indexOf('has waited')).toBeLessThan(text.search(/publication and logical replication slot \S+ created/));
    expect(text).toMatch(/\[blk\] \[cutover\] cut over: write pause/);
    await expectSameData(source, 'shop_blk', destination, 'shop_blk_copy');
    expect(await replicationObjects(source, destination, 'shop_blk', name)).toEqual([]);
    console.log(`[measure] blocking transactions named ${namedAfterMs} ms after the run started, after the slot had waited ${waitedSeconds(first)}s (interval ${INTERVAL_MS} ms)`);
  }, TEST_TIMEOUT);

  it('with a short slotWaitSeconds fails that database with the list, leaves no replication object, and another database migrates', async () => {
    // given the same two blockers, and two databases: one on that server, one on another server
    await source.query('CREATE DATABASE shop_bound TEMPLATE shop');
    const pid = await idleInTransaction(source, 'otherdb', held);
    await preparedTransaction(source, 'otherdb', 'dbm_bound_gid');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'bound', source: { database: 'shop_bound' }, destination: { database: 'shop_bound_copy' } },
        { name: 'free', source: { database: 'shop', host: otherSource.host, port: otherSource.port, password: otherSource.superPassword }, destination: { database: 'shop_free_copy' } },
      ],
      migration: { mode: 'online', logFormat: 'json', restore: { noOwner: false }, online: { cutover: 'auto', slotWaitSeconds: 4 } },
    });
    configs.push(t);
    const name = replicationName(t.config.name, 'bound');

    // when the online migration runs
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, progressIntervalMs: INTERVAL_MS });
    await source.query(`SELECT pg_terminate_backend(${pid})`);
    await source.query('ROLLBACK PREPARED \'dbm_bound_gid\'', 'otherdb');

    // then the blocked database failed in the replicate phase, once, naming both blockers and the setting
    const lines = jsonLines(out.text());
    const bound = summary.databases.find((d) => d.name === 'bound')!;
    expect(bound, out.text()).toMatchObject({ status: 'failed', phase: 'replicate' });
    expect(bound.error).toMatch(/was not created within migration\.online\.slotWaitSeconds \(4s\)/);
    expect(bound.error).toContain(`session pid ${pid}`);
    expect(bound.error).toContain('prepared transaction \'dbm_bound_gid\'');
    expect(bound.fault).toEqual({ kind: 'slot-wait-exceeded', blockingPids: [pid], preparedGids: ['dbm_bound_gid'] });
    expect(lines.filter((l) => l.database === 'bound' && /permanent failure \(slot-wait-exceeded\) on attempt 1\//.test(String(l.msg)))).toHaveLength(1);
    // and the JSON lines carry what a collector alerts on: the kind of fault, the blocking pids and gids
    const blocked = lines.find((l) => l.database === 'bound' && l.fault === 'slot-blocked');
    expect(blocked).toMatchObject({ level: 'warn', phase: 'replicate', blockingPids: String(pid), preparedGids: 'dbm_bound_gid' });
    const failed = lines.find((l) => l.database === 'bound' && l.level === 'error' && l.fault === 'slot-wait-exceeded');
    expect(failed).toMatchObject({ blockingPids: String(pid), preparedGids: 'dbm_bound_gid' });
    // and what it created was removed: no slot, no publication, no subscription
    expect(lines.some((l) => l.database === 'bound' && /removed what this attempt created: publication/.test(String(l.msg)))).toBe(true);
    expect(await replicationObjects(source, destination, 'shop_bound', name)).toEqual([]);
    const [{ n }] = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_replication_slots');
    expect(n).toBe(0);
    // and the database on the other server went on and migrated
    expect(summary.databases.find((d) => d.name === 'free')).toMatchObject({ status: 'migrated' });
    await expectSameData(otherSource, 'shop', destination, 'shop_free_copy');
  }, TEST_TIMEOUT);

  it('pre-flight names a session whose transaction has been open longer than a minute, with the statement that ends it, and not a younger one', async () => {
    // given, on the other source server, a session idle in a transaction for over a minute and one opened just now
    // (its shop database was cut over, so read-only, by the test before)
    await otherSource.query('CREATE DATABASE pfdb');
    await otherSource.query('CREATE TABLE public.scratch (id serial PRIMARY KEY, note text)', 'pfdb');
    const old = await idleInTransaction(otherSource, 'pfdb', held);
    await until('a transaction open for over a minute', async () => {
      const [{ age }] = await otherSource.query<{ age: number }>(`SELECT extract(epoch FROM now() - xact_start)::float8 AS age FROM pg_stat_activity WHERE pid = ${old}`);
      return age > 61;
    }, 90_000);
    const young = await idleInTransaction(otherSource, 'pfdb', held);
    const t = makeRuntimeConfig({
      source: otherSource, destination,
      databases: [{ name: 'pf', source: { database: 'pfdb' }, destination: { database: 'pfdb_copy' } }],
      migration: { mode: 'online' },
    });
    configs.push(t);

    // when pre-flight runs
    const report = await preflight(t.config, t.env, { binDir: PG_BIN });

    // then one warning names the old session (not the young one) and gives the statement that ends it; it is not an error
    const open = report.problems.filter((p) => p.check === 'open-transactions');
    expect(open).toHaveLength(1);
    expect(open[0]).toMatchObject({ severity: 'warning', server: 'source', fix: `SELECT pg_terminate_backend(${old});` });
    expect(open[0].message).toMatch(/^1 session with a transaction open longer than a minute on the source server: creating the replication slot waits until they end/);
    expect(open[0].message).toContain(`session pid ${old} (user postgres, database pfdb, application forgotten-pool`);
    expect(open[0].message).not.toContain(`pid ${young}`);
    expect(report.ok).toBe(true);
  }, TEST_TIMEOUT);
});
