/**
 * Verification across PostgreSQL major versions compares meaning, not form. A dump of an older server restored
 * into a newer one arrives whole, yet the newer catalogs say some things in more words; each rule here names one
 * such thing, the version that introduced it, and why it is no loss. Everything else still counts: a rule only
 * removes what the newer server adds by itself, never what the source had.
 *
 * - PostgreSQL 17 added the MAINTAIN privilege on tables (VACUUM, ANALYZE, CLUSTER, REFRESH MATERIALIZED VIEW,
 *   REINDEX, LOCK TABLE). `GRANT ALL` and the owner's implicit privileges include it on 17, so a grantee that held
 *   every table privilege of the older server (what pg_dump writes as GRANT ALL) holds MAINTAIN too on the newer
 *   one, with the same grant option. Grantees with fewer privileges must not gain it, so they are compared as is.
 * - PostgreSQL 17 records domain NOT NULL constraints in pg_constraint, and 18 those of table columns (named
 *   `<table>_<column>_not_null`). An older server has no such rows; the column's and the domain's own "not null"
 *   property, compared on every version, says the same. These rows are compared only when both servers have them.
 * - PostgreSQL 17 marks a partition's column as identity when its partitioned table's column is one (older servers
 *   keep the identity on the parent only). A partition's inherited column takes it from the parent, whose own
 *   column is compared, so across 17 the identity of inherited partition columns is not compared again.
 * - Each major version may print the same view query differently (16 leaves out the table qualifiers of a
 *   single-table query). So across majors, the source's view definitions are printed by the destination server
 *   itself (printedByDestination): identical queries then read identically, and a real change still differs.
 */
import type { Client } from 'pg';
import type { Inventory, InventoryObject } from './inventory-types';
import { normalizeSql } from '../../postgres/sql';

/** Key class prefix of catalogued NOT NULL constraints: "not null constraint", "not null domain constraint". */
export const NOT_NULL_CLASS = 'not null ';

/** Table privileges before MAINTAIN (PostgreSQL 16 and older): holding all of them is holding ALL. */
const TABLE_PRIVILEGES_BEFORE_17 = ['DELETE', 'INSERT', 'REFERENCES', 'SELECT', 'TRIGGER', 'TRUNCATE', 'UPDATE'];

const MAINTAIN_SINCE = 170000;
const PARTITION_IDENTITY_SINCE = 170000;
const DOMAIN_NOT_NULL_CATALOGUED_SINCE = 170000;
const TABLE_NOT_NULL_CATALOGUED_SINCE = 180000;

/** Both inventories with what only the newer server's form adds taken out (unchanged for the same major version). */
export function alignServerVersions(source: Inventory, destination: Inventory): { source: Inventory; destination: Inventory } {
  const oldest = Math.min(source.serverVersion, destination.serverVersion);
  const notNullUncomparable = (o: InventoryObject) => {
    const cls = keyClass(o);
    if (cls === `${NOT_NULL_CLASS}constraint`) return oldest < TABLE_NOT_NULL_CATALOGUED_SINCE;
    if (cls === `${NOT_NULL_CLASS}domain constraint`) return oldest < DOMAIN_NOT_NULL_CATALOGUED_SINCE;
    return false;
  };
  const identityAcross17 = source.serverVersion < PARTITION_IDENTITY_SINCE !== destination.serverVersion < PARTITION_IDENTITY_SINCE;
  const keep = (inventory: Inventory) => inventory.objects.filter((o) => !notNullUncomparable(o))
    .map((o) => (identityAcross17 && isInheritedPartitionColumn(o) ? { ...o, properties: { ...o.properties, identity: null } } : o));
  const sourceObjects = keep(source);
  let destinationObjects = keep(destination);
  if (source.serverVersion < MAINTAIN_SINCE && destination.serverVersion >= MAINTAIN_SINCE) {
    const before = new Map(sourceObjects.filter((o) => o.kind === 'privilege').map((o) => [o.key, o]));
    destinationObjects = destinationObjects.map((o) => (o.kind === 'privilege' && before.has(o.key) ? withoutImpliedMaintain(before.get(o.key)!, o) : o));
  }
  return { source: { ...source, objects: sourceObjects }, destination: { ...destination, objects: destinationObjects } };
}

/** The destination's privileges without the MAINTAIN that ALL implies on 17, when the source grantee held ALL. */
function withoutImpliedMaintain(source: InventoryObject, destination: InventoryObject): InventoryObject {
  const had = new Set(privilegeList(source));
  const implied = ['', ' WITH GRANT OPTION']
    .filter((option) => TABLE_PRIVILEGES_BEFORE_17.every((p) => had.has(`${p}${option}`)))
    .map((option) => `MAINTAIN${option}`);
  if (implied.length === 0) return destination;
  const list = privilegeList(destination).filter((p) => !implied.includes(p));
  return { ...destination, properties: { ...destination.properties, '': list.join(', ') } };
}

/** A partition's column that comes from its partitioned table (its parents include the partition object). */
function isInheritedPartitionColumn(o: InventoryObject): boolean {
  return o.kind === 'column' && o.parents.some((p) => (JSON.parse(p) as string[])[0] === 'partition');
}

/**
 * The source inventory with each view and materialized view definition that differs from the destination's
 * printed by the destination server: in a transaction that is rolled back, a temporary view is made from the
 * source's definition and the destination prints it back (pg_get_viewdef). Only across major versions; a
 * definition the destination cannot parse (a missing table, say) is kept as the source printed it, so it is
 * reported. Needs the TEMPORARY privilege on the destination database (PUBLIC has it by default); without it the
 * definitions are compared as printed.
 */
export async function printedByDestination(destination: Client, source: Inventory, dest: Inventory): Promise<Inventory> {
  if (Math.floor(source.serverVersion / 10000) === Math.floor(dest.serverVersion / 10000)) return source;
  const destinationDefinitions = new Map(dest.objects.filter(isView).map((o) => [o.key, o.properties.definition]));
  const differing = source.objects.filter((o) => isView(o) && destinationDefinitions.has(o.key) && o.properties.definition !== destinationDefinitions.get(o.key));
  if (differing.length === 0) return source;
  const reprinted = new Map<string, string>();
  await destination.query('BEGIN READ WRITE');
  try {
    await destination.query('SET LOCAL search_path = pg_catalog');
    for (const o of differing) {
      await destination.query('SAVEPOINT reprint');
      try {
        await destination.query(`CREATE TEMPORARY VIEW "db-migration reprint" AS ${String(o.properties.definition).replace(/;\s*$/, '')}`);
        const { rows } = await destination.query<{ def: string }>('SELECT pg_get_viewdef(\'pg_temp."db-migration reprint"\'::regclass) AS def');
        reprinted.set(o.key, rows[0].def);
      } catch {
        // Not parseable on the destination: compared as the source printed it, so the difference is reported.
      }
      await destination.query('ROLLBACK TO SAVEPOINT reprint');
    }
  } finally {
    await destination.query('ROLLBACK');
  }
  return {
    ...source,
    objects: source.objects.map((o) => (reprinted.has(o.key) ? { ...o, properties: { ...o.properties, definition: normalizeSql(reprinted.get(o.key)!) } } : o)),
  };
}

function isView(o: InventoryObject): boolean {
  return o.kind === 'view' || o.kind === 'matview';
}

function privilegeList(o: InventoryObject): string[] {
  const text = o.properties[''] ?? '';
  return text === '' ? [] : text.split(', ');
}

function keyClass(o: InventoryObject): string {
  return (JSON.parse(o.key) as string[])[0];
}
