/**
 * The inventory's catalog queries, one per object class, adapted to the server version (PostgreSQL 10 and later),
 * and the rows they return. All read only.
 */
export type AclEntry = [grantee: string, privilege: string, grantable: boolean];

export interface SchemaRow { name: string; owner: string; acl: AclEntry[] | null }
export interface ExtensionRow { name: string; version: string; schema: string }
export interface RelationRow {
  schema: string; name: string; relkind: string; owner: string; acl: AclEntry[] | null;
  persistence: string; replident: string; options: string[] | null; rls: boolean; forcerls: boolean; populated: boolean;
  partkey: string | null; partition_schema: string | null; partition_parent: string | null; partition_bound: string | null;
  inherits: string | null; viewdef: string | null;
  seq_type: string | null; seq_start: string | null; seq_increment: string | null; seq_min: string | null; seq_max: string | null;
  seq_cache: string | null; seq_cycle: boolean | null;
  seq_owned_by: [schema: string, table: string, relkind: string, column: string] | null;
}
export interface ColumnRow {
  schema: string; table: string; relkind: string; name: string; type: string; notnull: boolean; def: string | null;
  identity: string; generated: string; inherited: boolean; collation: string | null; acl: AclEntry[] | null;
}
export interface IndexRow {
  schema: string; name: string; table: string; relkind: string; def: string; valid: boolean;
  parent_schema: string | null; parent_index: string | null;
}
export interface ConstraintRow {
  schema: string; name: string; type: string; table: string | null; relkind: string | null; domain: string | null;
  def: string; validated: boolean; parent_schema: string | null; parent_table: string | null; parent_relkind: string | null;
  parent_name: string | null; parent_same_table: boolean | null;
}
export interface TriggerRow {
  schema: string; table: string; relkind: string; name: string; def: string; enabled: string;
  parent_schema: string | null; parent_table: string | null; parent_relkind: string | null; parent_name: string | null;
}
export interface PolicyRow {
  schema: string; table: string; relkind: string; name: string; permissive: boolean; cmd: string; roles: string[];
  qual: string | null; with_check: string | null;
}
export interface FunctionRow {
  schema: string; name: string; argtypes: string; arguments: string; prokind: string; result: string | null; language: string;
  volatility: string; strict: boolean; secdef: boolean; leakproof: boolean; parallel: string; config: string[] | null;
  src_md5: string | null; body_md5: string | null; probin: string | null; owner: string; acl: AclEntry[] | null;
}
export interface TypeRow {
  schema: string; name: string; typtype: string; owner: string; acl: AclEntry[] | null; labels: string | null;
  attributes: string | null; base: string | null; notnull: boolean; def: string | null; subtype: string | null;
}
export interface DefaultAclRow { role: string; schema: string | null; objtype: string; acl: AclEntry[] | null }

const USER_SCHEMA = (ns: string) => `${ns}.nspname <> 'information_schema' AND ${ns}.nspname NOT LIKE 'pg\\_%'`;
const NOT_EXTENSION_MEMBER = (catalog: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = '${catalog}'::regclass AND dep.objid = ${oid} AND dep.deptype = 'e')`;

/** The catalog queries, adapted to the server version (PostgreSQL 10 and later). */
export class CatalogQueries {
  constructor(private readonly version: number, private readonly includeAcl: boolean) {}

  /**
   * The ACL as [grantee, privilege, grantable] triples: PUBLIC for grantee 0, '' for the owner. A NULL ACL
   * means the built-in default for the object type (defaultType); without one, NULL means no grants.
   */
  private acl(acl: string, defaultType: string | null, owner: string): string {
    if (!this.includeAcl) return 'NULL::json';
    // aclexplode rejects an empty array (ndim 0), which an ACL becomes when every privilege is revoked.
    const full = defaultType ? `coalesce(${acl}, acldefault(${defaultType}, ${owner}))` : acl;
    const value = `CASE WHEN cardinality(${full}) > 0 THEN ${full} END`;
    return `(SELECT json_agg(json_build_array(
               CASE WHEN a.grantee = 0 THEN 'PUBLIC' WHEN a.grantee = ${owner} THEN '' ELSE pg_get_userbyid(a.grantee)::text END,
               a.privilege_type, a.is_grantable))
             FROM aclexplode(${value}) a)`;
  }

  schemas(): string {
    return `SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner, ${this.acl('n.nspacl', `'n'`, 'n.nspowner')} AS acl
      FROM pg_namespace n
      WHERE ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_namespace', 'n.oid')}`;
  }

  extensions(): string {
    return `SELECT e.extname AS name, e.extversion AS version, n.nspname AS schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
      WHERE ${USER_SCHEMA('n')}`;
  }

  relations(): string {
    return `SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind, pg_get_userbyid(c.relowner) AS owner,
        ${this.acl('c.relacl', `(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END)::"char"`, 'c.relowner')} AS acl,
        c.relpersistence::text AS persistence, c.relreplident::text AS replident, c.reloptions AS options,
        c.relrowsecurity AS rls, c.relforcerowsecurity AS forcerls, c.relispopulated AS populated,
        CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partkey,
        pn.nspname AS partition_schema, pc.relname AS partition_parent,
        CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END AS partition_bound,
        (SELECT string_agg(format('%I.%I', ipn.nspname, ipc.relname), ', ' ORDER BY i.inhseqno)
           FROM pg_inherits i JOIN pg_class ipc ON ipc.oid = i.inhparent JOIN pg_namespace ipn ON ipn.oid = ipc.relnamespace
           WHERE i.inhrelid = c.oid AND NOT c.relispartition) AS inherits,
        CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS viewdef,
        format_type(s.seqtypid, NULL) AS seq_type, s.seqstart::text AS seq_start, s.seqincrement::text AS seq_increment,
        s.seqmin::text AS seq_min, s.seqmax::text AS seq_max, s.seqcache::text AS seq_cache, s.seqcycle AS seq_cycle,
        (SELECT json_build_array(tn.nspname, tc.relname, tc.relkind::text, ta.attname)
           FROM pg_depend d JOIN pg_class tc ON tc.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = tc.relnamespace
           JOIN pg_attribute ta ON ta.attrelid = tc.oid AND ta.attnum = d.refobjsubid
           WHERE c.relkind = 'S' AND d.classid = 'pg_class'::regclass AND d.objid = c.oid
             AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
           ORDER BY tn.nspname, tc.relname, ta.attname LIMIT 1) AS seq_owned_by
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_inherits pi ON c.relispartition AND pi.inhrelid = c.oid
      LEFT JOIN pg_class pc ON pc.oid = pi.inhparent
      LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
      LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
      WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}`;
  }

  columns(): string {
    const generated = this.version >= 120000 ? 'a.attgenerated::text' : "''";
    return `SELECT n.nspname AS schema, c.relname AS table, c.relkind::text AS relkind, a.attname AS name,
        format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def,
        a.attidentity::text AS identity, ${generated} AS generated, a.attinhcount > 0 AS inherited,
        CASE WHEN a.attcollation <> t.typcollation THEN
          (SELECT format('%I.%I', cn.nspname, co.collname) FROM pg_collation co JOIN pg_namespace cn ON cn.oid = co.collnamespace
           WHERE co.oid = a.attcollation) END AS collation,
        ${this.acl('a.attacl', null, 'c.relowner')} AS acl
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_type t ON t.oid = a.atttypid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'f')
        AND ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
      ORDER BY n.nspname, c.relname, a.attnum`;
  }

  /** Indexes, except those that implement a primary key, unique or exclusion constraint (compared as constraints). */
  indexes(): string {
    return `SELECT n.nspname AS schema, ic.relname AS name, c.relname AS table, c.relkind::text AS relkind,
        pg_get_indexdef(i.indexrelid) AS def, i.indisvalid AS valid, pn.nspname AS parent_schema, pic.relname AS parent_index
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_inherits inh ON inh.inhrelid = i.indexrelid
      LEFT JOIN pg_class pic ON pic.oid = inh.inhparent
      LEFT JOIN pg_namespace pn ON pn.oid = pic.relnamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'))`;
  }

  /** Table and domain constraints (constraint triggers are compared as triggers). */
  constraints(): string {
    const parentJoin = this.version >= 110000 ? 'pk.oid = k.conparentid' : 'false';
    return `SELECT n.nspname AS schema, k.conname AS name, k.contype::text AS type, c.relname AS table, c.relkind::text AS relkind,
        t.typname AS domain, pg_get_constraintdef(k.oid) AS def, k.convalidated AS validated,
        pkn.nspname AS parent_schema, pkc.relname AS parent_table, pkc.relkind::text AS parent_relkind, pk.conname AS parent_name,
        pk.conrelid = k.conrelid AS parent_same_table
      FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
      LEFT JOIN pg_class c ON c.oid = k.conrelid AND k.conrelid <> 0
      LEFT JOIN pg_type t ON t.oid = k.contypid AND k.contypid <> 0
      LEFT JOIN pg_constraint pk ON ${parentJoin}
      LEFT JOIN pg_class pkc ON pkc.oid = pk.conrelid
      LEFT JOIN pg_namespace pkn ON pkn.oid = pkc.relnamespace
      WHERE k.contype <> 't' AND ${USER_SCHEMA('n')} AND (c.oid IS NOT NULL OR t.oid IS NOT NULL)
        AND ${NOT_EXTENSION_MEMBER('pg_class', 'coalesce(c.oid, 0)')} AND ${NOT_EXTENSION_MEMBER('pg_type', 'coalesce(t.oid, 0)')}
      ORDER BY 1, 4, 6, 2, 7`;
  }

  triggers(): string {
    const parentJoin = this.version >= 130000 ? 'pt.oid = t.tgparentid' : 'false';
    return `SELECT n.nspname AS schema, c.relname AS table, c.relkind::text AS relkind, t.tgname AS name,
        pg_get_triggerdef(t.oid) AS def, t.tgenabled::text AS enabled,
        ptn.nspname AS parent_schema, ptc.relname AS parent_table, ptc.relkind::text AS parent_relkind, pt.tgname AS parent_name
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_trigger pt ON ${parentJoin}
      LEFT JOIN pg_class ptc ON ptc.oid = pt.tgrelid
      LEFT JOIN pg_namespace ptn ON ptn.oid = ptc.relnamespace
      WHERE NOT t.tgisinternal AND ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}`;
  }

  policies(): string {
    return `SELECT n.nspname AS schema, c.relname AS table, c.relkind::text AS relkind, p.polname AS name,
        p.polpermissive AS permissive, p.polcmd::text AS cmd,
        ARRAY(SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(r)::text END FROM unnest(p.polroles) AS r ORDER BY 1) AS roles,
        pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
      FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_class', 'c.oid')}`;
  }

  functions(): string {
    const prokind = this.version >= 110000 ? 'p.prokind::text' : "CASE WHEN p.proisagg THEN 'a' WHEN p.proiswindow THEN 'w' ELSE 'f' END";
    const body = this.version >= 140000 ? 'CASE WHEN p.prosqlbody IS NOT NULL THEN md5(pg_get_function_sqlbody(p.oid)) END' : 'NULL::text';
    return `SELECT n.nspname AS schema, p.proname AS name, oidvectortypes(p.proargtypes) AS argtypes,
        pg_get_function_arguments(p.oid) AS arguments, ${prokind} AS prokind,
        CASE WHEN ${prokind} <> 'p' THEN pg_get_function_result(p.oid) END AS result, l.lanname AS language,
        p.provolatile::text AS volatility, p.proisstrict AS strict, p.prosecdef AS secdef, p.proleakproof AS leakproof,
        p.proparallel::text AS parallel, p.proconfig AS config, md5(p.prosrc) AS src_md5, ${body} AS body_md5, p.probin,
        pg_get_userbyid(p.proowner) AS owner, ${this.acl('p.proacl', `'f'`, 'p.proowner')} AS acl
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
      WHERE ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_proc', 'p.oid')}`;
  }

  /** Enums, composite types, domains, ranges and base types; not array types or table row types. */
  types(): string {
    return `SELECT n.nspname AS schema, t.typname AS name, t.typtype::text AS typtype, pg_get_userbyid(t.typowner) AS owner,
        ${this.acl('t.typacl', `'T'`, 't.typowner')} AS acl,
        CASE WHEN t.typtype = 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                          FROM pg_enum e WHERE e.enumtypid = t.oid) END AS labels,
        CASE WHEN t.typtype = 'c' THEN (SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum)
                                          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) END AS attributes,
        CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END AS base,
        t.typnotnull AS notnull, CASE WHEN t.typtype = 'd' THEN pg_get_expr(t.typdefaultbin, 0) END AS def,
        (SELECT format_type(r.rngsubtype, NULL) FROM pg_range r WHERE r.rngtypid = t.oid) AS subtype
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      LEFT JOIN pg_class tc ON tc.oid = t.typrelid
      WHERE ${USER_SCHEMA('n')} AND ${NOT_EXTENSION_MEMBER('pg_type', 't.oid')}
        AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND tc.relkind = 'c')
             OR (t.typtype = 'b' AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.oid = t.typelem AND el.typarray = t.oid)))`;
  }

  defaultAcls(): string {
    return `SELECT pg_get_userbyid(d.defaclrole) AS role, n.nspname AS schema, d.defaclobjtype::text AS objtype,
        ${this.acl('d.defaclacl', null, 'd.defaclrole')} AS acl
      FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace`;
  }
}
