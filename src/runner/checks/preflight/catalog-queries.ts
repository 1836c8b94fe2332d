/** Catalog queries shared by the source and destination checks. All read only. */
import type { Client } from 'pg';

/** Relations that belong to an extension are created by CREATE EXTENSION, not dumped one by one. */
const NOT_EXTENSION_MEMBER = (classid: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = '${classid}'::regclass AND dep.objid = ${oid} AND dep.deptype = 'e')`;

export interface SchemaInfo {
  readonly name: string;
  readonly owner: string;
  readonly usage: boolean;
  readonly create: boolean;
}

export async function listSchemas(client: Client): Promise<SchemaInfo[]> {
  const res = await client.query<SchemaInfo>(`
    SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner,
           has_schema_privilege(n.oid, 'USAGE') AS usage, has_schema_privilege(n.oid, 'CREATE') AS create
    FROM pg_namespace n
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
    ORDER BY n.nspname`);
  return res.rows;
}

export interface RelationInfo {
  readonly schema: string;
  readonly name: string;
  /** r table, p partitioned table, v view, m materialized view, S sequence, f foreign table */
  readonly kind: 'r' | 'p' | 'v' | 'm' | 'S' | 'f';
  readonly canSelect: boolean;
  /** Row-level security would apply to this user with row_security off (pg_dump would fail). */
  readonly blockedByRls: boolean;
}

export async function listRelations(client: Client, schemas: readonly string[]): Promise<RelationInfo[]> {
  const res = await client.query<RelationInfo>(`
    SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
           has_table_privilege(c.oid, 'SELECT') AS "canSelect",
           (c.relrowsecurity AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))
             AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)) AS "blockedByRls"
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND n.nspname = ANY($1::text[])
      AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
    ORDER BY n.nspname, c.relname`, [schemas]);
  return res.rows;
}

export interface ObjectRoles {
  /** Roles that own the schemas and objects in them (and default privileges), sorted. */
  readonly owners: string[];
  /** Roles other than the owner named in their access privileges (what GRANTs in the dump name), sorted. */
  readonly grantees: string[];
}

/** Roles pg_dump names in ALTER ... OWNER TO and GRANT for the given schemas. Predefined pg_* roles left out. */
export async function objectRoles(client: Client, schemas: readonly string[]): Promise<ObjectRoles> {
  const res = await client.query<{ kind: 'owner' | 'grantee'; role: string }>(`
    WITH objs AS (
      SELECT n.nspowner AS owner, n.nspacl AS acl FROM pg_namespace n WHERE n.nspname = ANY($1::text[])
      UNION ALL
      SELECT c.relowner, c.relacl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition
        AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
      UNION ALL
      SELECT p.proowner, p.proacl FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = ANY($1::text[]) AND ${NOT_EXTENSION_MEMBER('pg_proc', 'p.oid')}
      UNION ALL
      SELECT t.typowner, t.typacl FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = ANY($1::text[]) AND t.typtype IN ('e', 'd', 'r', 'm', 'b')
        AND ${NOT_EXTENSION_MEMBER('pg_type', 't.oid')}
      UNION ALL
      SELECT d.defaclrole, d.defaclacl FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
      WHERE d.defaclnamespace = 0 OR n.nspname = ANY($1::text[])
    )
    SELECT DISTINCT 'owner' AS kind, pg_get_userbyid(owner) AS role FROM objs
    UNION
    SELECT DISTINCT 'grantee', pg_get_userbyid(a.grantee) FROM objs, aclexplode(objs.acl) a WHERE a.grantee <> 0 AND a.grantee <> objs.owner
    ORDER BY 2`, [schemas]);
  const pick = (kind: string) => [...new Set(res.rows.filter((r) => r.kind === kind && !r.role.startsWith('pg_')).map((r) => r.role))];
  return { owners: pick('owner'), grantees: pick('grantee') };
}

export interface UserObject {
  readonly schema: string;
  readonly name: string;
  readonly kind: 'table' | 'view' | 'materialized view' | 'sequence' | 'foreign table' | 'function' | 'type';
}

/** User objects in non-system schemas (extension members left out): what makes a destination non-empty. */
export async function listUserObjects(client: Client): Promise<UserObject[]> {
  const res = await client.query<UserObject>(`
    SELECT n.nspname AS schema, c.relname AS name,
           CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
             WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence' ELSE 'foreign table' END AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
    UNION ALL
    SELECT n.nspname, p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', 'function'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND ${NOT_EXTENSION_MEMBER('pg_proc', 'p.oid')}
    UNION ALL
    SELECT n.nspname, t.typname, 'type'
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND (t.typtype IN ('b', 'd', 'e', 'r', 'm')
           OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
      AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)
      AND NOT (t.typtype = 'm' AND EXISTS (SELECT 1 FROM pg_range r WHERE r.rngmultitypid = t.oid))
      AND ${NOT_EXTENSION_MEMBER('pg_type', 't.oid')}
    ORDER BY 1, 2`);
  return res.rows;
}

export interface ConnectionSlots {
  readonly maxConnections: number;
  /** Slots kept for superusers (and, from PostgreSQL 16, reserved_connections) that this user cannot use. */
  readonly reservedForOthers: number;
  /** Client backends on the server, including this check's own session. */
  readonly inUse: number;
  readonly isSuperuser: boolean;
  readonly roleLimit: number;
  readonly roleInUse: number;
  /** -1 when no database is in question (maintenance connection). */
  readonly databaseLimit: number;
  readonly databaseInUse: number;
}

export async function connectionSlots(client: Client): Promise<ConnectionSlots> {
  const res = await client.query<ConnectionSlots>(`
    SELECT current_setting('max_connections')::int AS "maxConnections",
           CASE WHEN r.rolsuper THEN 0 ELSE current_setting('superuser_reserved_connections')::int
             + coalesce(nullif(current_setting('reserved_connections', true), ''), '0')::int END AS "reservedForOthers",
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int AS "inUse",
           r.rolsuper AS "isSuperuser",
           r.rolconnlimit AS "roleLimit",
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usesysid = r.oid)::int AS "roleInUse",
           d.datconnlimit AS "databaseLimit",
           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datid = d.oid)::int AS "databaseInUse"
    FROM pg_roles r, pg_database d
    WHERE r.rolname = current_user AND d.datname = current_database()`);
  return res.rows[0];
}
