/**
 * What the schema archive says pg_dump dumps, read from `pg_restore --list`. Each entry line carries the
 * object's catalog and OID ("228; 1259 16469 TABLE Bücher titel app_owner"), so the selection is exact
 * (every --schema / --exclude-schema / --exclude-table rule and extension membership applied by pg_dump
 * itself) without parsing names, which the listing does not quote.
 */

/** pg_class, pg_extension and pg_largeobject_metadata: the catalogs of entries the engine needs. */
const PG_CLASS = 1259;
const PG_EXTENSION = 3079;
const PG_LARGEOBJECT_METADATA = 2613;

export interface ArchiveContents {
  /** OIDs of TABLE entries (ordinary and partitioned tables; foreign tables are FOREIGN TABLE). */
  readonly tableOids: readonly number[];
  readonly sequenceOids: readonly number[];
  /** Extensions created by the archive: their configuration tables' data is dumped too. */
  readonly extensionOids: readonly number[];
  /** Large objects the archive creates (empty); their contents are copied separately. */
  readonly largeObjectOids: readonly number[];
}

const ENTRY = /^\d+;\s+(\d+)\s+(\d+)\s+(.*)$/;

export function parseArchiveList(lines: readonly string[]): ArchiveContents {
  const tables: number[] = [];
  const sequences: number[] = [];
  const extensions: number[] = [];
  const largeObjects: number[] = [];
  for (const line of lines) {
    const m = ENTRY.exec(line);
    if (!m) continue; // comments (;) and blank lines
    const catalog = Number(m[1]);
    const oid = Number(m[2]);
    const rest = m[3];
    if (catalog === PG_CLASS && rest.startsWith('TABLE ')) tables.push(oid);
    else if (catalog === PG_CLASS && rest.startsWith('SEQUENCE ')) sequences.push(oid);
    else if (catalog === PG_EXTENSION && rest.startsWith('EXTENSION ')) extensions.push(oid);
    else if (catalog === PG_LARGEOBJECT_METADATA && rest.startsWith('BLOB ')) largeObjects.push(oid);
  }
  return { tableOids: tables, sequenceOids: sequences, extensionOids: extensions, largeObjectOids: largeObjects };
}
