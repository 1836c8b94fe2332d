/**
 * runMigration against real PostgreSQL 15 servers: a full migration of three databases compared table by
 * table and sequence by sequence, a dry run, and runs that must stop in pre-flight.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { freePort, PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { fingerprint } from './support/compare';
import { captureOutput, createAppRoles, createRealisticDatabase, databaseExists, matviewStates } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'src' }), startPgServer({ name: 'dst' })]);
  await Promise.all([
    createRealisticDatabase(source, 'shop'),
    createRealisticDatabase(source, 'crm', `CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text);
      INSERT INTO public.notes (body) SELECT 'note ' || g FROM generate_series(1, 1234) g;
      SELECT setval('sales.invoice_number_seq', 20021);`),
    createRealisticDatabase(source, 'analytics', `DELETE FROM audit.events WHERE kind = 'info';
      CREATE SCHEMA scratch; CREATE TABLE scratch.t (x int); INSERT INTO scratch.t VALUES (1), (2);`),
  ]);
  await createAppRoles(destination);
});

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

function track(c: TestRuntimeConfig): TestRuntimeConfig {
  configs.push(c);
  return c;
}

describe('runMigration', () => {
  it('migrates three databases: data, sequences and materialized views match the source', async () => {
    // given three source databases; "crm_new" exists empty on the destination, the other two do not exist
    await destination.query('CREATE DATABASE crm_new');
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'shop', source: { database: 'shop' }, destination: { database: 'shop' } },
        { name: 'crm', source: { database: 'crm' }, destination: { database: 'crm_new' } },
        { name: 'analytics', source: { database: 'analytics' }, destination: { database: 'analytics' } },
        { name: 'legacy', enabled: false, source: { database: 'legacy' }, destination: { database: 'legacy' } },
      ],
      migration: { dump: { jobs: 2 }, restore: { jobs: 2, noOwner: false }, verify: 'counts' },
    }));
    const out = captureOutput();

    // when the migration runs
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

    // then every enabled database is migrated and verified, the disabled one skipped
    expect(summary.databases.map((d) => [d.name, d.status])).toEqual([
      ['shop', 'migrated'], ['crm', 'migrated'], ['analytics', 'migrated'], ['legacy', 'skipped'],
    ]);
    expect(summary.ok).toBe(true);
    for (const d of summary.databases.slice(0, 3)) {
      expect(d.rowsVerified).toBeGreaterThan(20_000);
      expect(d.tables).toBeGreaterThanOrEqual(10);
      expect(d.sizeBytes).toBeGreaterThan(0);
      expect(d.dumpSeconds).toBeGreaterThanOrEqual(0);
    }
    // and the copies match the sources independently of the runner's verification
    for (const [src, dst] of [['shop', 'shop'], ['crm', 'crm_new'], ['analytics', 'analytics']]) {
      const [a, b] = await Promise.all([fingerprint(source, src), fingerprint(destination, dst)]);
      expect(Object.keys(a.tables).length).toBeGreaterThanOrEqual(10);
      expect(b.tables).toEqual(a.tables);
      expect(b.sequences).toEqual(a.sequences);
      expect(await matviewStates(destination, dst)).toEqual(await matviewStates(source, src));
    }
    expect((await fingerprint(destination, 'crm_new')).sequences['sales.invoice_number_seq']).toEqual({ last_value: '20021', is_called: true });
    // owners were kept (restore.noOwner false)
    const [owner] = await destination.query<{ o: string }>("SELECT tableowner AS o FROM pg_tables WHERE schemaname = 'sales' AND tablename = 'orders'", 'shop');
    expect(owner.o).toBe('app_owner');
    // and statistics exist (ANALYZE ran)
    const [stats] = await destination.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stats WHERE schemaname = 'sales' AND tablename = 'orders'", 'shop');
    expect(stats.n).toBeGreaterThan(0);
    // every table, partition and materialized view, not only some: and the partitioned parents' own statistics
    const notAnalyzed = await destination.query<{ t: string }>(`
      SELECT c.oid::regclass::text AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
      WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        AND s.last_analyze IS NULL`, 'shop');
    expect(notAnalyzed).toEqual([]);
    const parents = await destination.query<{ t: string; stats: boolean }>(`
      SELECT c.oid::regclass::text AS t, EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname AND s.tablename = c.relname AND s.inherited) AS stats
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'p'`, 'shop');
    expect(parents.length).toBeGreaterThan(0);
    expect(parents.filter((p) => !p.stats)).toEqual([]);
    // the dumps are gone, the logs and summaries are written
    expect(readdirSync(t.config.paths.dumps)).toEqual([]);
    const log = readFileSync(join(t.config.paths.logs, 'migration.log'), 'utf8');
    expect(log).toContain('✅ [shop] [dump] dumped');
    expect(log).toContain('✅ [crm] [verify] verified');
    expect(log).toMatch(/SUCCEEDED: 3\/3 migrated/);
    expect(JSON.parse(readFileSync(join(t.config.paths.logs, 'summary.json'), 'utf8')).ok).toBe(true);
    const term = readFileSync(t.config.paths.terminationLog!, 'utf8');
    expect(Buffer.byteLength(term)).toBeLessThanOrEqual(4096);
    expect(JSON.parse(term).databases).toHaveLength(4);
    expect(out.text()).toBe(readFileSync(join(t.config.paths.logs, 'migration.log'), 'utf8'));
  });

  it('dry run prints the plan and the exact commands, and moves nothing', async () => {
    // given a destination that does not have the database
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_dry' } },
        { name: 'crm', source: { database: 'crm' }, destination: { database: 'crm_dry' } },
      ],
      migration: { dryRun: true, dump: { jobs: 3, compression: 4 } },
    }));
    const before = await destination.query<{ datname: string }>('SELECT datname FROM pg_database ORDER BY 1');
    const out = captureOutput();

    // when the dry run runs
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

    // then it succeeds as a dry run, shows sizes and commands without passwords, and nothing changed
    expect(summary.ok).toBe(true);
    expect(summary.dryRun).toBe(true);
    expect(summary.databases.map((d) => d.status)).toEqual(['dry-run', 'dry-run']);
    const text = out.text();
    expect(text).toMatch(/\[shop\] \[dry-run\] would run: .*PGPASSWORD=<from \$DBM_SHOP_SOURCE_PASSWORD> \S*pg_dump --format=directory --jobs=3 --file=\S+\/shop --compress=4/);
    expect(text).toMatch(/\[crm\] \[dry-run\] would run: .*PGDATABASE=crm_dry .*PGPASSWORD=<from \$DBM_CRM_DEST_PASSWORD> \S*pg_restore --format=directory --dbname=crm_dry/);
    expect(text).toMatch(/\[shop\] \[dry-run\] .*MiB, \d+ tables; would create database "shop_dry"/);
    expect(text).not.toContain(source.superPassword);
    expect(text).not.toContain(destination.superPassword);
    expect(await destination.query('SELECT datname FROM pg_database ORDER BY 1')).toEqual(before);
    expect(readdirSync(t.config.paths.dumps)).toEqual([]);
  });

  it('fails in pre-flight before any dump when one database is not ready', async () => {
    // given two databases, the second of which has a non-empty destination (restore.clean off)
    await destination.query('CREATE DATABASE crm_busy');
    await destination.query('CREATE TABLE public.existing (id int)', 'crm_busy');
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [
        { name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_pf' } },
        { name: 'crm', source: { database: 'crm' }, destination: { database: 'crm_busy' } },
      ],
    }));
    const out = captureOutput();

    // when the migration runs
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

    // then it fails in pre-flight, the first database never started, and nothing was dumped or created
    expect(summary.ok).toBe(false);
    expect(summary.databases).toMatchObject([
      { name: 'shop', status: 'planned' },
      { name: 'crm', status: 'failed', phase: 'preflight' },
    ]);
    expect(summary.databases[1].error).toMatch(/not empty/);
    expect(out.text()).toMatch(/❌ \[crm\] \[preflight\] destination .*not empty/);
    expect(out.text()).not.toMatch(/\[(dump|restore)\]/);
    expect(existsSync(join(t.config.paths.dumps, 'shop'))).toBe(false);
    expect(await databaseExists(destination, 'shop_pf')).toBe(false);
    expect(out.text()).toContain('FAILED');
  });

  it('fails in pre-flight with a wrong password, naming the cause and never the password', async () => {
    const wrong = 'Wrong-Password-123';
    const t = track(makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop', password: wrong }, destination: { database: 'shop_pw' } }],
    }));
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    expect(summary.ok).toBe(false);
    expect(summary.databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
    expect(summary.databases[0].error).toMatch(/password authentication failed/);
    expect(out.text()).not.toContain(wrong);
    expect(readFileSync(join(t.config.paths.logs, 'summary.json'), 'utf8')).not.toContain(wrong);
    expect(await databaseExists(destination, 'shop_pw')).toBe(false);
  });

  it('fails in pre-flight when the destination host is unreachable', async () => {
    const port = await freePort(); // nothing listens there
    const t = track(makeRuntimeConfig({
      source, destination: { host: '127.0.0.1', port, superuser: 'postgres', superPassword: 'unused-pw' },
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop' } }],
      migration: { timeouts: { connect: 2 } },
    }));
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    expect(summary.ok).toBe(false);
    expect(summary.databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
    expect(summary.databases[0].error).toMatch(/refused|connect/i);
    expect(out.text()).toMatch(/❌ \[shop\] \[preflight\] destination/);
    expect(readdirSync(t.config.paths.dumps)).toEqual([]);
  });
});
