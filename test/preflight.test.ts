/**
 * Pre-flight against two real PostgreSQL 15 servers. Each failing check is provoked for real (REVOKE,
 * connection limits, a tiny storage limit, ...), asserted with its exact message and fix, and where the fix is
 * SQL it is then run to show that it clears the problem.
 */
import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatPreflightProblem, preflight, type PreflightProblem, type PreflightReport } from '../src/runner/checks/preflight/checks';
import { formatBytes } from '../src/runner/checks/preflight/capacity';
import { freePort, PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { makeRuntimeConfig, type MakeRuntimeConfigOptions, type TestDatabase } from './support/runtime-config';

const SCHEMA_SQL = join(__dirname, 'support', 'realistic-schema.sql');
const SRC_PW = 'migrator-pw';
const DST_PW = 'restorer-pw';

let source: PgServer;
let destination: PgServer;
const cleanups: Array<() => void> = [];

const appDb = (overrides: Partial<TestDatabase> = {}): TestDatabase => ({
  name: 'app',
  source: { database: 'app', username: 'migrator', password: SRC_PW },
  destination: { database: 'app', username: 'restorer', password: DST_PW },
  ...overrides,
});

async function run(
  opts: Partial<Omit<MakeRuntimeConfigOptions, 'source' | 'destination'>> = {},
  extra: { env?: Record<string, string>; binDir?: string } = {},
): Promise<PreflightReport> {
  const t = makeRuntimeConfig({ source, destination, databases: [appDb()], ...opts });
  cleanups.push(t.cleanup);
  // Sessions of the previous test may still be leaving; connection counts must not see them.
  // (A stopped server has no sessions to wait for.)
  await Promise.all([waitIdle(source), waitIdle(destination)].map((p) => p.catch(() => undefined)));
  return preflight(t.config, { ...t.env, ...extra.env }, { binDir: extra.binDir ?? PG_BIN });
}

async function waitIdle(server: PgServer): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const rows = await server.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`);
    if (rows[0].n === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const byCheck = (report: PreflightReport, check: PreflightProblem['check']) => report.problems.filter((p) => p.check === check);

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'pre-src' }), startPgServer({ name: 'pre-dst' })]);
  await source.query('CREATE DATABASE app');
  await source.psqlFile(SCHEMA_SQL, 'app');
  await source.createRole('migrator', SRC_PW);
  await source.query(`
    GRANT USAGE ON SCHEMA public, sales, inventory, audit, "Bücher" TO migrator;
    GRANT SELECT ON ALL TABLES IN SCHEMA public, sales, inventory, audit, "Bücher" TO migrator;
    GRANT SELECT ON ALL SEQUENCES IN SCHEMA public, sales, inventory, audit, "Bücher" TO migrator;`, 'app');
  await destination.createRole('restorer', DST_PW);
  // The roles the dump's GRANTs name (restore.noAcl is false by default), including the migration user's own.
  await destination.query('CREATE ROLE app_owner; CREATE ROLE app_reader; CREATE ROLE migrator');
  await destination.query('CREATE DATABASE app OWNER restorer');
});

afterAll(async () => {
  for (const c of cleanups) c();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

describe('preflight on a ready pair', () => {
  it('reports no problem and the facts of the database', async () => {
    const report = await run();
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const [db] = report.databases;
    const size = await source.query<{ n: string }>(`SELECT pg_database_size('app')::text AS n`);
    expect(db).toMatchObject({
      database: 'app', ok: true, destinationExists: true, tables: 10,
      schemas: ['Bücher', 'audit', 'inventory', 'public', 'sales'],
    });
    expect(db.sourceVersion).toBeGreaterThanOrEqual(150000);
    expect(db.sourceVersion).toBeLessThan(160000);
    expect(db.destinationVersion).toBe(db.sourceVersion);
    expect(Math.abs(db.sourceSizeBytes! - Number(size[0].n))).toBeLessThan(Number(size[0].n) * 0.05);
    expect(report.tools.map((t) => [t.tool, t.versionNum! >= 150000])).toEqual([['pg_dump', true], ['pg_restore', true]]);
  });

  it('skips disabled databases', async () => {
    const report = await run({
      databases: [appDb(), appDb({ name: 'off', enabled: false, source: { database: 'nosuch', username: 'migrator', password: SRC_PW } })],
    });
    expect(report.databases.map((d) => d.database)).toEqual(['app']);
    expect(report.ok).toBe(true);
  });
});

describe('preflight source checks', () => {
  it('fails without CONNECT on the source database, with the GRANT that fixes it', async () => {
    await source.query('REVOKE CONNECT ON DATABASE app FROM PUBLIC');
    try {
      const report = await run();
      expect(report.ok).toBe(false);
      expect(byCheck(report, 'connect-privilege')).toEqual([{
        database: 'app', server: 'source', endpoint: `migrator@127.0.0.1:${source.port}/app`, check: 'connect-privilege',
        message: 'user "migrator" has no CONNECT privilege on database "app"',
        fix: 'GRANT CONNECT ON DATABASE "app" TO "migrator";', severity: 'error',
      }]);
      expect(formatPreflightProblem(byCheck(report, 'connect-privilege')[0])).toEqual([
        `❌ app: source migrator@127.0.0.1:${source.port}/app: user "migrator" has no CONNECT privilege on database "app"`,
        '   fix: GRANT CONNECT ON DATABASE "app" TO "migrator";',
      ]);
      await source.query(byCheck(report, 'connect-privilege')[0].fix!);
      expect((await run()).ok).toBe(true);
    } finally {
      await source.query('GRANT CONNECT ON DATABASE app TO PUBLIC; REVOKE CONNECT ON DATABASE app FROM migrator');
    }
  });

  it('fails without USAGE on a dumped schema (non-ASCII name quoted), and respects excludeSchemas', async () => {
    await source.query('REVOKE USAGE ON SCHEMA "Bücher" FROM migrator', 'app');
    try {
      const report = await run();
      expect(byCheck(report, 'schema-usage')).toEqual([expect.objectContaining({
        server: 'source',
        message: 'user "migrator" has no USAGE on schema "Bücher", which is dumped',
        fix: 'GRANT USAGE ON SCHEMA "Bücher" TO "migrator";', severity: 'error',
      })]);
      // Left out of the dump, the schema needs no privilege. pg_dump patterns fold case unless quoted.
      const excluded = await run({ migration: { dump: { excludeSchemas: ['"Bücher"'] } } });
      expect(excluded.problems).toEqual([]);
      expect(excluded.databases[0].schemas).toEqual(['audit', 'inventory', 'public', 'sales']);
      const onlySales = await run({ migration: { dump: { schemas: ['sales'] } } });
      expect(onlySales.problems).toEqual([]);
      expect(onlySales.databases[0].tables).toBe(2);

      await source.query(byCheck(report, 'schema-usage')[0].fix!, 'app');
      expect(byCheck(await run(), 'schema-usage')).toEqual([]);
    } finally {
      await source.query('GRANT USAGE ON SCHEMA "Bücher" TO migrator', 'app');
    }
  });

  it('fails when dump.schemas names a schema the source does not have', async () => {
    const report = await run({ migration: { dump: { schemas: ['sales', 'nosuch*'] } } });
    expect(byCheck(report, 'schema-missing').map((p) => p.message)).toEqual([
      'dump.schemas lists "nosuch*" but no schema of the source matches it (pg_dump would fail: no matching schemas were found)',
    ]);
  });

  it('names an unreadable table and sequence, with GRANTs for exactly those', async () => {
    await source.query('REVOKE SELECT ON public."café", sales.invoice_number_seq FROM migrator', 'app');
    try {
      const report = await run();
      expect(report.ok).toBe(false);
      expect(byCheck(report, 'select-privilege')).toEqual([expect.objectContaining({
        server: 'source', message: 'user "migrator" cannot read 1 table: public.café',
        fix: 'GRANT SELECT ON TABLE "public"."café" TO "migrator";', severity: 'error',
      })]);
      expect(byCheck(report, 'sequence-privilege')).toEqual([expect.objectContaining({
        message: 'user "migrator" cannot read 1 sequence: sales.invoice_number_seq',
        fix: 'GRANT SELECT ON SEQUENCE "sales"."invoice_number_seq" TO "migrator";',
      })]);
      expect(report.problems).toHaveLength(2);
      for (const p of report.problems) await source.query(p.fix!, 'app');
      expect((await run()).problems).toEqual([]);
    } finally {
      await source.query('GRANT SELECT ON public."café", sales.invoice_number_seq TO migrator', 'app');
    }
  });

  it('caps a long list of unreadable tables and grants per schema', async () => {
    await source.createRole('nobody', 'nobody-pw');
    await source.query('GRANT USAGE ON SCHEMA sales, inventory, audit, "Bücher" TO nobody', 'app');
    const report = await run({ databases: [appDb({ source: { database: 'app', username: 'nobody', password: 'nobody-pw' } })] });
    const [tables] = byCheck(report, 'select-privilege');
    expect(tables.message).toBe('user "nobody" cannot read 12 tables: "Bücher".titel, audit.events, audit.events_2023, '
      + 'audit.events_2024, audit.events_2024_info, audit.events_2024_other, audit.events_default, inventory.products, '
      + 'public.café, public.customers and 2 more');
    expect(tables.fix).toBe([
      'GRANT SELECT ON ALL TABLES IN SCHEMA "Bücher" TO "nobody";',
      'GRANT SELECT ON ALL TABLES IN SCHEMA "audit" TO "nobody";',
      'GRANT SELECT ON ALL TABLES IN SCHEMA "inventory" TO "nobody";',
      'GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "nobody";',
      'GRANT SELECT ON ALL TABLES IN SCHEMA "sales" TO "nobody";',
    ].join('\n'));
    expect(formatPreflightProblem(tables).slice(1)).toEqual([
      '   fix: GRANT SELECT ON ALL TABLES IN SCHEMA "Bücher" TO "nobody";',
      '        GRANT SELECT ON ALL TABLES IN SCHEMA "audit" TO "nobody";',
      '        GRANT SELECT ON ALL TABLES IN SCHEMA "inventory" TO "nobody";',
      '        GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "nobody";',
      '        GRANT SELECT ON ALL TABLES IN SCHEMA "sales" TO "nobody";',
    ]);
    expect(byCheck(report, 'sequence-privilege')[0].message).toBe('user "nobody" cannot read 6 sequences: audit.events_id_seq, '
      + 'inventory.products_id_seq, public.café_id_seq, public.customers_id_seq, sales.invoice_number_seq, sales.orders_id_seq');
    await source.query('DROP OWNED BY nobody', 'app');
    await source.query('DROP ROLE nobody');
  });

  it('fails when row-level security would make pg_dump fail', async () => {
    await source.query('ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY', 'app');
    try {
      const report = await run();
      expect(byCheck(report, 'row-security')).toEqual([expect.objectContaining({
        message: 'row-level security applies to user "migrator" on 1 table (public.customers), so pg_dump (row_security off) '
          + 'would fail: dump as the owner or a role with BYPASSRLS',
        fix: 'ALTER ROLE "migrator" BYPASSRLS;',
      })]);
      await source.query(byCheck(report, 'row-security')[0].fix!);
      expect((await run()).problems).toEqual([]);
    } finally {
      await source.query('ALTER TABLE public.customers DISABLE ROW LEVEL SECURITY', 'app');
      await source.query('ALTER ROLE migrator NOBYPASSRLS');
    }
  });

  it('fails when the dump does not fit in storage.dumps, saying the estimate', async () => {
    const report = await run({ storage: { dumps: '1Ki' } });
    const size = report.databases[0].sourceSizeBytes!;
    expect(size).toBeGreaterThan(1024 * 1024);
    expect(byCheck(report, 'disk-space')).toEqual([expect.objectContaining({
      server: 'source', severity: 'error',
      message: `the dump needs about ${formatBytes(size)} (the source database size, dump.compression 0) but only 1.0 KiB is `
        + `available (job.storage.dumps limit 1.0 KiB): raise job.storage.dumps to at least ${formatBytes(Math.ceil(size * 1.2))} `
        + 'or set dump.compression',
    })]);
    expect(report.databases[0].estimatedDumpBytes).toBe(size);
    // Compressed, the dump is usually much smaller: a warning, not an error.
    const compressed = await run({ storage: { dumps: '1Ki' }, migration: { dump: { compression: 6 } } });
    expect(byCheck(compressed, 'disk-space').map((p) => p.severity)).toEqual(['warning']);
    expect(compressed.ok).toBe(true);
  });

  it('fails when the role connection limit leaves fewer than dump.jobs + 1 connections', async () => {
    await source.query('ALTER ROLE migrator CONNECTION LIMIT 2');
    try {
      const report = await run();
      expect(byCheck(report, 'connections')).toEqual([expect.objectContaining({
        server: 'source',
        message: 'needs 3 connections (dump.jobs 2 + 1) but role "migrator" has a connection limit of 2 with 0 in use',
        fix: 'ALTER ROLE "migrator" CONNECTION LIMIT 3;',
      })]);
      const fewerJobs = await run({ migration: { dump: { jobs: 1 } } });
      expect(byCheck(fewerJobs, 'connections')).toEqual([]);
      await source.query(byCheck(report, 'connections')[0].fix!);
      expect((await run()).problems).toEqual([]);
    } finally {
      await source.query('ALTER ROLE migrator CONNECTION LIMIT -1');
    }
  });

  it('fails when the server has fewer free slots than dump.jobs + 1', async () => {
    // max_connections 60, 3 reserved for superusers: 57 usable. 60 jobs need 61.
    const report = await run({ migration: { dump: { jobs: 60 } } });
    expect(byCheck(report, 'connections').map((p) => [p.server, p.message, p.fix])).toEqual([[
      'source',
      'needs 61 connections (dump.jobs 60 + 1) but the server has 57 free (max_connections 60, 3 reserved, 0 in use): '
        + 'lower the parallel jobs, wait for other clients to disconnect, or raise max_connections',
      undefined,
    ]]);
  });

  it('fails with the authentication message on a wrong password', async () => {
    const report = await run({}, { env: { DBM_APP_SOURCE_PASSWORD: 'wrong' } });
    expect(report.problems).toEqual([expect.objectContaining({
      server: 'source', check: 'connect', severity: 'error',
      message: 'cannot connect within 10s: password authentication failed for user "migrator": check the password in the '
        + 'Secret the spec names and that the role exists with that password (password from DBM_APP_SOURCE_PASSWORD)',
    })]);
    expect(report.databases[0].sourceVersion).toBeUndefined();
  });

  it('fails when the password variable is not set', async () => {
    const report = await run({ databases: [appDb({ source: { database: 'app', username: 'migrator', password: null } })] });
    expect(report.problems).toEqual([expect.objectContaining({
      server: 'source', check: 'password',
      message: 'environment variable DBM_APP_SOURCE_PASSWORD is not set: the Job maps it from the Secret named in the spec',
    })]);
  });

  it('fails with "connection refused" when nothing listens on the port', async () => {
    const port = await freePort();
    const report = await run({ databases: [appDb({ source: { database: 'app', username: 'migrator', password: SRC_PW, port } })] });
    expect(report.problems).toEqual([expect.objectContaining({
      server: 'source', endpoint: `migrator@127.0.0.1:${port}/app`, check: 'connect',
      message: `cannot connect within 10s: connection to 127.0.0.1:${port} refused: nothing accepts connections at that host `
        + 'and port: check the host and port in the spec and that the server is running',
    })]);
  });

  it('fails when pg_dump is older than the source server', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-oldbin-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    // A stand-in that only answers --version, as a 9.6 pg_dump would: this tests our version check.
    writeFileSync(join(dir, 'pg_dump'), "#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.0'\n");
    chmodSync(join(dir, 'pg_dump'), 0o755);
    symlinkSync(join(PG_BIN, 'pg_restore'), join(dir, 'pg_restore'));
    const report = await run({}, { binDir: dir });
    const version = report.databases[0].sourceVersion!;
    const text = (await source.query<{ server_version: string }>('SHOW server_version'))[0].server_version;
    expect(report.problems).toEqual([{
      database: 'app', server: 'source', endpoint: `migrator@127.0.0.1:${source.port}/app`, check: 'client-version', severity: 'error',
      message: `pg_dump 9.6.0 (${dir}/pg_dump) is older than the source server (PostgreSQL ${text}) and refuses to dump it: `
        + `use an image with PostgreSQL client tools >= ${Math.floor(version / 10000)} `
        + '(current image: ghcr.io/aleph-alpha/shared-images/pharia-helper:latest)',
    }]);
    expect(report.tools.find((t) => t.tool === 'pg_dump')).toMatchObject({ version: '9.6.0', versionNum: 90600 });
  });

  it('fails when pg_restore cannot be found in the tools directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-nobin-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    symlinkSync(join(PG_BIN, 'pg_dump'), join(dir, 'pg_dump'));
    const report = await run({}, { binDir: dir });
    expect(report.problems.map((p) => p.message)).toEqual([
      `cannot run pg_restore (${dir}/pg_restore): not found in ${dir}; use an image with PostgreSQL client tools `
        + '(current image: ghcr.io/aleph-alpha/shared-images/pharia-helper:latest)',
    ]);
  });
});

describe('preflight destination checks', () => {
  it('fails when the destination database is missing and the user may not create it', async () => {
    const report = await run({ databases: [appDb({ destination: { database: 'newdb', username: 'restorer', password: DST_PW } })] });
    expect(report.problems).toEqual([{
      database: 'app', server: 'destination', endpoint: `restorer@127.0.0.1:${destination.port}/newdb`,
      check: 'destination-database', severity: 'error',
      message: 'database "newdb" does not exist and user "restorer" may not create it (no CREATEDB)',
      fix: 'CREATE DATABASE "newdb" OWNER "restorer";',
    }]);
    expect(report.databases[0]).toMatchObject({ destinationExists: false, ok: false });
  });

  it('reports that a missing destination database will be created when the user has CREATEDB', async () => {
    await destination.createRole('creator', 'creator-pw', 'CREATEDB');
    const report = await run({ databases: [appDb({ destination: { database: 'newdb', username: 'creator', password: 'creator-pw' } })] });
    expect(report.problems).toEqual([expect.objectContaining({
      server: 'destination', check: 'destination-database', severity: 'warning',
      message: 'database "newdb" does not exist; user "creator" has CREATEDB, so it will be created',
    })]);
    expect(report.ok).toBe(true);
    expect(report.databases[0]).toMatchObject({ destinationExists: false, willCreateDestination: true, ok: true });
    expect(formatPreflightProblem(report.problems[0])).toEqual([
      `⚠️ app: destination creator@127.0.0.1:${destination.port}/newdb: database "newdb" does not exist; user "creator" has CREATEDB, so it will be created`,
    ]);
  });

  it('fails without CREATE on the destination database and on its public schema', async () => {
    await destination.query('CREATE DATABASE shared');
    const db = appDb({ destination: { database: 'shared', username: 'restorer', password: DST_PW } });
    const report = await run({ databases: [db] });
    expect(report.problems.map((p) => [p.check, p.message, p.fix])).toEqual([
      ['create-privilege',
        'user "restorer" has no CREATE privilege on database "shared", which the restore needs to create 4 schemas ("Bücher", "audit", "inventory", "sales")',
        'GRANT CREATE ON DATABASE "shared" TO "restorer";'],
      ['schema-privilege',
        'user "restorer" has no CREATE privilege on schema "public", where the restore creates objects',
        'GRANT CREATE ON SCHEMA "public" TO "restorer";'],
      // Not an error: the database is owned by another role, so the runner cannot mark its progress on it.
      ['destination-empty',
        'database "shared" is owned by "postgres", not by user "restorer", so the runner cannot record its progress on it: '
          + 'if this run is interrupted while restoring, a re-run will refuse the half-filled database '
          + '(drop and re-create it empty, or set restore.clean: true, then run again)',
        'ALTER DATABASE "shared" OWNER TO "restorer";'],
    ]);
    expect(report.problems.find((p) => p.check === 'destination-empty')?.severity).toBe('warning');
    for (const p of report.problems.filter((x) => x.severity === 'error')) await destination.query(p.fix!, 'shared');
    expect((await run({ databases: [db] })).problems.map((p) => p.check)).toEqual(['destination-empty']);
  });

  it('fails when the destination is not empty, unless restore.clean', async () => {
    await destination.query(`
      CREATE DATABASE leftovers OWNER restorer;`);
    await destination.query(`
      SET ROLE restorer;
      CREATE TABLE public.leftover (id int);
      CREATE FUNCTION public.leftover_fn() RETURNS int LANGUAGE sql AS 'SELECT 1';
      CREATE TYPE public.mood AS ENUM ('ok');`, 'leftovers');
    const db = appDb({ destination: { database: 'leftovers', username: 'restorer', password: DST_PW } });
    const report = await run({ databases: [db] });
    expect(report.problems).toEqual([expect.objectContaining({
      server: 'destination', check: 'destination-empty', severity: 'error',
      message: 'database "leftovers" is not empty (1 table, 1 function, 1 type: public.leftover, public.leftover_fn(), public.mood): '
        + 'restore into an empty database, or set restore.clean: true to replace existing objects',
    })]);
    const clean = await run({ databases: [db], migration: { restore: { clean: true } } });
    expect(clean.problems).toEqual([]);
  });

  it('fails when roles owning source objects are missing (restore.noOwner false), then when the user cannot assign them', async () => {
    await source.query('CREATE ROLE legacy_owner; CREATE ROLE legacy_reader');
    await source.query('CREATE DATABASE legacy');
    await source.query(`
      CREATE SCHEMA legacy AUTHORIZATION legacy_owner;
      CREATE TABLE legacy.ledger (id int PRIMARY KEY, amount numeric);
      ALTER TABLE legacy.ledger OWNER TO legacy_owner;
      GRANT SELECT ON legacy.ledger TO legacy_reader;
      GRANT USAGE ON SCHEMA legacy TO migrator;
      GRANT SELECT ON legacy.ledger TO migrator;`, 'legacy');
    await destination.query('CREATE DATABASE legacy OWNER restorer');
    const db = appDb({
      source: { database: 'legacy', username: 'migrator', password: SRC_PW },
      destination: { database: 'legacy', username: 'restorer', password: DST_PW },
    });
    const report = await run({ databases: [db], migration: { restore: { noOwner: false } } });
    expect(report.problems.map((p) => [p.check, p.severity, p.message, p.fix])).toEqual([
      ['owner-roles', 'error',
        '1 role owning objects in the source is missing: "legacy_owner" (restore.noOwner is false, so pg_restore sets owners)',
        'CREATE ROLE "legacy_owner";'],
      ['acl-roles', 'warning',
        '1 role holding privileges in the source is missing: "legacy_reader" (their GRANTs will fail; set restore.noAcl: true to skip privileges)',
        'CREATE ROLE "legacy_reader";'],
    ]);
    // With the defaults (noOwner true) owners do not matter; with noAcl grantees do not either.
    const defaults = await run({ databases: [db] });
    expect(defaults.problems.map((p) => p.check)).toEqual(['acl-roles']);
    const noAcl = await run({ databases: [db], migration: { restore: { noAcl: true } } });
    expect(noAcl.problems).toEqual([]);

    await destination.query(`${report.problems[0].fix!} ${report.problems[1].fix!}`);
    const membership = await run({ databases: [db], migration: { restore: { noOwner: false } } });
    expect(membership.problems).toEqual([expect.objectContaining({
      server: 'destination', check: 'owner-membership',
      message: 'user "restorer" is not a member of "legacy_owner", so it cannot make that role owner of restored objects (restore.noOwner is false)',
      fix: 'GRANT "legacy_owner" TO "restorer";',
    })]);
    await destination.query(membership.problems[0].fix!);
    expect((await run({ databases: [db], migration: { restore: { noOwner: false } } })).problems).toEqual([]);
  });

  it('fails when the destination database connection limit is below restore.jobs + 1', async () => {
    await destination.query('ALTER DATABASE app CONNECTION LIMIT 1');
    try {
      const report = await run();
      expect(report.problems).toEqual([expect.objectContaining({
        server: 'destination', check: 'connections',
        message: 'needs 3 connections (restore.jobs 2 + 1) but database "app" has a connection limit of 1 with 0 in use',
        fix: 'ALTER DATABASE "app" CONNECTION LIMIT 3;',
      })]);
      await destination.query(report.problems[0].fix!);
      expect((await run()).problems).toEqual([]);
    } finally {
      await destination.query('ALTER DATABASE app CONNECTION LIMIT -1');
    }
  });

  it('fails with connection refused when the destination server is down, and still checks the source', async () => {
    await destination.stop();
    try {
      const report = await run();
      expect(report.problems.map((p) => [p.server, p.check])).toEqual([['destination', 'connect']]);
      expect(report.problems[0].message).toMatch(/^cannot connect within 10s: connection to 127\.0\.0\.1:\d+ refused: /);
      expect(report.databases[0].sourceVersion).toBeGreaterThan(0);
      expect(report.databases[0].destinationExists).toBeUndefined();
    } finally {
      await destination.start();
    }
  });
});
