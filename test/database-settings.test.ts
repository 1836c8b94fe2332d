/**
 * Database-level settings carried on real PostgreSQL 15 servers: ALTER DATABASE ... SET (list values, custom
 * and superuser-only settings), ALTER ROLE ... IN DATABASE ... SET, privileges on the database (including
 * PUBLIC's revoked defaults), its comment and its owner. What the destination user may not do comes back as
 * warnings whose SQL, run by a superuser, makes the destination identical to the source.
 */
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  applyDatabaseSettings, readDatabaseSettings, settingValueSql, splitGucList, type DatabaseSettings,
} from '../src/runner/globals/database-settings';
import { startPgServer, type PgServer } from './support/pg-server';

const SRC_DB = 'ledger';
const ROLES_SQL = `
  CREATE ROLE ds_owner NOLOGIN;
  CREATE ROLE ds_app LOGIN PASSWORD 'ds-app-pw';
  CREATE ROLE ds_ops NOLOGIN;
`;

let source: PgServer;
let dest: PgServer;
let bare: PgServer;
let settings: DatabaseSettings;

beforeAll(async () => {
  [source, dest, bare] = await Promise.all([
    startPgServer({ name: 'dbset-src' }), startPgServer({ name: 'dbset-dst' }), startPgServer({ name: 'dbset-bare' }),
  ]);
  await source.query(ROLES_SQL);
  await source.query(`CREATE DATABASE ${SRC_DB} OWNER ds_owner`);
  await source.query(`
    ALTER DATABASE ${SRC_DB} SET work_mem = '8MB';
    ALTER DATABASE ${SRC_DB} SET search_path = "Ledger Data", "$user", public;
    ALTER DATABASE ${SRC_DB} SET my.tenant = 'o''hara';
    ALTER DATABASE ${SRC_DB} SET log_min_duration_statement = '250ms';
    ALTER ROLE ds_app IN DATABASE ${SRC_DB} SET search_path = ledger, public;
    ALTER ROLE ds_app IN DATABASE ${SRC_DB} SET statement_timeout = '5s';
    ALTER ROLE ds_ops IN DATABASE ${SRC_DB} SET work_mem = '64MB';
    REVOKE CONNECT, TEMPORARY ON DATABASE ${SRC_DB} FROM PUBLIC;
    GRANT CONNECT ON DATABASE ${SRC_DB} TO ds_app;
    GRANT CONNECT, TEMPORARY ON DATABASE ${SRC_DB} TO ds_ops WITH GRANT OPTION;
    COMMENT ON DATABASE ${SRC_DB} IS 'ledger; it''s money';
  `);
  await dest.query(ROLES_SQL);
  const src = await superClient(source, SRC_DB);
  try {
    settings = await readDatabaseSettings(src, SRC_DB);
  } finally {
    await src.end();
  }
});

afterAll(async () => {
  await Promise.all([source, dest, bare].filter(Boolean).map((s) => s.destroy()));
});

async function superClient(server: PgServer, database: string): Promise<Client> {
  return login(server, server.superuser, server.superPassword, database);
}

async function login(server: PgServer, user: string, password: string, database: string): Promise<Client> {
  const c = new Client({ host: server.host, port: server.port, user, password, database });
  await c.connect();
  return c;
}

/** Everything this module carries, independent of the database's name. */
async function databaseState(server: PgServer, db: string): Promise<unknown> {
  const [row] = await server.query(`
    SELECT pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment,
      ARRAY(SELECT format('%s=%s%s', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,
                          CASE WHEN a.is_grantable THEN '*' ELSE '' END)
            FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE a.grantee <> d.datdba ORDER BY 1)::text AS grants,
      ARRAY(SELECT format('%s: %s', coalesce(r.rolname, '(database)'), s.setconfig::text) FROM pg_db_role_setting s
            LEFT JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = d.oid ORDER BY 1)::text AS settings
    FROM pg_database d WHERE d.datname = '${db}'`);
  return row;
}

describe('readDatabaseSettings', () => {
  it('reads ALTER DATABASE SET, ALTER ROLE IN DATABASE SET, the grants, the comment and the owner', () => {
    expect(settings).toEqual({
      database: SRC_DB,
      owner: 'ds_owner',
      settings: [
        { name: 'work_mem', value: '8MB' },
        { name: 'search_path', value: '"Ledger Data", "$user", public' },
        { name: 'my.tenant', value: "o'hara" },
        { name: 'log_min_duration_statement', value: '250ms' },
      ],
      roleSettings: [
        { role: 'ds_app', name: 'search_path', value: 'ledger, public' },
        { role: 'ds_app', name: 'statement_timeout', value: '5s' },
        { role: 'ds_ops', name: 'work_mem', value: '64MB' },
      ],
      grants: [
        { grantee: 'ds_app', privilege: 'CONNECT', grantable: false },
        { grantee: 'ds_ops', privilege: 'CONNECT', grantable: true },
        { grantee: 'ds_ops', privilege: 'TEMPORARY', grantable: true },
      ],
      comment: "ledger; it's money",
    });
  });

  it('fails for a database that does not exist', async () => {
    const c = await superClient(source, 'postgres');
    try {
      await expect(readDatabaseSettings(c, 'nope')).rejects.toThrow('database nope does not exist on the source');
    } finally {
      await c.end();
    }
  });
});

describe('applyDatabaseSettings', () => {
  it('as a superuser: everything arrives identical, the owner last; a second run changes nothing', async () => {
    await dest.query('CREATE DATABASE ledger_copy');
    const c = await superClient(dest, 'ledger_copy');
    try {
      const first = await applyDatabaseSettings(c, 'ledger_copy', settings, { carryOwner: true, carryComment: true });
      expect(first.warnings).toEqual([]);
      expect(first.applied).toEqual([
        `COMMENT ON DATABASE "ledger_copy" IS 'ledger; it''s money';`,
        `ALTER DATABASE "ledger_copy" SET work_mem TO '8MB';`,
        `ALTER DATABASE "ledger_copy" SET search_path TO 'Ledger Data', '$user', 'public';`,
        `ALTER DATABASE "ledger_copy" SET my.tenant TO 'o''hara';`,
        `ALTER DATABASE "ledger_copy" SET log_min_duration_statement TO '250ms';`,
        `ALTER ROLE "ds_app" IN DATABASE "ledger_copy" SET search_path TO 'ledger', 'public';`,
        `ALTER ROLE "ds_app" IN DATABASE "ledger_copy" SET statement_timeout TO '5s';`,
        `ALTER ROLE "ds_ops" IN DATABASE "ledger_copy" SET work_mem TO '64MB';`,
        `GRANT CONNECT ON DATABASE "ledger_copy" TO "ds_app";`,
        `GRANT CONNECT ON DATABASE "ledger_copy" TO "ds_ops" WITH GRANT OPTION;`,
        `GRANT TEMPORARY ON DATABASE "ledger_copy" TO "ds_ops" WITH GRANT OPTION;`,
        `REVOKE CONNECT ON DATABASE "ledger_copy" FROM PUBLIC;`,
        `REVOKE TEMPORARY ON DATABASE "ledger_copy" FROM PUBLIC;`,
        `ALTER DATABASE "ledger_copy" OWNER TO "ds_owner";`,
      ]);
      expect(await databaseState(dest, 'ledger_copy')).toEqual(await databaseState(source, SRC_DB));

      const second = await applyDatabaseSettings(c, 'ledger_copy', settings, { carryOwner: true, carryComment: true });
      expect(second.applied).toEqual([]);
      expect(second.warnings).toEqual([]);
      expect(second.unchanged).toHaveLength(first.applied.length - 2); // the two REVOKEs have nothing left to match
    } finally {
      await c.end();
    }
    // The setting really applies to sessions of that role in that database.
    const app = await login(dest, 'ds_app', 'ds-app-pw', 'ledger_copy');
    try {
      expect((await app.query('SHOW search_path')).rows[0].search_path).toBe('ledger, public');
      expect((await app.query('SHOW work_mem')).rows[0].work_mem).toBe('8MB');
    } finally {
      await app.end();
    }
  });

  it('given carryOwner false and the default carryComment: owner and comment (the progress marker) stay; the comment is deferred', async () => {
    await dest.query('CREATE DATABASE ledger_keep');
    await dest.query(`COMMENT ON DATABASE ledger_keep IS 'db-migration {"state":"restoring"}'`);
    const c = await superClient(dest, 'ledger_keep');
    try {
      const r = await applyDatabaseSettings(c, 'ledger_keep', settings, { carryOwner: false });
      expect(r.applied.some((s) => s.includes('OWNER TO') || s.startsWith('COMMENT'))).toBe(false);
      expect(r.deferred).toEqual([{
        message: "the comment of database ledger_keep was not carried: it holds db-migration's progress marker until the migration is over",
        sql: `COMMENT ON DATABASE "ledger_keep" IS 'ledger; it''s money';`,
      }]);
      const [row] = await dest.query<{ owner: string; comment: string }>(
        `SELECT pg_get_userbyid(datdba) AS owner, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = 'ledger_keep'`);
      expect(row).toEqual({ owner: 'postgres', comment: 'db-migration {"state":"restoring"}' });
    } finally {
      await c.end();
    }
  });

  it('as a user who may do nothing: only warnings, whose SQL run by a superuser makes the database identical', async () => {
    await dest.query(`CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'`);
    await dest.query('CREATE DATABASE ledger_admin');
    const c = await login(dest, 'outsider', 'outsider-pw', 'ledger_admin');
    let r;
    try {
      r = await applyDatabaseSettings(c, 'ledger_admin', settings, { carryOwner: true, carryComment: true });
    } finally {
      await c.end();
    }
    expect(r.applied).toEqual([]);
    expect(r.warnings).toHaveLength(14);
    expect(r.warnings[1]).toEqual({
      message: 'cannot set work_mem on database ledger_admin: must be owner of database ledger_admin; an administrator can run the SQL',
      sql: `ALTER DATABASE "ledger_admin" SET work_mem TO '8MB';`,
    });
    expect(await databaseState(dest, 'ledger_admin')).not.toEqual(await databaseState(source, SRC_DB));
    await dest.query(r.warnings.map((w) => w.sql).join('\n'), 'ledger_admin');
    expect(await databaseState(dest, 'ledger_admin')).toEqual(await databaseState(source, SRC_DB));
  });

  it('as the database owner without superuser: applies what an owner may, warns with SQL for the rest', async () => {
    await dest.query(`CREATE ROLE dbowner LOGIN CREATEDB PASSWORD 'dbowner-pw'`);
    await dest.query('CREATE DATABASE ledger_own OWNER dbowner');
    const c = await login(dest, 'dbowner', 'dbowner-pw', 'ledger_own');
    let r;
    try {
      r = await applyDatabaseSettings(c, 'ledger_own', settings, { carryOwner: true, carryComment: true });
    } finally {
      await c.end();
    }
    expect(r.warnings.map((w) => w.sql)).toEqual([
      `ALTER DATABASE "ledger_own" SET my.tenant TO 'o''hara';`, // PostgreSQL 15: placeholders need superuser (or GRANT SET)
      `ALTER DATABASE "ledger_own" SET log_min_duration_statement TO '250ms';`, // superuser-only setting
      `ALTER ROLE "ds_app" IN DATABASE "ledger_own" SET search_path TO 'ledger', 'public';`, // needs CREATEROLE
      `ALTER ROLE "ds_app" IN DATABASE "ledger_own" SET statement_timeout TO '5s';`,
      `ALTER ROLE "ds_ops" IN DATABASE "ledger_own" SET work_mem TO '64MB';`,
      `ALTER DATABASE "ledger_own" OWNER TO "ds_owner";`, // not a member of ds_owner
    ]);
    expect(r.warnings[5].message).toMatch(/^cannot make ds_owner owner of database ledger_own: must be (able to SET ROLE|member of role) "ds_owner"/);
    expect(r.applied).toHaveLength(8);
    await dest.query(r.warnings.map((w) => w.sql).join('\n'), 'ledger_own');
    expect(await databaseState(dest, 'ledger_own')).toEqual(await databaseState(source, SRC_DB));
  });

  it('given roles missing on the destination: warns with CREATE ROLE and the statement, applies the rest', async () => {
    await bare.query('CREATE ROLE ds_app LOGIN');
    await bare.query('CREATE DATABASE ledger');
    const c = await superClient(bare, 'ledger');
    let r;
    try {
      r = await applyDatabaseSettings(c, 'ledger', settings, { carryOwner: true });
    } finally {
      await c.end();
    }
    expect(r.warnings).toEqual([
      {
        message: 'cannot set work_mem for role ds_ops in database ledger: role ds_ops does not exist on the destination (migration.roles creates it)',
        sql: `CREATE ROLE "ds_ops";\nALTER ROLE "ds_ops" IN DATABASE "ledger" SET work_mem TO '64MB';`,
      },
      {
        message: 'cannot grant CONNECT on database ledger: role ds_ops does not exist on the destination (migration.roles creates it)',
        sql: `CREATE ROLE "ds_ops";\nGRANT CONNECT ON DATABASE "ledger" TO "ds_ops" WITH GRANT OPTION;`,
      },
      {
        message: 'cannot grant TEMPORARY on database ledger: role ds_ops does not exist on the destination (migration.roles creates it)',
        sql: `CREATE ROLE "ds_ops";\nGRANT TEMPORARY ON DATABASE "ledger" TO "ds_ops" WITH GRANT OPTION;`,
      },
      {
        message: 'cannot make ds_owner owner of database ledger: role ds_owner does not exist on the destination (migration.roles creates it)',
        sql: `CREATE ROLE "ds_owner";\nALTER DATABASE "ledger" OWNER TO "ds_owner";`,
      },
    ]);
    const [row] = await bare.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = 'ledger'`);
    expect(row.n).toBe(2); // the database's own settings and ds_app's
  });
});

describe('list settings', () => {
  it('splits like PostgreSQL: quoted names keep commas, quotes and case; blanks are trimmed', () => {
    expect(splitGucList('"$user", public')).toEqual(['$user', 'public']);
    expect(splitGucList(' a ,"b, ""c""" ,  D ')).toEqual(['a', 'b, "c"', 'D']);
    expect(splitGucList('')).toEqual([]);
    expect(() => splitGucList('"open')).toThrow(/unterminated/);
  });

  it('renders list settings element by element and others as one literal', () => {
    expect(settingValueSql('search_path', '"Ledger Data", public')).toBe(`'Ledger Data', 'public'`);
    expect(settingValueSql('search_path', '""')).toBe(`''`);
    expect(settingValueSql('work_mem', '8MB')).toBe(`'8MB'`);
    expect(settingValueSql('application_name', 'a, b')).toBe(`'a, b'`);
  });
});
