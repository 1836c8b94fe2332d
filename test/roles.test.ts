/**
 * Roles carried to the destination (migration.roles), on real PostgreSQL 15 servers. A source database whose
 * objects belong to several roles, with grants, default privileges, column privileges, RLS policies naming
 * roles, role memberships and per-database role settings. Given the roles step, a plain
 * `pg_dump -Fc | pg_restore` WITHOUT --no-owner / --no-acl must succeed, and owners, ACLs, policies and
 * settings must arrive identical (compared catalog by catalog) — as a superuser destination user and as a
 * non-superuser CREATEROLE one.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/runner/postgres/connection';
import { applyDatabaseSettings, readDatabaseSettings } from '../src/runner/globals/database-settings';
import {
  describeRoleResult, migrateRoles, NO_PASSWORDS_WARNING, parseDumpallRoles, planRoles, rolesToCreate, tokenizeStatements,
  type RoleMigrationResult, type RolePlan,
} from '../src/runner/globals/copy-roles';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { makeRuntimeConfig, type TestEndpoint } from './support/runtime-config';
import { ANALYST_PW, APP_PW, DATABASE_SQL, DB, DB_LEVEL_SQL, READER_PW, SOURCE_SQL } from './support/roles-fixture';

const run = promisify(execFile);
const MIGRATOR_PW = 'migrator-pw-5678';
const WEIRD = 'Mixed Case; ro"le';
/** Roles 'referenced' must plan (the source's bootstrap superuser and pg_* roles never). */
const REFERENCED = ['Mixed Case; ro"le', 'analyst', 'app', 'app_group', 'app_owner', 'app_reader', 'app_writer', 'auditor',
  'settings_only', 'src_reader', 'tenant_admin'];

let source: PgServer;
const servers: PgServer[] = [];
const cleanups: Array<() => void> = [];
let workDir: string;

beforeAll(async () => {
  workDir = mkdtempSync(join(tmpdir(), 'dbm-roles-test-'));
  source = await startPgServer({ name: 'roles-src' });
  servers.push(source);
  await source.query(SOURCE_SQL);
  await source.query(`CREATE DATABASE ${DB} OWNER app_owner`);
  await source.query(DATABASE_SQL, DB);
  await source.query(DB_LEVEL_SQL);
});

afterAll(async () => {
  for (const c of cleanups) c();
  await Promise.all(servers.map((s) => s.destroy()));
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

async function newDestination(name: string): Promise<PgServer> {
  const s = await startPgServer({ name });
  servers.push(s);
  return s;
}

function setup(destination: PgServer, roles: 'none' | 'referenced' | 'all', ep: { src?: Partial<TestEndpoint>; dst?: Partial<TestEndpoint> } = {}) {
  const t = makeRuntimeConfig({
    source, destination,
    databases: [{ name: 'shop', source: { database: DB, ...ep.src }, destination: { database: DB, ...ep.dst } }],
    migration: { roles, restore: { noOwner: false, noAcl: false } },
  });
  cleanups.push(t.cleanup);
  return { config: t.config, db: t.config.databases[0], env: { ...process.env, ...t.env } };
}

/** pg_dump -Fc of the source as its superuser, pg_restore as `user` (owners and ACLs included). */
async function dumpAndRestore(destination: PgServer, user: string, password: string): Promise<void> {
  const file = join(workDir, `shop-${destination.port}-${Date.now()}.dump`);
  await run(join(PG_BIN, 'pg_dump'), ['-Fc', '-h', source.host, '-p', String(source.port), '-U', source.superuser, '-f', file, DB],
    { env: { ...process.env, PGPASSWORD: source.superPassword } });
  await run(join(PG_BIN, 'pg_restore'), ['--exit-on-error', '-h', destination.host, '-p', String(destination.port), '-U', user, '-d', DB, file],
    { env: { ...process.env, PGPASSWORD: password } });
}

/** Everything about ownership and privileges in the migrated database, as comparable rows. */
async function catalogs(server: PgServer): Promise<Record<string, unknown[]>> {
  const q = (sql: string) => server.query(sql, DB);
  const userNsp = `n.nspname IN ('app', 'audit', 'public')`;
  return {
    relations: await q(`SELECT n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner) AS owner, c.relacl::text AS acl
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${userNsp} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') ORDER BY 1, 2`),
    columns: await q(`SELECT c.relname, a.attname, a.attacl::text AS acl FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${userNsp} AND a.attacl IS NOT NULL ORDER BY 1, 2`),
    schemas: await q(`SELECT n.nspname, pg_get_userbyid(n.nspowner) AS owner, n.nspacl::text AS acl FROM pg_namespace n WHERE ${userNsp} ORDER BY 1`),
    functions: await q(`SELECT p.proname, pg_get_userbyid(p.proowner) AS owner, p.proacl::text AS acl FROM pg_proc p
      JOIN pg_namespace n ON n.oid = p.pronamespace WHERE ${userNsp} ORDER BY 1`),
    types: await q(`SELECT t.typname, pg_get_userbyid(t.typowner) AS owner, t.typacl::text AS acl FROM pg_type t
      JOIN pg_namespace n ON n.oid = t.typnamespace WHERE ${userNsp} AND t.typtype = 'e' ORDER BY 1`),
    defaultAcls: await q(`SELECT pg_get_userbyid(d.defaclrole) AS role, n.nspname, d.defaclobjtype::text, d.defaclacl::text AS acl
      FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace ORDER BY 1, 2, 3`),
    policies: await q(`SELECT schemaname, tablename, policyname, permissive, roles::text, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2, 3`),
    rowSecurity: await q(`SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ${userNsp} AND c.relkind = 'r' ORDER BY 1`),
    database: await q(`SELECT pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment,
      ARRAY(SELECT format('%s=%s%s', coalesce(nullif(pg_get_userbyid(a.grantee), '-'), 'PUBLIC'), a.privilege_type, CASE WHEN a.is_grantable THEN '*' ELSE '' END)
            FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee = 0 OR a.grantee <> d.datdba ORDER BY 1)::text AS grants
      FROM pg_database d WHERE d.datname = '${DB}'`),
    settings: await q(`SELECT coalesce(r.rolname, '') AS role, s.setconfig::text FROM pg_db_role_setting s
      JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE d.datname = '${DB}' ORDER BY 1`),
  };
}

/** Attributes, password verifier, role-wide settings and comment of the given roles. */
async function roleRows(server: PgServer, names: readonly string[]): Promise<unknown[]> {
  const list = names.map((n) => `'${n.replace(/'/g, "''")}'`).join(', ');
  return server.query(`
    SELECT a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin, a.rolreplication, a.rolbypassrls,
           a.rolconnlimit, a.rolvaliduntil::text, a.rolpassword,
           (SELECT setconfig::text FROM pg_db_role_setting s WHERE s.setrole = a.oid AND s.setdatabase = 0) AS settings,
           shobj_description(a.oid, 'pg_authid') AS comment
    FROM pg_authid a WHERE a.rolname IN (${list}) ORDER BY 1`);
}

/** Memberships whose member is one of the given roles. */
async function membershipRows(server: PgServer, members: readonly string[]): Promise<unknown[]> {
  const list = members.map((n) => `'${n.replace(/'/g, "''")}'`).join(', ');
  return server.query(`
    SELECT r.rolname AS role, m.rolname AS member, a.admin_option FROM pg_auth_members a
    JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member WHERE m.rolname IN (${list}) ORDER BY 1, 2`);
}

/** No password or verifier anywhere in what the step returns or logs. */
function expectNoSecrets(result: RoleMigrationResult): void {
  const text = JSON.stringify(result) + JSON.stringify(describeRoleResult(result));
  for (const secret of [APP_PW, ANALYST_PW, READER_PW, MIGRATOR_PW, source.superPassword, 'SCRAM-SHA-256$', 'md5']) {
    expect(text).not.toContain(secret);
  }
}

async function connectAs(server: PgServer, user: string, password: string, database = DB): Promise<Client> {
  const c = new Client({ host: server.host, port: server.port, user, password, database });
  await c.connect();
  return c;
}

async function carryDatabaseSettings(destination: PgServer, user: string, password: string) {
  const src = await connectAs(source, source.superuser, source.superPassword);
  const dst = await connectAs(destination, user, password);
  try {
    return await applyDatabaseSettings(dst, DB, await readDatabaseSettings(src, DB), { carryOwner: true, carryComment: true });
  } finally {
    await src.end();
    await dst.end();
  }
}

describe('planRoles', () => {
  it('given referenced: owners, grantees, policy roles, per-database settings and the roles they are members of; never pg_* or the bootstrap superuser', async () => {
    const dest = await newDestination('roles-plan');
    const { config, db, env } = setup(dest, 'referenced');
    const plan = await planRoles(config, db, env);
    expect(plan.roles.map((r) => r.name)).toEqual(REFERENCED);
    const why = Object.fromEntries(plan.roles.map((r) => [r.name, r.reasons]));
    expect(why).toMatchObject({
      app_owner: ['database-owner', 'owner'],
      auditor: ['owner'],
      app_reader: ['grantee', 'member', 'policy'],
      app_writer: ['grantee', 'member', 'policy'],
      app: ['grantee', 'setting'],
      analyst: ['policy'],
      app_group: ['member'],
      settings_only: ['setting'],
      tenant_admin: ['grantee'],
      [WEIRD]: ['grantee'],
      src_reader: ['grantee'],
    });
    expect(plan.roles.find((r) => r.name === 'app_group')?.memberOf).toEqual(['app']);
    expect(plan.excluded).toEqual([{ name: 'postgres', reason: expect.stringContaining('bootstrap superuser') }]);
  });

  it('given all: every role but pg_* and the bootstrap superuser; given none: nothing, without connecting', async () => {
    const dest = await newDestination('roles-plan-all');
    const all = setup(dest, 'all');
    const plan = await planRoles(all.config, all.db, all.env);
    expect(plan.roles.map((r) => r.name)).toEqual([...REFERENCED, 'unrelated'].sort());
    const none = setup(dest, 'none', { src: { password: null } }); // no password: a connection attempt would throw
    expect(await planRoles(none.config, none.db, none.env)).toEqual({ mode: 'none', database: DB, roles: [], excluded: [] });
  });

  it('given dump.excludeSchemas: roles only the excluded schema names are left out', async () => {
    const dest = await newDestination('roles-plan-excl');
    const t = makeRuntimeConfig({
      source, destination: dest,
      databases: [{ name: 'shop', source: { database: DB }, destination: { database: DB } }],
      migration: { roles: 'referenced', dump: { excludeSchemas: ['audit'] } },
    });
    cleanups.push(t.cleanup);
    const plan = await planRoles(t.config, t.config.databases[0], t.env);
    expect(plan.roles.map((r) => r.name)).not.toContain('auditor');
    expect(plan.roles.map((r) => r.name)).not.toContain('tenant_admin');
    expect(plan.roles.map((r) => r.name)).toContain('app_owner');
  });
});

describe('migrateRoles with a superuser destination user', () => {
  let dest: PgServer;
  let result: RoleMigrationResult;
  let plan: RolePlan;
  let readerBefore: unknown[];

  beforeAll(async () => {
    dest = await newDestination('roles-dst-super');
    // An existing role with other attributes and memberships than the source's.
    await dest.query(`CREATE ROLE dest_team NOLOGIN; CREATE ROLE app_reader LOGIN CREATEDB CONNECTION LIMIT 3 PASSWORD 'dest-only-pw' IN ROLE dest_team;
      COMMENT ON ROLE app_reader IS 'destination''s own'`);
    readerBefore = [await roleRows(dest, ['app_reader']), await membershipRows(dest, ['app_reader'])];
    const { config, db, env } = setup(dest, 'referenced');
    plan = await planRoles(config, db, env);
    const outlook = await (async () => {
      const c = await connect({ ...db.destination, database: 'postgres' }, env, { readOnly: false, connectTimeoutSeconds: 5 });
      try { return await rolesToCreate(c, plan); } finally { await c.end(); }
    })();
    expect(outlook).toEqual({
      create: REFERENCED.filter((r) => r !== 'app_reader'), existing: ['app_reader'], canCreate: true, superuser: true,
    });
    result = await migrateRoles(config, db, env, { binDir: PG_BIN, plan });
  });

  it('creates every missing planned role and leaves the existing one as is', () => {
    expect(result.created.sort()).toEqual(REFERENCED.filter((r) => r !== 'app_reader'));
    expect(result.existing).toEqual(['app_reader']);
    expect(result.skipped).toEqual([]);
    expect(result.passwords).toBe('carried');
    expect(result.warnings).toEqual([]);
    expect(result.selfGranted).toEqual([]);
    expect(describeRoleResult(result).map((l) => l.text)).toContain('exists, left as is: app_reader');
    expectNoSecrets(result);
  });

  it('the created roles are identical to the source roles: attributes, password verifiers, role settings, comments', async () => {
    const created = REFERENCED.filter((r) => r !== 'app_reader');
    expect(await roleRows(dest, created)).toEqual(await roleRows(source, created));
    // The carried verifier lets the application log in with its old password.
    const c = await connectAs(dest, 'app', APP_PW, 'postgres');
    await c.end();
  });

  it('grants the memberships of created roles, including in an existing role; the existing role is untouched', async () => {
    const created = REFERENCED.filter((r) => r !== 'app_reader');
    expect(await membershipRows(dest, created)).toEqual(await membershipRows(source, created));
    expect(result.memberships.granted).toEqual(expect.arrayContaining([
      { role: 'app_reader', member: 'app_writer', admin: false },
      { role: 'app_writer', member: 'app', admin: false },
      { role: 'app_group', member: 'app', admin: true },
    ]));
    expect([await roleRows(dest, ['app_reader']), await membershipRows(dest, ['app_reader'])]).toEqual(readerBefore);
  });

  it('then pg_restore without --no-owner/--no-acl succeeds, and owners, ACLs, policies and settings arrive identical', async () => {
    await dest.query(`CREATE DATABASE ${DB}`);
    await dumpAndRestore(dest, dest.superuser, dest.superPassword);
    const settings = await carryDatabaseSettings(dest, dest.superuser, dest.superPassword);
    expect(settings.warnings).toEqual([]);
    const [want, got] = await Promise.all([catalogs(source), catalogs(dest)]);
    expect(got).toEqual(want);
    expect(want.policies).toHaveLength(2);
    expect(want.settings).toHaveLength(3);
    expect(want.relations.map((r) => (r as { owner: string }).owner)).toEqual(['app_owner', 'app_owner', 'auditor', 'auditor']);
    expect(want.defaultAcls).toHaveLength(1);
  });

  it('run again: every role exists, nothing is created or granted', async () => {
    const { config, db, env } = setup(dest, 'referenced');
    const again = await migrateRoles(config, db, env, { binDir: PG_BIN });
    expect(again.created).toEqual([]);
    expect(again.existing.sort()).toEqual(REFERENCED);
    expect(again.memberships.granted).toEqual([]);
    expect(again.memberships.present.length).toBeGreaterThan(0);
  });
});

describe('migrateRoles with a non-superuser CREATEROLE destination user (PostgreSQL 15)', () => {
  let dest: PgServer;
  let result: RoleMigrationResult;

  beforeAll(async () => {
    dest = await newDestination('roles-dst-createrole');
    await dest.createRole('migrator', MIGRATOR_PW, 'CREATEROLE CREATEDB');
    await dest.query(`CREATE DATABASE ${DB} OWNER migrator`);
    const { config, db, env } = setup(dest, 'referenced', { dst: { username: 'migrator', password: MIGRATOR_PW } });
    result = await migrateRoles(config, db, env, { binDir: PG_BIN });
  });

  it('creates the roles, without the attributes only a superuser may grant, naming role and attribute', () => {
    expect(result.created.sort()).toEqual(REFERENCED);
    expect(result.existing).toEqual([]);
    const messages = result.warnings.map((w) => w.message);
    expect(messages).toEqual([
      'role tenant_admin created without REPLICATION: user migrator may not grant it (only a superuser may); an administrator can add it',
      'role tenant_admin created without BYPASSRLS: user migrator may not grant it (only a superuser may); an administrator can add it',
    ]);
    expect(result.warnings.map((w) => w.sql)).toEqual(['ALTER ROLE "tenant_admin" REPLICATION;', 'ALTER ROLE "tenant_admin" BYPASSRLS;']);
    expectNoSecrets(result);
  });

  it('makes the user a member of the owner roles it created, so the restore can give them objects', async () => {
    expect(result.selfGranted.sort()).toEqual(['app_owner', 'auditor']);
    const rows = await dest.query<{ ok: boolean }>(`SELECT pg_has_role('migrator', 'app_owner', 'MEMBER') AND pg_has_role('migrator', 'auditor', 'MEMBER') AS ok`);
    expect(rows[0].ok).toBe(true);
  });

  it('the created roles match the source except for the attributes it could not grant', async () => {
    const same = REFERENCED.filter((r) => r !== 'tenant_admin');
    expect(await roleRows(dest, same)).toEqual(await roleRows(source, same));
    const [t] = await dest.query<{ rolbypassrls: boolean; rolreplication: boolean; rolcreatedb: boolean }>(
      `SELECT rolbypassrls, rolreplication, rolcreatedb FROM pg_roles WHERE rolname = 'tenant_admin'`);
    expect(t).toEqual({ rolbypassrls: false, rolreplication: false, rolcreatedb: true });
    expect(await membershipRows(dest, REFERENCED)).toEqual(await membershipRows(source, REFERENCED));
  });

  it('then pg_restore as that user without --no-owner/--no-acl succeeds, and everything arrives identical', async () => {
    await dumpAndRestore(dest, 'migrator', MIGRATOR_PW);
    const settings = await carryDatabaseSettings(dest, 'migrator', MIGRATOR_PW);
    expect(settings.warnings).toEqual([]);
    expect(settings.applied.at(-1)).toBe(`ALTER DATABASE "${DB}" OWNER TO "app_owner";`);
    expect(await catalogs(dest)).toEqual(await catalogs(source));
  });
});

describe('migrateRoles: none, all, and a source user that cannot read passwords', () => {
  let dest: PgServer;
  let dest2: PgServer;
  const roleNames = async (s: PgServer) => (await s.query<{ rolname: string }>('SELECT rolname FROM pg_roles ORDER BY 1')).map((r) => r.rolname);

  beforeAll(async () => {
    [dest, dest2] = await Promise.all([newDestination('roles-dst-none'), newDestination('roles-dst-all')]);
  });

  it("given none: creates nothing, and the plain restore then fails on the missing roles", async () => {
    const before = await roleNames(dest);
    const { config, db, env } = setup(dest, 'none');
    const result = await migrateRoles(config, db, env, { binDir: PG_BIN });
    expect(result).toMatchObject({ mode: 'none', created: [], existing: [], skipped: [], warnings: [] });
    expect(describeRoleResult(result)).toEqual([]);
    expect(await roleNames(dest)).toEqual(before);
    await dest.query(`CREATE DATABASE ${DB}`);
    await expect(dumpAndRestore(dest, dest.superuser, dest.superPassword)).rejects.toThrow(/role "app_owner" does not exist/);
    await dest.query(`DROP DATABASE ${DB}`);
  });

  it('given a source user that is not superuser: roles are created without passwords, with the warning', async () => {
    const { config, db, env } = setup(dest, 'referenced', { src: { username: 'src_reader', password: READER_PW } });
    const result = await migrateRoles(config, db, env, { binDir: PG_BIN });
    expect(result.created.sort()).toEqual(REFERENCED);
    expect(result.passwords).toBe('not-readable');
    const warning = result.warnings.find((w) => w.message.startsWith(NO_PASSWORDS_WARNING));
    expect(warning?.message).toBe(`${NO_PASSWORDS_WARNING} (source user src_reader cannot read pg_authid, so pg_dumpall ran with `
      + '--no-role-passwords): analyst, app, src_reader');
    const pw = await dest.query<{ rolname: string; rolpassword: string | null; rolcanlogin: boolean }>(
      `SELECT rolname, rolpassword, rolcanlogin FROM pg_authid WHERE rolname IN ('app', 'analyst', 'src_reader') ORDER BY 1`);
    expect(pw).toEqual([
      { rolname: 'analyst', rolpassword: null, rolcanlogin: true },
      { rolname: 'app', rolpassword: null, rolcanlogin: true },
      { rolname: 'src_reader', rolpassword: null, rolcanlogin: true },
    ]);
    expectNoSecrets(result);
    // Everything but the verifiers matches.
    const strip = (rows: unknown[]) => rows.map((r) => ({ ...(r as object), rolpassword: undefined }));
    expect(strip(await roleRows(dest, REFERENCED))).toEqual(strip(await roleRows(source, REFERENCED)));
  });

  it('given all: every non-system role but the bootstrap superuser', async () => {
    const before = await roleNames(dest2);
    const { config, db, env } = setup(dest2, 'all');
    const result = await migrateRoles(config, db, env, { binDir: PG_BIN });
    expect(result.created.sort()).toEqual([...REFERENCED, 'unrelated'].sort());
    expect((await roleNames(dest2)).filter((r) => !before.includes(r)).sort()).toEqual([...REFERENCED, 'unrelated'].sort());
    expect(result.plan.excluded.map((e) => e.name)).toEqual(['postgres']);
    expectNoSecrets(result);
  });
});

describe('reading pg_dumpall output', () => {
  it('reads role names, options, settings, comments and memberships statement by statement, quotes and all', () => {
    const text = [
      '--', '-- Roles', '--', '\\restrict abc123', '',
      'SET default_transaction_read_only = off;',
      'CREATE ROLE "we""ird; role";',
      `ALTER ROLE "we""ird; role" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3 PASSWORD 'SCRAM-SHA-256$4096:abc;def' VALID UNTIL '2030-01-01 00:00:00+00';`,
      `COMMENT ON ROLE "we""ird; role" IS 'multi`, `line; it''s -- not a comment';`,
      `ALTER ROLE app SET search_path TO 'app', '$user', 'public';`,
      `ALTER ROLE app SET "my.custom" TO 'x';`,
      `ALTER ROLE app IN DATABASE shop SET work_mem TO '8MB';`,
      'GRANT app_owner TO "we""ird; role" WITH ADMIN OPTION GRANTED BY postgres;',
      'GRANT app_owner TO app WITH INHERIT TRUE, SET FALSE GRANTED BY postgres;', // PostgreSQL 16 form
      'GRANT SET ON PARAMETER work_mem TO app;',
      '/* a /* nested */ comment */', '\\unrestrict abc123',
    ].join('\n');
    const parsed = parseDumpallRoles(text);
    expect(parsed.problems).toEqual([]);
    expect(parsed.roles.get('we"ird; role')).toEqual({
      name: 'we"ird; role',
      flags: { SUPERUSER: false, INHERIT: true, CREATEROLE: false, CREATEDB: false, LOGIN: true, REPLICATION: false, BYPASSRLS: false },
      connectionLimit: 3, password: 'SCRAM-SHA-256$4096:abc;def', validUntil: '2030-01-01 00:00:00+00',
      comment: "multi\nline; it's -- not a comment", settings: [],
    });
    expect(parsed.roles.get('app')?.settings).toEqual([
      { name: 'search_path', valueSql: "'app', '$user', 'public'" },
      { name: 'my.custom', valueSql: "'x'" },
    ]);
    expect(parsed.memberships).toEqual([
      { role: 'app_owner', member: 'we"ird; role', admin: true },
      { role: 'app_owner', member: 'app', admin: false },
    ]);
    expect(parsed.ignored).toBe(2); // IN DATABASE (database-settings' business) and GRANT SET ON PARAMETER
  });

  it('fails on an unterminated literal rather than guessing where a statement ends', () => {
    expect(() => tokenizeStatements("CREATE ROLE a; COMMENT ON ROLE a IS 'open")).toThrow(/unterminated string literal/);
  });

  it('reports an unknown role option without the statement text (it may hold a password)', () => {
    const parsed = parseDumpallRoles(`ALTER ROLE a WITH LOGIN FROBNICATE PASSWORD 'SCRAM-SHA-256$secret';`);
    expect(parsed.problems).toEqual(['role a: unknown role option FROBNICATE']);
  });
});
