/**
 * Verification against real servers: the realistic schema is dumped from the source with pg_dump and restored
 * with pg_restore (both driven by libpqEnv), then the copy is compared, intact and with one thing changed.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { libpqEnv } from '../src/runner/postgres/connection';
import { tableChecksums } from '../src/runner/checks/checksum';
import { connect } from '../src/runner/postgres/connection';
import { verifyDatabase } from '../src/runner/checks/verification';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

const run = promisify(execFile);
const SCHEMA_SQL = join(__dirname, 'support', 'realistic-schema.sql');

let source: PgServer;
let destination: PgServer;
let dumpDir: string;
const cleanups: Array<() => void> = [];

/** Runtime config comparing source "app" with destination `database`. */
function setup(database: string, migration: Parameters<typeof makeRuntimeConfig>[0]['migration'] = {}): TestRuntimeConfig {
  const t = makeRuntimeConfig({
    source, destination, migration,
    databases: [{ name: 'app', source: { database: 'app' }, destination: { database } }],
  });
  cleanups.push(t.cleanup);
  return t;
}

/** A fresh copy of the source in a new destination database, restored from the dump made once. */
async function restoreCopy(database: string): Promise<TestRuntimeConfig> {
  await destination.query(`CREATE DATABASE "${database}"`);
  const t = setup(database);
  const env = { ...process.env, ...libpqEnv(t.config.databases[0].destination, t.env, { readOnly: false, connectTimeoutSeconds: 10 }) };
  await run(join(PG_BIN, 'pg_restore'), ['--jobs=2', '--exit-on-error', `--dbname=${database}`, dumpDir], { env });
  return t;
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'ver-src' }), startPgServer({ name: 'ver-dst' })]);
  await source.query('CREATE DATABASE app');
  await source.psqlFile(SCHEMA_SQL, 'app');
  await destination.query('CREATE ROLE app_owner; CREATE ROLE app_reader');
  dumpDir = join(mkdtempSync(join(tmpdir(), 'dbm-verify-dump-')), 'app');
  cleanups.push(() => rmSync(join(dumpDir, '..'), { recursive: true, force: true }));
  const t = setup('app');
  const env = { ...process.env, ...libpqEnv(t.config.databases[0].source, t.env, { readOnly: true, connectTimeoutSeconds: 10 }) };
  await run(join(PG_BIN, 'pg_dump'), ['--format=directory', '--jobs=2', `--file=${dumpDir}`], { env });
});

afterAll(async () => {
  for (const c of cleanups) c();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

describe('verifyDatabase', () => {
  it('verifies an identical copy: every leaf table, materialized view and sequence', async () => {
    const t = await restoreCopy('identical');
    const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(result.differences).toEqual([]);
    expect(result.ok).toBe(true);
    // 10 tables (6 plain + the 4 leaf partitions of audit.events; the partitioned audit.events and
    // audit.events_2024 are not counted themselves) + 2 materialized views.
    expect(result.tables).toBe(12);
    // Inserted rows (audit.events once, through its leaves) + 2000 rows of sales.customer_revenue.
    expect(result.rowsVerified).toBe(2000 + 40 + 500 + 5000 + 15000 + 3 + 3000 + 2000);
    expect(result.sequences).toBe(6);
    // Same answer on a single connection per side.
    expect(await verifyDatabase(t.config.databases[0], t.config, t.env, { concurrency: 1 })).toEqual(result);
  });

  it('reports a deleted destination row in the table (and leaf partition) it was deleted from', async () => {
    const t = await restoreCopy('deleted_row');
    await destination.query(`
      DELETE FROM sales.order_items WHERE order_id = 1 AND line = 1;
      DELETE FROM audit.events WHERE id = (SELECT min(id) FROM audit.events_2024_info);`, 'deleted_row');
    const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(result.ok).toBe(false);
    const info = (await source.query<{ n: string }>('SELECT count(*)::text AS n FROM audit.events_2024_info', 'app'))[0].n;
    expect(result.differences).toEqual([
      {
        schema: 'audit', object: 'events_2024_info', kind: 'rows', source: Number(info), destination: Number(info) - 1,
        message: `table audit.events_2024_info: ${info} rows in the source, ${Number(info) - 1} in the destination (-1)`,
      },
      {
        schema: 'sales', object: 'order_items', kind: 'rows', source: 15000, destination: 14999,
        message: 'table sales.order_items: 15000 rows in the source, 14999 in the destination (-1)',
      },
    ]);
    expect(result.rowsVerified).toBe(2000 + 40 + 500 + 5000 + 3 + 3000 + 2000 - Number(info));
  });

  it('reports a changed sequence with both states', async () => {
    const t = await restoreCopy('changed_sequence');
    await destination.query(`SELECT setval('sales.invoice_number_seq', 5, false)`, 'changed_sequence');
    const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(result.differences).toEqual([{
      schema: 'sales', object: 'invoice_number_seq', kind: 'sequence',
      source: '10700 (is_called true)', destination: '5 (is_called false)',
      message: 'sequence sales.invoice_number_seq: last_value 10700 (is_called true) in the source, 5 (is_called false) in the destination',
    }]);
  });

  it('reports a missing table (non-ASCII schema)', async () => {
    const t = await restoreCopy('missing_table');
    await destination.query('DROP TABLE "Bücher".titel', 'missing_table');
    const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(result.differences).toEqual([{
      schema: 'Bücher', object: 'table titel', kind: 'inventory', source: 'present', destination: 'missing',
      message: 'Table "Bücher".titel is missing on the destination',
    }]);
    expect(result.tables).toBe(11);
  });

  it('compares the populated state of a materialized view that holds no data on the source', async () => {
    const t = await restoreCopy('matview');
    await destination.query('REFRESH MATERIALIZED VIEW inventory.stock_snapshot', 'matview');
    const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(result.differences).toEqual([{
      schema: 'inventory', object: 'materialized view stock_snapshot', kind: 'inventory', source: 'populated: no', destination: 'populated: yes',
      message: 'Materialized view inventory.stock_snapshot: populated is no on the source but yes on the destination',
    }]);
  });

  it('looks only at the dumped schemas', async () => {
    const copy = await restoreCopy('only_sales');
    await destination.query('DROP TABLE "Bücher".titel', 'only_sales');
    const t = setup('only_sales', { dump: { schemas: ['sales'] } });
    const result = await verifyDatabase(t.config.databases[0], t.config, copy.env);
    expect(result).toMatchObject({ ok: true, tables: 3, rowsVerified: 5000 + 15000 + 2000, sequences: 2, checksummed: 0, differences: [] });
    expect(result.objects).toBeGreaterThan(10);
  });

  it('stops at timeouts.verify when a count cannot finish', async () => {
    const copy = await restoreCopy('locked');
    const t = setup('locked', { timeouts: { verify: 1 } });
    // An open transaction holding an exclusive lock makes the destination's count wait.
    const { Client } = await import('pg');
    const locker = new Client({ host: destination.host, port: destination.port, user: 'postgres', password: destination.superPassword, database: 'locked' });
    await locker.connect();
    try {
      await locker.query('BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE');
      const started = Date.now();
      await expect(verifyDatabase(t.config.databases[0], t.config, copy.env)).rejects.toThrow(
        `verification of app (postgres@127.0.0.1:${destination.port}/locked) did not finish within timeouts.verify (1s)`);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await locker.end();
    }
  });

  it('when aborted, cancels its queries: no count waiting on a lock stays on the server', async () => {
    const copy = await restoreCopy('aborted');
    const t = setup('aborted');
    const { Client } = await import('pg');
    const locker = new Client({ host: destination.host, port: destination.port, user: 'postgres', password: destination.superPassword, database: 'aborted' });
    await locker.connect();
    const verifySessions = async (waiting: boolean) => (await destination.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'db-migration verify'${waiting ? " AND wait_event_type = 'Lock'" : ''}`))[0].n;
    try {
      // given a count on the destination waiting for a lock another session holds
      await locker.query('BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE');
      const controller = new AbortController();
      const verifying = verifyDatabase(t.config.databases[0], t.config, copy.env, { signal: controller.signal });
      verifying.catch(() => undefined);
      for (let i = 0; i < 300 && await verifySessions(true) === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(await verifySessions(true)).toBe(1);

      // when the verification is aborted (the lock is still held)
      controller.abort();

      // then it fails as interrupted, and once it has settled no verify session is left on the server
      await expect(verifying).rejects.toThrow('verify was stopped: the run was interrupted');
      let left = await verifySessions(false);
      for (let i = 0; i < 10 && left > 0; i++) { await new Promise((r) => setTimeout(r, 100)); left = await verifySessions(false); }
      expect(left).toBe(0);
    } finally {
      await locker.end();
    }
  });

  it('fails (does not report ok) when the destination cannot be reached', async () => {
    const t = setup('no_such_db');
    await expect(verifyDatabase(t.config.databases[0], t.config, t.env)).rejects.toThrow(/database "no_such_db" does not exist/);
  });

  it('reports a dropped index and a revoked grant through the object inventory', async () => {
    const t = await restoreCopy('inventory_diff');
    await destination.query('DROP INDEX sales.orders_customer_idx; REVOKE SELECT ON sales.orders FROM app_reader', 'inventory_diff');
    const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(result.ok).toBe(false);
    expect(result.differences.map((d) => [d.kind, d.message])).toEqual([
      ['inventory', expect.stringMatching(/index sales\.orders_customer_idx is missing on the destination/i)],
      ['inventory', expect.stringMatching(/privileges of app_reader on table sales\.orders/i)],
    ]);
  });

  it('with verify: checksums, reports a changed value that row counts cannot see', async () => {
    const t = await restoreCopy('checksum_diff');
    await destination.query(`UPDATE sales.orders SET note = 'changed' WHERE id = 42`, 'checksum_diff');
    const counts = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(counts.ok).toBe(true);
    const sums = setup('checksum_diff', { verify: 'checksums' });
    const result = await verifyDatabase(sums.config.databases[0], sums.config, t.env);
    expect(result.checksummed).toBeGreaterThan(5);
    expect(result.differences).toEqual([expect.objectContaining({ schema: 'sales', kind: 'checksum', message: expect.stringMatching(/sales\.orders.*content differs/) })]);
  });

  it('with verify: checksums and source checksums taken earlier, compares against those, not the live source', async () => {
    const t = await restoreCopy('checksum_snapshot');
    const sums = setup('checksum_snapshot', { verify: 'checksums' });
    // given source checksums taken at dump time, and a write on the source after that
    const client = await connect(sums.config.databases[0].source, sums.env, { readOnly: true, connectTimeoutSeconds: 10 });
    const atDump = await tableChecksums(client).finally(() => client.end());
    await source.query(`INSERT INTO public."café" ("名前", boisson, prix) SELECT 'later', boisson, prix FROM public."café" LIMIT 1`, 'app');
    try {
      // then the destination matches what was dumped
      const result = await verifyDatabase(sums.config.databases[0], sums.config, t.env, { sourceChecksums: atDump });
      expect(result.differences.filter((d) => d.kind === 'checksum')).toEqual([]);
    } finally {
      await source.query(`DELETE FROM public."café" WHERE "名前" = 'later'`, 'app');
    }
  });
});
