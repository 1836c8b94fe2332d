/**
 * What the schema archive says pg_dump dumps, read from `pg_restore --list`. Each entry line carries the
 * object's catalog and OID ("228; 1259 16469 TABLE Bücher titel app_owner"), so the selection is exact
 * (every --schema / --exclude-schema / --exclude-table rule and extension membership applied by pg_dump
 * itself) without parsing names, which the listing does not quote.
 */

/** pg_class, pg_constraint, pg_extension and pg_largeobject_metadata: the catalogs of entries the engine needs. */
const PG_CLASS = 1259;
const PG_CONSTRAINT = 2606;
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
  /**
   * Post-data entries that belong to one table and need nothing but that table: its indexes (INDEX) and its
   * primary key, unique and exclusion constraints (CONSTRAINT; not FK CONSTRAINT, not INDEX ATTACH). Each with
   * its listing line, which `pg_restore -L` selects it by.
   */
  readonly tableLevelPostData: readonly TableLevelEntry[];
  /** Every entry line of the listing, in order (what `pg_restore -L` takes). */
  readonly entryLines: readonly string[];
}

export interface TableLevelEntry {
  readonly kind: 'index' | 'constraint';
  /** OID of the index (pg_class) or of the constraint (pg_constraint). */
  readonly oid: number;
  readonly line: string;
}

const ENTRY = /^\d+;\s+(\d+)\s+(\d+)\s+(.*)$/;

export function parseArchiveList(lines: readonly string[]): ArchiveContents {
  const tables: number[] = [];
  const sequences: number[] = [];
  const extensions: number[] = [];
  const largeObjects: number[] = [];
  const tableLevel: TableLevelEntry[] = [];
  const entryLines: string[] = [];
  for (const line of lines) {
    const m = ENTRY.exec(line);
    if (!m) continue; // comments (;) and blank lines
    const catalog = Number(m[1]);
    const oid = Number(m[2]);
    const rest = m[3];
    entryLines.push(line);
    if (catalog === PG_CLASS && rest.startsWith('INDEX ') && !rest.startsWith('INDEX ATTACH ')) tableLevel.push({ kind: 'index', oid, line });
    else if (catalog === PG_CONSTRAINT && rest.startsWith('CONSTRAINT ')) tableLevel.push({ kind: 'constraint', oid, line });
    else if (catalog === PG_CLASS && rest.startsWith('TABLE ')) tables.push(oid);
    else if (catalog === PG_CLASS && rest.startsWith('SEQUENCE ')) sequences.push(oid);
    else if (catalog === PG_EXTENSION && rest.startsWith('EXTENSION ')) extensions.push(oid);
    else if (catalog === PG_LARGEOBJECT_METADATA && rest.startsWith('BLOB ')) largeObjects.push(oid);
  }
  return {
    tableOids: tables, sequenceOids: sequences, extensionOids: extensions, largeObjectOids: largeObjects, tableLevelPostData: tableLevel, entryLines,
  };
}
