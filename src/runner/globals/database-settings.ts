/**
 * Database-level state that pg_restore into an existing database never carries: `ALTER DATABASE ... SET`,
 * `ALTER ROLE ... IN DATABASE ... SET`, the privileges on the database (GRANT CONNECT ...), its comment and
 * its owner. Read from the source catalogs, applied on the destination statement by statement: what the
 * destination user may not do comes back as a warning with the exact SQL for an administrator.
 */
import type { Client } from 'pg';
import { classifyError } from '../postgres/errors';
import { displayIdent, quoteIdent, quoteLiteral } from '../postgres/sql';

/** One `name=value` entry of pg_db_role_setting.setconfig. */
export interface SettingEntry {
  readonly name: string;
  /** The stored value, as SHOW would print it. */
  readonly value: string;
}

export interface RoleSettingEntry extends SettingEntry {
  readonly role: string;
}

export type DatabasePrivilege = 'CONNECT' | 'CREATE' | 'TEMPORARY';

export interface DatabaseGrant {
  /** Role name; null for PUBLIC. */
  readonly grantee: string | null;
  readonly privilege: DatabasePrivilege;
  readonly grantable: boolean;
}

export interface DatabaseSettings {
  /** The source database they were read from. */
  readonly database: string;
  readonly owner: string;
  /** `ALTER DATABASE ... SET` (pg_db_role_setting, setrole = 0). */
  readonly settings: readonly SettingEntry[];
  /** `ALTER ROLE ... IN DATABASE ... SET`, by role name. */
  readonly roleSettings: readonly RoleSettingEntry[];
  /** Privileges on the database held by roles other than the owner, and by PUBLIC (the default when datacl is null). */
  readonly grants: readonly DatabaseGrant[];
  /** COMMENT ON DATABASE; null when there is none. */
  readonly comment: string | null;
}

/** The settings, grants, comment and owner of a database on the source (catalogs readable by any user). */
export async function readDatabaseSettings(source: Client, dbName: string): Promise<DatabaseSettings> {
  const db = await source.query<{ oid: number; owner: string; comment: string | null }>(`
    SELECT d.oid, pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment
    FROM pg_database d WHERE d.datname = $1`, [dbName]);
  if (db.rows.length === 0) throw new Error(`database ${displayIdent(dbName)} does not exist on the source`);
  const { oid, owner, comment } = db.rows[0];
  const cfg = await source.query<{ role: string | null; setconfig: string[] }>(`
    SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, s.setconfig
    FROM pg_db_role_setting s WHERE s.setdatabase = $1
    ORDER BY s.setrole <> 0, 1`, [oid]);
  const settings: SettingEntry[] = [];
  const roleSettings: RoleSettingEntry[] = [];
  for (const row of cfg.rows) {
    for (const entry of row.setconfig ?? []) {
      const e = splitEntry(entry);
      if (row.role === null) settings.push(e); else roleSettings.push({ role: row.role, ...e });
    }
  }
  return { database: dbName, owner, settings, roleSettings, grants: await databaseGrants(source, dbName), comment };
}

export interface ApplyDatabaseSettingsOptions {
  /** Make the source's owner the owner here (ALTER DATABASE ... OWNER TO), when the role exists and the user may. */
  readonly carryOwner: boolean;
  /** Carry GRANT/REVOKE on the database. @default true */
  readonly carryGrants?: boolean;
  /**
   * Carry COMMENT ON DATABASE. Off by default: the destination database's comment holds the runner's progress
   * marker (checks/progress-marker.ts), which must not be overwritten while the migration may still be re-run.
   * @default false - the statement is returned in `deferred`
   */
  readonly carryComment?: boolean;
}

export interface SettingsWarning {
  readonly message: string;
  /** The exact statement for an administrator (a superuser, or the database owner) to run. */
  readonly sql: string;
}

export interface DatabaseSettingsResult {
  /** Statements run, in order. */
  readonly applied: string[];
  /** Statements not run because the destination already matches. */
  readonly unchanged: string[];
  readonly warnings: SettingsWarning[];
  /** Statements deliberately not run (the comment, unless carryComment), to run once the migration is over. */
  readonly deferred: SettingsWarning[];
}

/**
 * Applies settings read by {@link readDatabaseSettings} to `dbName` on the destination. Safe to repeat: what
 * already matches is left alone. The owner changes last, since the user may lose the rights the other
 * statements need once it no longer owns the database; call this after the restore and ANALYZE for the same
 * reason. Settings and grants the destination has beyond the source's are left in place, except privileges of
 * PUBLIC, which are revoked where the source revoked them.
 */
export async function applyDatabaseSettings(
  dest: Client, dbName: string, settings: DatabaseSettings, opts: ApplyDatabaseSettingsOptions,
): Promise<DatabaseSettingsResult> {
  const result: DatabaseSettingsResult = { applied: [], unchanged: [], warnings: [], deferred: [] };
  const dbq = quoteIdent(dbName);
  const dbd = displayIdent(dbName);
  const cur = await dest.query<{ oid: number; owner: string; comment: string | null }>(`
    SELECT d.oid, pg_get_userbyid(d.datdba) AS owner, shobj_description(d.oid, 'pg_database') AS comment
    FROM pg_database d WHERE d.datname = $1`, [dbName]);
  if (cur.rows.length === 0) throw new Error(`database ${dbd} does not exist on the destination`);
  const { oid, owner: currentOwner } = cur.rows[0];

  const wantedRoles = [...new Set([
    settings.owner, ...settings.roleSettings.map((s) => s.role),
    ...settings.grants.flatMap((g) => (g.grantee === null ? [] : [g.grantee])),
  ])];
  const roles = new Set((await dest.query<{ rolname: string }>(
    'SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [wantedRoles])).rows.map((r) => r.rolname));
  const present = await dest.query<{ role: string | null; setconfig: string[] }>(`
    SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, s.setconfig
    FROM pg_db_role_setting s WHERE s.setdatabase = $1`, [oid]);
  const currentValue = new Map<string, string>();
  for (const row of present.rows) {
    for (const entry of row.setconfig ?? []) {
      const e = splitEntry(entry);
      currentValue.set(JSON.stringify([row.role, e.name.toLowerCase()]), e.value);
    }
  }

  const run = async (sql: string, what: string) => {
    try {
      await dest.query(sql);
      result.applied.push(`${sql};`);
    } catch (err) {
      if (classifyError(err).transient) throw err;
      result.warnings.push({ message: `cannot ${what}: ${statementError(err)}; an administrator can run the SQL`, sql: `${sql};` });
    }
  };
  const missingRole = (role: string, sql: string, what: string) => result.warnings.push({
    message: `cannot ${what}: role ${displayIdent(role)} does not exist on the destination (migration.roles creates it)`,
    sql: `CREATE ROLE ${quoteIdent(role)};\n${sql};`,
  });

  // Comment.
  const comment = settings.comment;
  if (comment !== null) {
    const sql = `COMMENT ON DATABASE ${dbq} IS ${quoteLiteral(comment)}`;
    if (comment === cur.rows[0].comment) result.unchanged.push(`${sql};`);
    else if (!opts.carryComment) {
      result.deferred.push({
        message: `the comment of database ${dbd} was not carried: it holds db-migration's progress marker until the migration is over`, sql: `${sql};`,
      });
    } else await run(sql, `set the comment of database ${dbd}`);
  }

  // ALTER DATABASE ... SET.
  for (const s of settings.settings) {
    const sql = `ALTER DATABASE ${dbq} SET ${settingName(s.name)} TO ${settingValueSql(s.name, s.value)}`;
    if (currentValue.get(JSON.stringify([null, s.name.toLowerCase()])) === s.value) { result.unchanged.push(`${sql};`); continue; }
    await run(sql, `set ${s.name} on database ${dbd}`);
  }

  // ALTER ROLE ... IN DATABASE ... SET.
  for (const s of settings.roleSettings) {
    const sql = `ALTER ROLE ${quoteIdent(s.role)} IN DATABASE ${dbq} SET ${settingName(s.name)} TO ${settingValueSql(s.name, s.value)}`;
    const what = `set ${s.name} for role ${displayIdent(s.role)} in database ${dbd}`;
    if (!roles.has(s.role)) { missingRole(s.role, sql, what); continue; }
    if (currentValue.get(JSON.stringify([s.role, s.name.toLowerCase()])) === s.value) { result.unchanged.push(`${sql};`); continue; }
    await run(sql, what);
  }

  // GRANT / REVOKE on the database. Without a grant option PostgreSQL only warns and changes nothing, so each
  // statement is checked against the catalog afterwards.
  if (opts.carryGrants ?? true) {
    const key = (g: Pick<DatabaseGrant, 'grantee' | 'privilege'>) => JSON.stringify([g.grantee, g.privilege]);
    const current = async () => new Map((await databaseGrants(dest, dbName)).map((g) => [key(g), g]));
    const have = await current();
    const wanted = new Set(settings.grants.map(key));
    const changeAndCheck = async (sql: string, what: string, done: (now: Map<string, DatabaseGrant>) => boolean) => {
      const before = result.warnings.length;
      await run(sql, what);
      if (result.warnings.length > before) return;
      if (done(await current())) return;
      result.applied.pop();
      result.warnings.push({ message: `cannot ${what}: user holds no grant option on it (PostgreSQL only warned); an administrator can run the SQL`, sql: `${sql};` });
    };
    for (const g of settings.grants) {
      const to = g.grantee === null ? 'PUBLIC' : quoteIdent(g.grantee);
      const sql = `GRANT ${g.privilege} ON DATABASE ${dbq} TO ${to}${g.grantable ? ' WITH GRANT OPTION' : ''}`;
      const satisfied = (now: Map<string, DatabaseGrant>) => { const h = now.get(key(g)); return !!h && (h.grantable || !g.grantable); };
      if (satisfied(have)) { result.unchanged.push(`${sql};`); continue; }
      if (g.grantee !== null && !roles.has(g.grantee)) { missingRole(g.grantee, sql, `grant ${g.privilege} on database ${dbd}`); continue; }
      await changeAndCheck(sql, `grant ${g.privilege} on database ${dbd} to ${g.grantee === null ? 'PUBLIC' : displayIdent(g.grantee)}`, satisfied);
    }
    // PUBLIC's defaults (CONNECT, TEMPORARY) the source took away.
    for (const h of [...have.values()].filter((x) => x.grantee === null && !wanted.has(key(x)))) {
      await changeAndCheck(`REVOKE ${h.privilege} ON DATABASE ${dbq} FROM PUBLIC`, `revoke ${h.privilege} on database ${dbd} from PUBLIC`,
        (now) => !now.has(key(h)));
    }
  }

  // Owner, last.
  if (opts.carryOwner) {
    const sql = `ALTER DATABASE ${dbq} OWNER TO ${quoteIdent(settings.owner)}`;
    if (currentOwner === settings.owner) result.unchanged.push(`${sql};`);
    else if (!roles.has(settings.owner)) missingRole(settings.owner, sql, `make ${displayIdent(settings.owner)} owner of database ${dbd}`);
    else await run(sql, `make ${displayIdent(settings.owner)} owner of database ${dbd}`);
  }
  return result;
}

/** Privileges on a database held by PUBLIC and by roles other than its owner (the default ACL when none is set). */
async function databaseGrants(client: Client, dbName: string): Promise<DatabaseGrant[]> {
  const res = await client.query<{ grantee: string | null; privilege: DatabasePrivilege; grantable: boolean }>(`
    SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
           a.privilege_type AS privilege, bool_or(a.is_grantable) AS grantable
    FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
    WHERE d.datname = $1 AND a.grantee <> d.datdba
    GROUP BY 1, 2 ORDER BY 1 NULLS FIRST, 2`, [dbName]);
  return res.rows;
}

function splitEntry(entry: string): SettingEntry {
  const eq = entry.indexOf('=');
  return eq < 0 ? { name: entry, value: '' } : { name: entry.slice(0, eq), value: entry.slice(eq + 1) };
}

/** Settings whose value is a list of names (pg_dump's variable_is_guc_list_quote). */
const LIST_SETTINGS = new Set([
  'local_preload_libraries', 'search_path', 'session_preload_libraries', 'shared_preload_libraries', 'temp_tablespaces',
  'unix_socket_directories',
]);

/** A setting name as SQL: each dotted part quoted only where needed. */
export function settingName(name: string): string {
  return name.split('.').map((p) => (/^[a-z_][a-z0-9_]*$/.test(p) ? p : quoteIdent(p))).join('.');
}

/**
 * The value part of `SET name TO ...` that stores exactly `value` again. A list setting (search_path ...) is
 * split into its elements, each a literal, as pg_dump does: one literal would become a single quoted name.
 */
export function settingValueSql(name: string, value: string): string {
  if (!LIST_SETTINGS.has(name.toLowerCase())) return quoteLiteral(value);
  const items = splitGucList(value);
  return items.length === 0 ? "''" : items.map(quoteLiteral).join(', ');
}

/** PostgreSQL's SplitGUCList: comma-separated, elements optionally double-quoted ("" inside), blanks trimmed. */
export function splitGucList(value: string): string[] {
  const out: string[] = [];
  let i = 0;
  const n = value.length;
  const skipBlanks = () => { while (i < n && /\s/.test(value[i])) i++; };
  skipBlanks();
  if (i >= n) return out;
  for (;;) {
    let item = '';
    if (value[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) throw new Error(`unterminated quoted name in list setting value ${JSON.stringify(value)}`);
        if (value[i] === '"') {
          if (value[i + 1] === '"') { item += '"'; i += 2; continue; }
          i++;
          break;
        }
        item += value[i++];
      }
    } else {
      const start = i;
      while (i < n && value[i] !== ',') i++;
      item = value.slice(start, i).replace(/\s+$/, '');
    }
    out.push(item);
    skipBlanks();
    if (i >= n) return out;
    if (value[i] !== ',') throw new Error(`unexpected character in list setting value ${JSON.stringify(value)}`);
    i++;
    skipBlanks();
  }
}

/** The server's own message for a failed statement: it says what is missing ("must be owner of database x"). */
export function statementError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
