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
import { withLocalSettings } from '../checksum';
import { schemaMatcher } from '../dumped-schemas';
import { normalizeSql } from '../../postgres/sql';
import { InventoryBuilder } from './inventory-builder';
import { CatalogQueries, SchemaRow, ExtensionRow, RelationRow, ColumnRow, IndexRow, ConstraintRow, TriggerRow, PolicyRow, FunctionRow, TypeRow, DefaultAclRow } from './inventory-queries';
import type { Inventory, InventoryOptions } from './inventory-types';

export type { Inventory, InventoryDifference, InventoryKind, InventoryObject, InventoryOptions } from './inventory-types';
export { compareInventories } from './inventory-compare';
export { normalizeSql };

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
