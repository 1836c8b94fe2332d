/**
 * migration.roles through runMigration on real PostgreSQL 15 servers: a database whose objects are owned by
 * several roles, with grants, default privileges, RLS policies naming roles and per-database role settings,
 * migrated with roles: referenced and owners and privileges kept (restore.noOwner/noAcl false) into a server
 * that has none of those roles. The runner's inventory verification compares owners, privileges and policies;
 * the database-level settings are compared here from the catalogs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMarker } from '../src/runner/checks/progress-marker';
import { runMigration } from '../src/runner/migrate';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { captureOutput } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';
import { ANALYST_PW, APP_PW, DATABASE_SQL, DB, DB_LEVEL_SQL, READER_PW, SOURCE_SQL } from './support/roles-fixture';


let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'rr-src' }), startPgServer({ name: 'rr-dst' })]);
  await source.query(SOURCE_SQL);
  await source.query(`CREATE DATABASE ${DB} OWNER app_owner`);
  await source.query(DATABASE_SQL, DB);
  await source.query(DB_LEVEL_SQL);
});

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

/** Per-database settings by role name (null: ALTER DATABASE SET), as stored. */
async function dbSettings(server: PgServer, database: string) {
  return server.query<{ role: string | null; setconfig: string[] }>(`
    SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE r.rolname END AS role, s.setconfig
    FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
    WHERE d.datname = '${database}' ORDER BY 1 NULLS FIRST`);
}

async function dbFacts(server: PgServer, database: string) {
  const [row] = await server.query<{ owner: string; acl: string; comment: string | null }>(`
    SELECT pg_get_userbyid(datdba) AS owner, datacl::text AS acl, shobj_description(oid, 'pg_database') AS comment
    FROM pg_database WHERE datname = '${database}'`);
  return row;
}

describe('runMigration, migration.roles: referenced', () => {
  it('dry run names the roles the database needs, with why, and creates none', async () => {
    const t = makeRuntimeConfig({
      source, destination, databases: [{ name: 'shop', source: { database: DB }, destination: { database: DB } }],
      migration: { dryRun: true, roles: 'referenced', restore: { noOwner: false, noAcl: false } },
    });
    configs.push(t);
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    // pre-flight counts the roles the step will create as present (the destination user is a superuser)
    expect(summary.ok).toBe(true);
    expect(out.text()).toMatch(/\[dry-run\] roles \(referenced\): 11 would be made sure to exist .*app_owner \(database-owner, owner\).*tenant_admin \(grantee\)/);
    expect(await destination.query("SELECT rolname FROM pg_roles WHERE rolname IN ('app_owner', 'app', 'analyst')")).toEqual([]);
  });

  it('creates the roles, restores owners, grants, default privileges and policies, then carries the database settings', async () => {
    const t = makeRuntimeConfig({
      source, destination, databases: [{ name: 'shop', source: { database: DB }, destination: { database: DB } }],
      migration: { roles: 'referenced', restore: { noOwner: false, noAcl: false }, verify: 'counts' },
    });
    configs.push(t);
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

    // then the run succeeds, and the runner's inventory verification (owners, privileges, policies) found nothing
    expect(summary.databases[0].differences).toBeUndefined();
    expect(summary.ok).toBe(true);
    expect(summary.databases[0].rolesCreated).toEqual(expect.arrayContaining(['app_owner', 'auditor', 'app', 'analyst', 'Mixed Case; ro"le']));
    expect(summary.databases[0].objectsVerified).toBeGreaterThan(10);
    const text = out.text();
    expect(text).toMatch(/\[shop\] \[roles\] roles \(referenced\): 11 planned, 11 created, 0 existing/);
    expect(text).not.toContain(APP_PW);
    expect(text).not.toContain(ANALYST_PW);
    expect(text).not.toContain(READER_PW);
    // the data matches
    const [a, b] = await Promise.all([fingerprint(source, DB), fingerprint(destination, DB)]);
    expect(b.tables).toEqual(a.tables);
    // owners, grants, default privileges and policies, read from the catalogs
    const catalog = `
      SELECT 'rel ' || c.oid::regclass::text || ' ' || pg_get_userbyid(c.relowner) || ' ' || coalesce(c.relacl::text, '') AS x
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname IN ('app', 'audit')
      UNION ALL SELECT 'nsp ' || nspname || ' ' || pg_get_userbyid(nspowner) || ' ' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname IN ('app', 'audit', 'public')
      UNION ALL SELECT 'defacl ' || pg_get_userbyid(defaclrole) || ' ' || defaclacl::text FROM pg_default_acl
      UNION ALL SELECT 'policy ' || polname || ' ' || array(SELECT rolname FROM pg_roles WHERE oid = ANY(polroles) ORDER BY 1)::text FROM pg_policy
      UNION ALL SELECT 'col ' || attname || ' ' || attacl::text FROM pg_attribute WHERE attacl IS NOT NULL
      ORDER BY 1`;
    expect(await destination.query(catalog, DB)).toEqual(await source.query(catalog, DB));
    // the database's settings, role settings, grants and owner arrived; its comment still holds the marker
    expect(await dbSettings(destination, DB)).toEqual(await dbSettings(source, DB));
    const [sf, df] = await Promise.all([dbFacts(source, DB), dbFacts(destination, DB)]);
    expect(df.owner).toBe('app_owner');
    expect(df.acl).toBe(sf.acl);
    expect(parseMarker(df.comment)).toMatchObject({ state: 'verified' });
    expect(text).toMatch(/\[settings\] the comment of database .*was not carried/);
  });
});
