/**
 * Turns the catalog rows into inventory objects: each object's name-based key, its parents, and its properties
 * as text (owners, privileges per grantee, definitions as the server prints them).
 */
import { compareCodePoints } from '../checksum';
import { displayIdent, displayName, normalizeSql } from '../../postgres/sql';
import type { InventoryKind, InventoryObject, InventoryOptions } from './inventory-types';
import type { AclEntry, SchemaRow, ExtensionRow, RelationRow, ColumnRow, IndexRow, ConstraintRow, TriggerRow, PolicyRow, FunctionRow, TypeRow, DefaultAclRow } from './inventory-queries';
import { NOT_NULL_CLASS } from './version-rules';

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

export class InventoryBuilder {
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
    // NOT NULL constraints that newer servers catalog (contype 'n') have a class of their own: see version-rules.ts.
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
