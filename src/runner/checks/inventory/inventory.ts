/**
 * A catalog inventory of a database (the schema objects pg_dump copies) and a name-based comparison of two
 * inventories, so verification can say exactly which object differs and how.
 *
 * One catalog query per object class, all in one read-only transaction (or inside the caller's, e.g. one
 * that imported the dump's snapshot) with search_path = pg_catalog, so every name that pg_get_*def and
 * format_type print is schema-qualified the same way on both servers. Objects that belong to an extension
 * (pg_depend deptype 'e') are left out: CREATE EXTENSION makes them, and the extension itself is compared.
 *
 * Every object has a key made of names only (never OIDs) and a flat set of text properties; two objects
 * with the same key are compared property by property. A difference is reported once, on the object that
 * differs: objects whose parent (schema, table, parent index, ...) is missing or extra are not reported too.
 *
 * Privileges are compared per grantee, grantor ignored, with the object's owner written as "the owner", so
 * that a restore with --no-owner (objects owned by the restoring user, ACLs rewritten with it) still
 * compares equal when owners are not compared. A NULL ACL is read as the built-in default (acldefault).
 */
import type { Client } from 'pg';
import { compareCodePoints, withLocalSettings } from '../checksum';
import { alignServerVersions, NOT_NULL_CLASS } from './version-rules';
import { schemaMatcher } from '../dumped-schemas';
import { displayIdent, displayName, normalizeSql } from '../../postgres/sql';

export { normalizeSql };

export type InventoryKind =
  | 'schema' | 'table' | 'column' | 'index' | 'constraint' | 'trigger' | 'function' | 'view' | 'matview'
  | 'sequence' | 'type' | 'domain' | 'extension' | 'policy' | 'privilege' | 'owner' | 'partition' | 'rls';

export interface InventoryObject {
  /** Unique, name-based: JSON of [class, schema, names...]. */
  readonly key: string;
  readonly kind: InventoryKind;
  /** Schema the object lives in ('' for database-wide default privileges). */
  readonly schema: string;
  /** Short label without the schema, e.g. `table orders`, `index orders_pkey`, `column orders.status`. */
  readonly object: string;
  /** Label with the schema, for messages: `table sales.orders`. */
  readonly display: string;
  /** Keys of the objects this one belongs to; if one of them is missing, this one is not reported. */
  readonly parents: readonly string[];
  /** Compared one by one; a property label of '' means the value speaks for itself. */
  readonly properties: Readonly<Record<string, string | null>>;
  /** Tables: column names in attribute order (compared as the order of the columns both sides have). */
  readonly columnOrder?: readonly string[];
}

export interface Inventory {
  readonly serverVersion: number;
  readonly includeAcl: boolean;
  readonly includeOwners: boolean;
  /** Sorted by key. */
  readonly objects: readonly InventoryObject[];
}

export interface InventoryDifference {
  readonly schema: string;
  readonly object: string;
  readonly kind: InventoryKind;
  readonly what: 'missing' | 'extra' | 'different';
  readonly source?: string;
  readonly destination?: string;
  /** One sentence naming the object (schema-qualified) and what differs. */
  readonly message: string;
}

export interface InventoryOptions {
  /** pg_dump --schema patterns. @default - every non-system schema */
  readonly schemas?: readonly string[];
  /** pg_dump --exclude-schema patterns. @default - none */
  readonly excludeSchemas?: readonly string[];
  /** Compare privileges (false when the restore uses --no-acl). */
  readonly includeAcl: boolean;
  /** Compare owners (false when the restore uses --no-owner). */
  readonly includeOwners: boolean;
}

/** Reads the inventory of the database the client is connected to. Read only. */
export async function readInventory(client: Client, opts: InventoryOptions): Promise<Inventory> {
  const inSchema = schemaMatcher({ schemas: [...(opts.schemas ?? [])], excludeSchemas: [...(opts.excludeSchemas ?? [])] });
  return withLocalSettings(client, { search_path: 'pg_catalog' }, async () => {
    const version = Number((await client.query<{ v: string }>('SELECT current_setting(\'server_version_num\') AS v')).rows[0].v);
    if (version < 100000) throw new Error(`schema inventory needs PostgreSQL 10 or later (server_version_num ${version})`);
    const b = new InventoryBuilder(opts, inSchema);
    const q = new CatalogQueries(version, opts.includeAcl);
    const run = async <R extends object>(sql: string, params: unknown[] = []) => (await client.query<R>(sql, params)).rows;

    for (const r of await run<SchemaRow>(q.schemas())) b.schema(r);
    for (const r of await run<ExtensionRow>(q.extensions())) b.extension(r);
    for (const r of await run<RelationRow>(q.relations())) b.relation(r);
    for (const r of await run<ColumnRow>(q.columns())) b.column(r);
    for (const r of await run<IndexRow>(q.indexes())) b.index(r);
    for (const r of await run<ConstraintRow>(q.constraints())) b.constraint(r);
    for (const r of await run<TriggerRow>(q.triggers())) b.trigger(r);
    for (const r of await run<PolicyRow>(q.policies())) b.policy(r);
    for (const r of await run<FunctionRow>(q.functions())) b.func(r);
    for (const r of await run<TypeRow>(q.types())) b.type(r);
    if (opts.includeAcl) for (const r of await run<DefaultAclRow>(q.defaultAcls())) b.defaultAcl(r);

    return {
      serverVersion: version,
      includeAcl: opts.includeAcl,
      includeOwners: opts.includeOwners,
      objects: b.objects(),
    };
  });
}

/**
 * Differences between two inventories, sorted by object key: what the destination lacks (missing), has in
 * addition (extra), or has with other properties (different, one entry per object listing every property
 * that differs).
 */
export function compareInventories(sourceInventory: Inventory, destinationInventory: Inventory): InventoryDifference[] {
  if (sourceInventory.includeAcl !== destinationInventory.includeAcl || sourceInventory.includeOwners !== destinationInventory.includeOwners) {
    throw new Error('inventories were read with different options (includeAcl / includeOwners); read both sides the same way');
  }
  // Across major versions, what the newer server adds by itself is not a difference (inventory-versions.ts).
  const { source, destination } = alignServerVersions(sourceInventory, destinationInventory);
  const src = new Map(source.objects.map((o) => [o.key, o]));
  const dst = new Map(destination.objects.map((o) => [o.key, o]));
  const absent = new Set<string>();
  for (const k of src.keys()) if (!dst.has(k)) absent.add(k);
  for (const k of dst.keys()) if (!src.has(k)) absent.add(k);

  const covered = new Map<string, boolean>();
  // True when an ancestor of the object is itself missing or extra (then that one is the difference).
  const underAbsent = (o: InventoryObject, seen = new Set<string>()): boolean => {
    const memo = covered.get(o.key);
    if (memo !== undefined) return memo;
    let result = false;
    for (const p of o.parents) {
      if (seen.has(p)) continue;
      seen.add(p);
      const parent = src.get(p) ?? dst.get(p);
      if (absent.has(p) || (parent !== undefined && underAbsent(parent, seen))) { result = true; break; }
    }
    covered.set(o.key, result);
    return result;
  };

  const keys = [...new Set([...src.keys(), ...dst.keys()])].sort(compareCodePoints);
  const out: InventoryDifference[] = [];
  for (const key of keys) {
    const s = src.get(key);
    const d = dst.get(key);
    const o = (s ?? d)!;
    if (underAbsent(o)) continue;
    const base = { schema: o.schema, object: o.object, kind: o.kind };
    if (s && !d) {
      out.push({ ...base, what: 'missing', source: summarize(s), message: `${capitalize(s.display)}${valueNote(s)} ${isAre(s)} missing on the destination` });
    } else if (!s && d) {
      out.push({ ...base, what: 'extra', destination: summarize(d), message: `${capitalize(d.display)}${valueNote(d)} ${isAre(d)} on the destination but not on the source` });
    } else if (s && d) {
      const diffs = propertyDifferences(s, d);
      if (diffs.length === 0) continue;
      out.push({
        ...base,
        what: 'different',
        source: diffs.map((p) => labelled(p.label, p.source)).join('; '),
        destination: diffs.map((p) => labelled(p.label, p.destination)).join('; '),
        message: describeDifferent(s, diffs),
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Comparison helpers

interface PropertyDifference { readonly label: string; readonly source: string | null; readonly destination: string | null }

function propertyDifferences(s: InventoryObject, d: InventoryObject): PropertyDifference[] {
  const labels = [...new Set([...Object.keys(s.properties), ...Object.keys(d.properties)])];
  const out: PropertyDifference[] = [];
  for (const label of labels) {
    const a = s.properties[label] ?? null;
    const b = d.properties[label] ?? null;
    if (a !== b) out.push({ label, source: a, destination: b });
  }
  if (s.columnOrder && d.columnOrder) {
    const inD = new Set(d.columnOrder);
    const inS = new Set(s.columnOrder);
    const a = s.columnOrder.filter((c) => inD.has(c));
    const b = d.columnOrder.filter((c) => inS.has(c));
    if (a.join('\u0000') !== b.join('\u0000')) {
      out.push({ label: 'column order', source: a.map(displayIdent).join(', '), destination: b.map(displayIdent).join(', ') });
    }
  }
  return out;
}

const LONG_VALUE = 80;

function describeDifferent(o: InventoryObject, diffs: readonly PropertyDifference[]): string {
  const parts = diffs.map((p) => {
    const long = (p.source?.length ?? 0) > LONG_VALUE || (p.destination?.length ?? 0) > LONG_VALUE;
    if (long) return p.label === '' ? 'differs' : `${p.label} differs`;
    const change = `${shown(p.source)} on the source but ${shown(p.destination)} on the destination`;
    return p.label === '' ? `is ${change}` : `${p.label} is ${change}`;
  });
  const unlabelled = diffs.length === 1 && diffs[0].label === '';
  return unlabelled ? `${capitalize(o.display)} ${parts[0]}` : `${capitalize(o.display)}: ${parts.join('; ')}`;
}

function shown(v: string | null): string {
  return v === null || v === '' ? 'none' : v;
}

function labelled(label: string, v: string | null): string {
  return label === '' ? shown(v) : `${label}: ${shown(v)}`;
}

function summarize(o: InventoryObject): string {
  return Object.entries(o.properties).filter(([, v]) => v !== null && v !== '').map(([k, v]) => labelled(k, v)).join('; ');
}

/** Privileges are named by what they grant, so a reader sees which grants went missing. */
function valueNote(o: InventoryObject): string {
  return o.kind === 'privilege' ? ` (${shown(o.properties[''] ?? null)})` : '';
}

function isAre(o: InventoryObject): string {
  return o.kind === 'privilege' ? 'are' : 'is';
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// ---------------------------------------------------------------------------------------------------------
// Catalog rows and queries

type AclEntry = [grantee: string, privilege: string, grantable: boolean];

interface SchemaRow { name: string; owner: string; acl: AclEntry[] | null }
interface ExtensionRow { name: string; version: string; schema: string }
interface RelationRow {
  schema: string; name: string; relkind: string; owner: string; acl: AclEntry[] | null;
  persistence: string; replident: string; options: string[] | null; rls: boolean; forcerls: boolean; populated: boolean;
  partkey: string | null; partition_schema: string | null; partition_parent: string | null; partition_bound: string | null;
  inherits: string | null; viewdef: string | null;
  seq_type: string | null; seq_start: string | null; seq_increment: string | null; seq_min: string | null; seq_max: string | null;
  seq_cache: string | null; seq_cycle: boolean | null;
  seq_owned_by: [schema: string, table: string, relkind: string, column: string] | null;
}
interface ColumnRow {
  schema: string; table: string; relkind: string; name: string; type: string; notnull: boolean; def: string | null;
  identity: string; generated: string; inherited: boolean; collation: string | null; acl: AclEntry[] | null;
}
interface IndexRow {
  schema: string; name: string; table: string; relkind: string; def: string; valid: boolean;
  parent_schema: string | null; parent_index: string | null;
}
interface ConstraintRow {
  schema: string; name: string; type: string; table: string | null; relkind: string | null; domain: string | null;
  def: string; validated: boolean; parent_schema: string | null; parent_table: string | null; parent_relkind: string | null;
  parent_name: string | null; parent_same_table: boolean | null;
}
interface TriggerRow {
  schema: string; table: string; relkind: string; name: string; def: string; enabled: string;
  parent_schema: string | null; parent_table: string | null; parent_relkind: string | null; parent_name: string | null;
}
interface PolicyRow {
  schema: string; table: string; relkind: string; name: string; permissive: boolean; cmd: string; roles: string[];
  qual: string | null; with_check: string | null;
}
interface FunctionRow {
  schema: string; name: string; argtypes: string; arguments: string; prokind: string; result: string | null; language: string;
  volatility: string; strict: boolean; secdef: boolean; leakproof: boolean; parallel: string; config: string[] | null;
  src_md5: string | null; body_md5: string | null; probin: string | null; owner: string; acl: AclEntry[] | null;
}
interface TypeRow {
  schema: string; name: string; typtype: string; owner: string; acl: AclEntry[] | null; labels: string | null;
  attributes: string | null; base: string | null; notnull: boolean; def: string | null; subtype: string | null;
}
interface DefaultAclRow { role: string; schema: string | null; objtype: string; acl: AclEntry[] | null }

const USER_SCHEMA = (ns: string) => `${ns}.nspname <> 'information_schema' AND ${ns}.nspname NOT LIKE 'pg\\_%'`;
const NOT_EXTENSION_MEMBER = (catalog: string, oid: string) =>
  `NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = '${catalog}'::regclass AND dep.objid = ${oid} AND dep.deptype = 'e')`;

/** The catalog queries, adapted to the server version (PostgreSQL 10 and later). */
class CatalogQueries {
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

// ---------------------------------------------------------------------------------------------------------
// Building objects from rows

const RELATION_KIND: Record<string, { kind: InventoryKind; label: string }> = {
  r: { kind: 'table', label: 'table' },
  p: { kind: 'table', label: 'table' },
  f: { kind: 'table', label: 'foreign table' },
  v: { kind: 'view', label: 'view' },
  m: { kind: 'matview', label: 'materialized view' },
  S: { kind: 'sequence', label: 'sequence' },
};
const PROKIND_LABEL: Record<string, string> = { f: 'function', p: 'procedure', a: 'aggregate', w: 'window function' };
const TYPTYPE_LABEL: Record<string, string> = { e: 'enum type', c: 'composite type', d: 'domain', r: 'range type', b: 'base type' };
const POLICY_CMD: Record<string, string> = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' };
const TRIGGER_ENABLED: Record<string, string> = { O: 'enabled', D: 'disabled', R: 'enabled on replicas only', A: 'always enabled' };
const DEFAULT_ACL_OBJECTS: Record<string, string> = { r: 'tables', S: 'sequences', f: 'functions', T: 'types', n: 'schemas' };
const PERSISTENCE: Record<string, string> = { p: 'logged', u: 'unlogged', t: 'temporary' };
const REPLICA_IDENTITY: Record<string, string> = { d: 'default', n: 'nothing', f: 'full', i: 'index' };

const key = (...parts: string[]) => JSON.stringify(parts);
const schemaKey = (schema: string) => key('schema', schema);
const relationKey = (schema: string, name: string, relkind: string) => key(RELATION_KIND[relkind]?.kind ?? 'table', schema, name);
const partitionKey = (schema: string, table: string) => key('partition', schema, table);
const yesNo = (b: boolean | null) => (b === null ? null : b ? 'yes' : 'no');

class InventoryBuilder {
  private readonly byKey = new Map<string, InventoryObject>();

  constructor(private readonly opts: InventoryOptions, private readonly inSchema: (schema: string) => boolean) {}

  objects(): InventoryObject[] {
    return [...this.byKey.values()].sort((a, b) => compareCodePoints(a.key, b.key));
  }

  private add(o: InventoryObject): void {
    let k = o.key;
    // Names are unique per class in PostgreSQL; a clash would be a catalog oddity, kept apart deterministically.
    for (let n = 2; this.byKey.has(k); n++) k = `${o.key}#${n}`;
    this.byKey.set(k, { ...o, key: k });
  }

  private owner(objKey: string, schema: string, object: string, display: string, owner: string): void {
    if (!this.opts.includeOwners) return;
    this.add({ key: key('owner', objKey), kind: 'owner', schema, object: `owner of ${object}`, display: `owner of ${display}`, parents: [objKey], properties: { '': owner } });
  }

  private privileges(objKey: string, schema: string, object: string, display: string, acl: AclEntry[] | null): void {
    if (!this.opts.includeAcl || acl === null) return;
    for (const [grantee, list] of groupAcl(acl)) {
      const who = grantee === '' ? 'the owner' : grantee === 'PUBLIC' ? 'PUBLIC' : displayIdent(grantee);
      this.add({
        key: key('privilege', objKey, grantee),
        kind: 'privilege',
        schema,
        object: `privileges of ${who} on ${object}`,
        display: `privileges of ${who} on ${display}`,
        parents: [objKey],
        properties: { '': list.join(', ') },
      });
    }
  }

  schema(r: SchemaRow): void {
    if (!this.inSchema(r.name)) return;
    const k = schemaKey(r.name);
    const label = `schema ${displayIdent(r.name)}`;
    this.add({ key: k, kind: 'schema', schema: r.name, object: label, display: label, parents: [], properties: {} });
    this.owner(k, r.name, label, label, r.owner);
    this.privileges(k, r.name, label, label, r.acl);
  }

  extension(r: ExtensionRow): void {
    if (!this.inSchema(r.schema)) return;
    const label = `extension ${displayIdent(r.name)}`;
    this.add({
      key: key('extension', r.name), kind: 'extension', schema: r.schema, object: label, display: label, parents: [schemaKey(r.schema)],
      properties: { version: r.version, schema: r.schema },
    });
  }

  relation(r: RelationRow): void {
    if (!this.inSchema(r.schema)) return;
    const { kind, label } = RELATION_KIND[r.relkind];
    const k = relationKey(r.schema, r.name, r.relkind);
    const object = `${label} ${displayIdent(r.name)}`;
    const display = `${label} ${displayName(r.schema, r.name)}`;
    const properties: Record<string, string | null> = {};
    if (kind === 'table') {
      properties['partitioned by'] = r.partkey;
      properties.persistence = PERSISTENCE[r.persistence] ?? r.persistence;
      properties['replica identity'] = REPLICA_IDENTITY[r.replident] ?? r.replident;
      properties['storage options'] = r.options ? [...r.options].sort(compareCodePoints).join(', ') : null;
      properties.inherits = r.inherits;
    } else if (kind === 'view' || kind === 'matview') {
      properties.definition = normalizeSql(r.viewdef);
      if (kind === 'matview') properties.populated = yesNo(r.populated);
      properties.persistence = PERSISTENCE[r.persistence] ?? r.persistence;
    } else if (kind === 'sequence') {
      Object.assign(properties, {
        type: r.seq_type, start: r.seq_start, increment: r.seq_increment, minimum: r.seq_min, maximum: r.seq_max,
        cache: r.seq_cache, cycle: yesNo(r.seq_cycle),
        'owned by': r.seq_owned_by ? `${displayName(r.seq_owned_by[0], r.seq_owned_by[1])}.${displayIdent(r.seq_owned_by[3])}` : null,
        persistence: PERSISTENCE[r.persistence] ?? r.persistence,
      });
    }
    const parents = [schemaKey(r.schema)];
    // A serial or identity sequence goes with its table: a missing table is one difference, not two.
    if (r.seq_owned_by) parents.push(relationKey(r.seq_owned_by[0], r.seq_owned_by[1], r.seq_owned_by[2]));
    this.add({ key: k, kind, schema: r.schema, object, display, parents, properties, ...(kind === 'table' ? { columnOrder: [] } : {}) });
    this.owner(k, r.schema, object, display, r.owner);
    this.privileges(k, r.schema, object, display, r.acl);
    if (r.relkind === 'r' || r.relkind === 'p') {
      this.add({
        key: key('rls', r.schema, r.name), kind: 'rls', schema: r.schema,
        object: `row-level security on ${object}`, display: `row-level security on ${display}`, parents: [k],
        properties: { '': r.rls ? 'enabled' : 'disabled', forced: yesNo(r.forcerls) },
      });
    }
    if (r.partition_parent !== null && r.partition_schema !== null) {
      this.add({
        key: partitionKey(r.schema, r.name), kind: 'partition', schema: r.schema,
        object: `partition ${displayIdent(r.name)}`, display: `partition ${displayName(r.schema, r.name)}`, parents: [k],
        properties: { of: displayName(r.partition_schema, r.partition_parent), bound: normalizeSql(r.partition_bound) },
      });
    }
  }

  column(r: ColumnRow): void {
    if (!this.inSchema(r.schema)) return;
    const tableKey = relationKey(r.schema, r.table, r.relkind);
    const table = this.byKey.get(tableKey);
    if (table?.columnOrder) (table.columnOrder as string[]).push(r.name);
    const k = key('column', r.schema, r.table, r.name);
    const object = `column ${displayIdent(r.table)}.${displayIdent(r.name)}`;
    const display = `column ${displayName(r.schema, r.table)}.${displayIdent(r.name)}`;
    const generated = r.generated === 's';
    // Inherited columns of a partition come with the partition: a detached partition is one difference.
    const parents = r.inherited ? [tableKey, partitionKey(r.schema, r.table)] : [tableKey];
    this.add({
      key: k, kind: 'column', schema: r.schema, object, display, parents,
      properties: {
        // Inherited columns (partitions, inheritance children) must have their parent's type: compared there.
        type: r.inherited ? null : r.type,
        collation: r.inherited ? null : r.collation,
        'not null': yesNo(r.notnull),
        default: generated ? null : normalizeSql(r.def),
        generated: generated ? `always as (${normalizeSql(r.def)}) stored` : null,
        identity: r.identity === 'a' ? 'generated always' : r.identity === 'd' ? 'generated by default' : null,
      },
    });
    this.privileges(k, r.schema, object, display, r.acl);
  }

  index(r: IndexRow): void {
    if (!this.inSchema(r.schema)) return;
    const parents = [relationKey(r.schema, r.table, r.relkind)];
    if (r.parent_schema !== null && r.parent_index !== null) {
      parents.push(key('index', r.parent_schema, r.parent_index), partitionKey(r.schema, r.table));
    }
    this.add({
      key: key('index', r.schema, r.name), kind: 'index', schema: r.schema,
      object: `index ${displayIdent(r.name)}`, display: `index ${displayName(r.schema, r.name)}`, parents,
      properties: {
        definition: normalizeSql(r.def),
        valid: yesNo(r.valid),
        'attached to': r.parent_index !== null && r.parent_schema !== null ? displayName(r.parent_schema, r.parent_index) : null,
      },
    });
  }

  constraint(r: ConstraintRow): void {
    if (!this.inSchema(r.schema)) return;
    // Internal clones on the same table (foreign keys referencing a partitioned table) come with their parent.
    if (r.parent_same_table) return;
    const definition = normalizeSql(r.def.replace(/ NOT VALID$/, ''));
    const properties = { definition, validated: yesNo(r.validated) };
    // NOT NULL constraints that newer servers catalog (contype 'n') have a class of their own: see inventory-versions.ts.
    const notNull = r.type === 'n' ? NOT_NULL_CLASS : '';
    if (r.table !== null && r.relkind !== null) {
      const parents = [relationKey(r.schema, r.table, r.relkind)];
      if (r.parent_name !== null && r.parent_schema !== null && r.parent_table !== null) {
        parents.push(key(`${notNull}constraint`, r.parent_schema, r.parent_table, r.parent_name), partitionKey(r.schema, r.table));
      }
      this.add({
        key: key(`${notNull}constraint`, r.schema, r.table, r.name), kind: 'constraint', schema: r.schema,
        object: `constraint ${displayIdent(r.name)} on ${displayIdent(r.table)}`,
        display: `constraint ${displayIdent(r.name)} on ${displayName(r.schema, r.table)}`, parents, properties,
      });
    } else if (r.domain !== null) {
      this.add({
        key: key(`${notNull}domain constraint`, r.schema, r.domain, r.name), kind: 'constraint', schema: r.schema,
        object: `constraint ${displayIdent(r.name)} on domain ${displayIdent(r.domain)}`,
        display: `constraint ${displayIdent(r.name)} on domain ${displayName(r.schema, r.domain)}`,
        parents: [key('domain', r.schema, r.domain)], properties,
      });
    }
  }

  trigger(r: TriggerRow): void {
    if (!this.inSchema(r.schema)) return;
    const parents = [relationKey(r.schema, r.table, r.relkind)];
    if (r.parent_name !== null && r.parent_schema !== null && r.parent_table !== null && r.parent_relkind !== null) {
      parents.push(key('trigger', r.parent_schema, r.parent_table, r.parent_name), partitionKey(r.schema, r.table));
    }
    this.add({
      key: key('trigger', r.schema, r.table, r.name), kind: 'trigger', schema: r.schema,
      object: `trigger ${displayIdent(r.name)} on ${displayIdent(r.table)}`,
      display: `trigger ${displayIdent(r.name)} on ${displayName(r.schema, r.table)}`, parents,
      properties: { definition: normalizeSql(r.def), '': TRIGGER_ENABLED[r.enabled] ?? r.enabled },
    });
  }

  policy(r: PolicyRow): void {
    if (!this.inSchema(r.schema)) return;
    this.add({
      key: key('policy', r.schema, r.table, r.name), kind: 'policy', schema: r.schema,
      object: `policy ${displayIdent(r.name)} on ${displayIdent(r.table)}`,
      display: `policy ${displayIdent(r.name)} on ${displayName(r.schema, r.table)}`,
      parents: [relationKey(r.schema, r.table, r.relkind)],
      properties: {
        type: r.permissive ? 'permissive' : 'restrictive',
        command: POLICY_CMD[r.cmd] ?? r.cmd,
        roles: r.roles.join(', '),
        using: normalizeSql(r.qual),
        'with check': normalizeSql(r.with_check),
      },
    });
  }

  func(r: FunctionRow): void {
    if (!this.inSchema(r.schema)) return;
    const label = PROKIND_LABEL[r.prokind] ?? 'function';
    const signature = `${displayIdent(r.name)}(${r.argtypes})`;
    const k = key('function', r.schema, `${r.name}(${r.argtypes})`);
    const object = `${label} ${signature}`;
    const display = `${label} ${displayIdent(r.schema)}.${signature}`;
    this.add({
      key: k, kind: 'function', schema: r.schema, object, display, parents: [schemaKey(r.schema)],
      properties: {
        kind: label,
        arguments: r.arguments,
        returns: r.result,
        language: r.language,
        volatility: ({ i: 'immutable', s: 'stable', v: 'volatile' } as Record<string, string>)[r.volatility] ?? r.volatility,
        strict: yesNo(r.strict),
        'security definer': yesNo(r.secdef),
        leakproof: yesNo(r.leakproof),
        parallel: ({ s: 'safe', r: 'restricted', u: 'unsafe' } as Record<string, string>)[r.parallel] ?? r.parallel,
        settings: r.config ? r.config.join(', ') : null,
        'source md5': r.body_md5 ?? r.src_md5,
        'object file': r.probin,
      },
    });
    this.owner(k, r.schema, object, display, r.owner);
    this.privileges(k, r.schema, object, display, r.acl);
  }

  type(r: TypeRow): void {
    if (!this.inSchema(r.schema)) return;
    const isDomain = r.typtype === 'd';
    const label = TYPTYPE_LABEL[r.typtype] ?? 'type';
    const k = key(isDomain ? 'domain' : 'type', r.schema, r.name);
    const object = `${label} ${displayIdent(r.name)}`;
    const display = `${label} ${displayName(r.schema, r.name)}`;
    const properties: Record<string, string | null> = { kind: label };
    if (r.typtype === 'e') properties.labels = r.labels ?? '';
    if (r.typtype === 'c') properties.attributes = r.attributes ?? '';
    if (r.typtype === 'r') properties.subtype = r.subtype;
    if (isDomain) Object.assign(properties, { 'base type': r.base, 'not null': yesNo(r.notnull), default: normalizeSql(r.def) });
    this.add({ key: k, kind: isDomain ? 'domain' : 'type', schema: r.schema, object, display, parents: [schemaKey(r.schema)], properties });
    this.owner(k, r.schema, object, display, r.owner);
    this.privileges(k, r.schema, object, display, r.acl);
  }

  defaultAcl(r: DefaultAclRow): void {
    // Database-wide default privileges are dumped only when no schema selection narrows the dump (as pg_dump).
    if (r.schema === null ? (this.opts.schemas ?? []).length > 0 : !this.inSchema(r.schema)) return;
    const objects = DEFAULT_ACL_OBJECTS[r.objtype] ?? r.objtype;
    const where = r.schema === null ? '' : ` in schema ${displayIdent(r.schema)}`;
    const objKey = key('default privileges', r.schema ?? '', r.role, r.objtype);
    const label = `${objects} created by ${displayIdent(r.role)}${where}`;
    for (const [grantee, list] of groupAcl(r.acl ?? [])) {
      const who = grantee === '' ? displayIdent(r.role) : grantee === 'PUBLIC' ? 'PUBLIC' : displayIdent(grantee);
      this.add({
        key: key('privilege', objKey, grantee), kind: 'privilege', schema: r.schema ?? '',
        object: `default privileges of ${who} on ${label}`, display: `default privileges of ${who} on ${label}`,
        parents: r.schema === null ? [] : [schemaKey(r.schema)],
        properties: { '': list.join(', ') },
      });
    }
  }
}

function groupAcl(acl: AclEntry[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [grantee, privilege, grantable] of acl) {
    const list = out.get(grantee) ?? [];
    list.push(grantable ? `${privilege} WITH GRANT OPTION` : privilege);
    out.set(grantee, list);
  }
  for (const list of out.values()) list.sort(compareCodePoints);
  return out;
}
