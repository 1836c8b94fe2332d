/**
 * Which roles a migrated database needs on the destination (`migration.roles`). Read from the source's
 * catalogs only (all readable without superuser), so the plan is data a dry run and pre-flight can show.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';
import { schemaMatcher } from '../checks/dumped-schemas';

export type RolesMode = RuntimeConfig['migration']['roles'];

/** Why a role is in the plan. */
export type RoleReason =
  | 'database-owner' // owns the database
  | 'owner' // owns objects (or default privileges) in the dumped schemas, or database-wide objects
  | 'grantee' // holds privileges on the database or its objects
  | 'policy' // named in a row-level security policy
  | 'setting' // has settings in this database (ALTER ROLE ... IN DATABASE ... SET)
  | 'user-mapping' // has a user mapping for a foreign server
  | 'member' // a planned role is a member of it (so GRANT ... TO works)
  | 'all'; // migration.roles: all

export interface PlannedRole {
  readonly name: string;
  /** Sorted, no duplicates. */
  readonly reasons: readonly RoleReason[];
  /** For 'member': the planned roles that are members of this one. */
  readonly memberOf?: readonly string[];
}

export interface RolePlan {
  readonly mode: RolesMode;
  /** The source database the plan was read from. */
  readonly database: string;
  /** Roles to have on the destination, by name. Empty for 'none'. */
  readonly roles: readonly PlannedRole[];
  /** Roles deliberately left out, with why (the source's bootstrap superuser). */
  readonly excluded: ReadonlyArray<{ readonly name: string; readonly reason: string }>;
}

export interface PlanRolesOptions {
  /** An open read-only session on the source database to use. @default - one is opened and closed */
  readonly client?: Client;
}

/** The roles `config.migration.roles` asks for, for one database, read from its source. */
export async function planRoles(
  config: RuntimeConfig, db: RuntimeDatabase, env: NodeJS.ProcessEnv, opts: PlanRolesOptions = {},
): Promise<RolePlan> {
  const mode = config.migration.roles;
  if (mode === 'none') return { mode, database: db.source.database, roles: [], excluded: [] };
  const client = opts.client ?? await connect(db.source, env, { readOnly: true, connectTimeoutSeconds: config.migration.timeouts.connect });
  try {
    return await planRolesFrom(client, mode, config.migration.dump);
  } finally {
    if (!opts.client) await client.end().catch(() => undefined);
  }
}

/** Roles owning, granted on, or named in what `dump` selects: the pre-flight entry point (it has a session). */
export async function planRolesFrom(
  client: Client, mode: RolesMode, dump: Pick<RuntimeConfig['migration']['dump'], 'schemas' | 'excludeSchemas'>,
): Promise<RolePlan> {
  const database = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0].db;
  if (mode === 'none') return { mode, database, roles: [], excluded: [] };
  const bootstrap = (await client.query<{ name: string }>('SELECT rolname AS name FROM pg_roles WHERE oid = 10')).rows[0]?.name;
  const excluded = bootstrap
    ? [{ name: bootstrap, reason: 'the bootstrap superuser of the source: the destination has its own superuser' }]
    : [];
  const reasons = new Map<string, Set<RoleReason>>();
  const add = (name: string, reason: RoleReason) => {
    if (name.startsWith('pg_') || name === bootstrap) return;
    let set = reasons.get(name);
    if (!set) { set = new Set(); reasons.set(name, set); }
    set.add(reason);
  };

  if (mode === 'all') {
    const all = await client.query<{ name: string }>(`SELECT rolname AS name FROM pg_roles WHERE oid <> 10 AND rolname !~ '^pg_' ORDER BY 1`);
    for (const r of all.rows) add(r.name, 'all');
  } else {
    const matches = schemaMatcher(dump);
    const nsps = await client.query<{ name: string }>('SELECT nspname AS name FROM pg_namespace');
    const schemas = nsps.rows.map((r) => r.name).filter(matches);
    const refs = await client.query<{ name: string; reason: RoleReason }>(REFERENCED_ROLES_SQL, [schemas]);
    for (const r of refs.rows) add(r.name, r.reason);
  }

  // Roles the planned roles are members of, transitively: their GRANTs need them on the destination.
  const memberOf = new Map<string, Set<string>>();
  if (reasons.size > 0) {
    const up = await client.query<{ role: string; member: string }>(`
      WITH RECURSIVE up(roleid, member) AS (
        SELECT m.roleid, m.member FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = ANY($1::text[])
        UNION
        SELECT m.roleid, m.member FROM pg_auth_members m JOIN up ON m.member = up.roleid
      )
      SELECT DISTINCT pg_get_userbyid(roleid) AS role, pg_get_userbyid(member) AS member FROM up ORDER BY 1, 2`, [[...reasons.keys()]]);
    for (const r of up.rows) {
      if (r.role.startsWith('pg_') || r.role === bootstrap) continue;
      if (mode !== 'all') add(r.role, 'member');
      let set = memberOf.get(r.role);
      if (!set) { set = new Set(); memberOf.set(r.role, set); }
      set.add(r.member);
    }
  }

  const roles = [...reasons].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, set]): PlannedRole => {
    const why = [...set].sort();
    const via = set.has('member') ? [...(memberOf.get(name) ?? [])].sort() : undefined;
    return { name, reasons: why, ...(via ? { memberOf: via } : {}) };
  });
  return { mode, database, roles, excluded };
}

/** Objects whose ownership is set with ALTER ... OWNER TO are left out when an extension creates them. */
const NOT_EXT = (classid: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '${classid}'::regclass AND e.objid = ${oid} AND e.deptype = 'e')`;

/**
 * Every role the restore of the selected schemas (and the database-level settings) names: owners and ACL
 * grantees of schemas, relations (and their columns), functions, types, default privileges, the other
 * schema-bound objects pg_dump sets owners of; owners/grantees of database-wide objects pg_dump carries
 * (foreign data wrappers and servers, procedural languages, large objects, event triggers, publications);
 * roles in RLS policies; roles with user mappings; and the database's owner, grantees and per-database role
 * settings. $1: the dumped schemas.
 */
const REFERENCED_ROLES_SQL = `
WITH db AS (SELECT oid, datdba, datacl FROM pg_database WHERE datname = current_database()),
objs(owner, acl) AS (
  SELECT n.nspowner, n.nspacl FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
  UNION ALL
  SELECT c.relowner, c.relacl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND ${NOT_EXT('pg_class', 'c.oid')}
  UNION ALL
  SELECT c.relowner, a.attacl FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = ANY($1::text[]) AND a.attacl IS NOT NULL AND NOT a.attisdropped
  UNION ALL
  SELECT p.proowner, p.proacl FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = ANY($1::text[]) AND ${NOT_EXT('pg_proc', 'p.oid')}
  UNION ALL
  SELECT t.typowner, t.typacl FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = ANY($1::text[]) AND t.typtype IN ('b', 'd', 'e', 'r', 'm') AND ${NOT_EXT('pg_type', 't.oid')}
  UNION ALL
  SELECT d.defaclrole, d.defaclacl FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
  WHERE d.defaclnamespace = 0 OR n.nspname = ANY($1::text[])
  UNION ALL
  SELECT x.owner, NULL::aclitem[] FROM (
    SELECT collowner AS owner, collnamespace AS nsp, oid, 'pg_collation'::regclass AS cls FROM pg_collation
    UNION ALL SELECT conowner, connamespace, oid, 'pg_conversion'::regclass FROM pg_conversion
    UNION ALL SELECT oprowner, oprnamespace, oid, 'pg_operator'::regclass FROM pg_operator
    UNION ALL SELECT opcowner, opcnamespace, oid, 'pg_opclass'::regclass FROM pg_opclass
    UNION ALL SELECT opfowner, opfnamespace, oid, 'pg_opfamily'::regclass FROM pg_opfamily
    UNION ALL SELECT cfgowner, cfgnamespace, oid, 'pg_ts_config'::regclass FROM pg_ts_config
    UNION ALL SELECT dictowner, dictnamespace, oid, 'pg_ts_dict'::regclass FROM pg_ts_dict
    UNION ALL SELECT stxowner, stxnamespace, oid, 'pg_statistic_ext'::regclass FROM pg_statistic_ext
  ) x JOIN pg_namespace n ON n.oid = x.nsp
  WHERE n.nspname = ANY($1::text[])
    AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = x.cls AND e.objid = x.oid AND e.deptype = 'e')
  UNION ALL
  SELECT f.fdwowner, f.fdwacl FROM pg_foreign_data_wrapper f WHERE ${NOT_EXT('pg_foreign_data_wrapper', 'f.oid')}
  UNION ALL
  SELECT s.srvowner, s.srvacl FROM pg_foreign_server s WHERE ${NOT_EXT('pg_foreign_server', 's.oid')}
  UNION ALL
  SELECT l.lanowner, l.lanacl FROM pg_language l WHERE l.lanispl AND ${NOT_EXT('pg_language', 'l.oid')}
  UNION ALL
  SELECT lomowner, lomacl FROM pg_largeobject_metadata
  UNION ALL
  SELECT evtowner, NULL FROM pg_event_trigger WHERE ${NOT_EXT('pg_event_trigger', 'pg_event_trigger.oid')}
  UNION ALL
  SELECT pubowner, NULL FROM pg_publication
),
refs(roleid, reason) AS (
  SELECT owner, 'owner' FROM objs
  UNION ALL
  SELECT a.grantee, 'grantee' FROM objs, aclexplode(objs.acl) a WHERE a.grantee <> objs.owner
  UNION ALL
  SELECT datdba, 'database-owner' FROM db
  UNION ALL
  SELECT a.grantee, 'grantee' FROM db, aclexplode(db.datacl) a WHERE a.grantee <> db.datdba
  UNION ALL
  SELECT r.roleid, 'policy' FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
       unnest(p.polroles) AS r(roleid)
  WHERE n.nspname = ANY($1::text[])
  UNION ALL
  SELECT s.setrole, 'setting' FROM pg_db_role_setting s, db WHERE s.setdatabase = db.oid
  UNION ALL
  SELECT um.umuser, 'user-mapping' FROM pg_user_mappings um
)
SELECT DISTINCT r.rolname AS name, refs.reason FROM refs JOIN pg_roles r ON r.oid = refs.roleid
ORDER BY 1, 2`;
