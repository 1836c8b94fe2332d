/**
 * Order-independent content checksums of tables, and the snapshot plumbing that lets the source side be
 * checksummed in exactly the state pg_dump saw.
 *
 * Scheme. For every row, the row is rendered as text with its columns in a fixed order (column names sorted
 * by code point, so attribute numbers and dropped columns do not matter), converted to UTF-8 (so two servers
 * with different encodings agree) and hashed with md5. The 128-bit digest is split into two 64-bit halves,
 * each read as a signed bigint and summed as numeric (no overflow). A table's checksum is a digest of
 * (row count, sum of first halves, sum of second halves).
 *
 * Why it is sound: a multiset of rows maps to the same sums whatever the physical order, so the two servers
 * agree whenever they hold the same rows. A change of rows changes a sum unless the changed hashes cancel
 * exactly in both 64-bit halves at once, which for non-adversarial data is a chance of about 2^-128; a
 * duplicated or deleted row changes the count. Sums (unlike XOR) do not cancel for pairs of equal rows.
 * Row text depends on session settings (DateStyle, IntervalStyle, TimeZone, extra_float_digits, bytea_output,
 * lc_monetary, search_path for reg* types), so every computation sets them locally to fixed values; the
 * caller's session is left as it was. row_security is off so that a table the user cannot fully read fails
 * loudly instead of being checksummed through a policy filter (pg_dump does the same).
 */
import { createHash } from 'node:crypto';
import type { Client } from 'pg';
import { schemaMatcher } from './dumped-schemas';
import { displayIdent, displayName, qualifiedName, quoteIdent, quoteLiteral } from '../postgres/sql';

/** Settings that make the text of a row identical on any server for identical data. */
export const CANONICAL_OUTPUT_SETTINGS: Readonly<Record<string, string>> = {
  DateStyle: 'ISO, YMD',
  IntervalStyle: 'postgres',
  TimeZone: 'UTC',
  extra_float_digits: '3',
  bytea_output: 'hex',
  lc_monetary: 'C',
  search_path: 'pg_catalog',
  row_security: 'off',
};

export interface TableRef {
  readonly schema: string;
  readonly name: string;
}

export interface TableSelection {
  /** pg_dump --schema patterns. @default - every non-system schema */
  readonly schemas?: readonly string[];
  /** pg_dump --exclude-schema patterns. @default - none */
  readonly excludeSchemas?: readonly string[];
}

export interface TableChecksum {
  readonly schema: string;
  readonly table: string;
  readonly rows: number;
  /** 32 hex digits; equal for equal multisets of rows. */
  readonly checksum: string;
}

/** A content difference, shaped like an inventory difference so both can be reported together. */
export interface ChecksumDifference {
  readonly schema: string;
  readonly object: string;
  readonly kind: 'checksum';
  readonly what: 'missing' | 'extra' | 'different';
  readonly source?: string;
  readonly destination?: string;
  readonly message: string;
}

/**
 * Runs fn inside a read-only transaction with the given settings applied locally. When the session is
 * already in a transaction (for example one that imported a snapshot), it runs inside a savepoint that is
 * rolled back afterwards, so the caller's transaction, snapshot and settings are untouched; otherwise it
 * opens its own REPEATABLE READ READ ONLY transaction so that all of fn sees one consistent state.
 */
export async function withLocalSettings<T>(
  client: Client,
  settings: Readonly<Record<string, string>>,
  fn: () => Promise<T>,
): Promise<T> {
  const status = client.getTransactionStatus();
  if (status === 'E') throw new Error('the session is in a failed transaction; roll it back before verifying');
  const names = Object.keys(settings);
  const apply = () => client.query('SELECT pg_catalog.set_config(s.name, s.value, true) FROM unnest($1::text[], $2::text[]) AS s(name, value)',
    [names, names.map((n) => settings[n])]);
  if (status === 'T') {
    await client.query('SAVEPOINT db_migration_verify');
    // Rolling back to the savepoint undoes the SET LOCALs (and, after an error, makes the outer transaction
    // usable again); the snapshot of a REPEATABLE READ transaction is not affected.
    const undo = async () => {
      await client.query('ROLLBACK TO SAVEPOINT db_migration_verify');
      await client.query('RELEASE SAVEPOINT db_migration_verify');
    };
    let result: T;
    try {
      await apply();
      result = await fn();
    } catch (err) {
      await undo().catch(() => undefined);
      throw err;
    }
    await undo();
    return result;
  }
  return inReadOnlyTransaction(client, async () => {
    await apply();
    return fn();
  });
}

/** Runs fn in a REPEATABLE READ READ ONLY transaction: committed after it, rolled back if it throws. */
async function inReadOnlyTransaction<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * Opens a REPEATABLE READ READ ONLY transaction on the client and exports its snapshot. The transaction stays
 * open (and the snapshot valid) until the caller ends it with {@link releaseSnapshot}; pg_dump --snapshot and
 * {@link withSnapshot} on other sessions see exactly this state meanwhile.
 */
export async function exportSnapshot(client: Client): Promise<string> {
  if (client.getTransactionStatus() !== 'I') throw new Error('exportSnapshot needs a session outside any transaction');
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  try {
    const res = await client.query<{ id: string }>('SELECT pg_catalog.pg_export_snapshot() AS id');
    return res.rows[0].id;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** Ends the transaction opened by {@link exportSnapshot}; the snapshot is no longer importable afterwards. */
export async function releaseSnapshot(client: Client): Promise<void> {
  await client.query('COMMIT');
}

/**
 * Runs fn in a REPEATABLE READ READ ONLY transaction that imported the snapshot, then ends it. The exporting
 * transaction must still be open.
 */
export async function withSnapshot<T>(client: Client, snapshotId: string, fn: () => Promise<T>): Promise<T> {
  if (!/^[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9]+)?$/.test(snapshotId)) throw new Error(`not a snapshot id: ${JSON.stringify(snapshotId)}`);
  if (client.getTransactionStatus() !== 'I') throw new Error('withSnapshot needs a session outside any transaction');
  return inReadOnlyTransaction(client, async () => {
    await client.query(`SET TRANSACTION SNAPSHOT ${quoteLiteral(snapshotId)}`);
    return fn();
  });
}

/**
 * Tables that hold rows of their own: ordinary tables (relkind r, partitions included), not partitioned
 * parents (their rows live in the partitions), views, foreign tables or extension members. Sorted.
 */
export async function listLeafTables(client: Client, selection: TableSelection = {}): Promise<TableRef[]> {
  const res = await client.query<TableRef>(`
    SELECT n.nspname AS schema, c.relname AS name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')`);
  const matches = schemaMatcher({ schemas: [...(selection.schemas ?? [])], excludeSchemas: [...(selection.excludeSchemas ?? [])] });
  return res.rows.filter((t) => matches(t.schema)).sort(compareRefs);
}

/**
 * Exact row count of each leaf table of the selection, keyed by `"schema"."table"` (as verify keys them), one
 * table after the other in the caller's transaction (see {@link withSnapshot}).
 */
export async function tableRowCounts(client: Client, selection: TableSelection = {}): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const t of await listLeafTables(client, selection)) {
    const q = qualifiedName(t.schema, t.name);
    const res = await client.query<{ n: string }>(`SELECT pg_catalog.count(*)::text AS n FROM ONLY ${q}`);
    out.set(q, Number(res.rows[0].n));
  }
  return out;
}

/**
 * Row count and content checksum of each table, keyed by `"schema"."table"`. Tables that do not exist are
 * left out of the map (so comparing with the other side reports them). Runs in the caller's transaction
 * when there is one (see {@link withSnapshot}), else in a REPEATABLE READ READ ONLY transaction of its own.
 */
export async function tableChecksums(
  client: Client,
  tables?: readonly TableRef[] | TableSelection,
): Promise<Map<string, TableChecksum>> {
  return withLocalSettings(client, CANONICAL_OUTPUT_SETTINGS, async () => {
    const refs = Array.isArray(tables) ? [...tables] : await listLeafTables(client, (tables ?? {}) as TableSelection);
    const out = new Map<string, TableChecksum>();
    if (refs.length === 0) return out;
    const cols = await client.query<{ schema: string; name: string; columns: string[] }>(`
      SELECT t.schema, t.name,
             coalesce((SELECT array_agg(a.attname::text) FROM pg_catalog.pg_attribute a
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '{}') AS columns
      FROM unnest($1::text[], $2::text[]) AS t(schema, name)
      JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.name AND c.relkind IN ('r', 'p', 'm', 'f')`,
    [refs.map((r) => r.schema), refs.map((r) => r.name)]);
    const rows = [...cols.rows].sort(compareRefs);
    for (const t of rows) {
      const res = await client.query<{ rows: string; s1: string; s2: string }>(checksumQuery(t.schema, t.name, t.columns));
      const { rows: count, s1, s2 } = res.rows[0];
      out.set(qualifiedName(t.schema, t.name), {
        schema: t.schema,
        table: t.name,
        rows: Number(count),
        checksum: createHash('sha256').update(`${count}:${s1}:${s2}`).digest('hex').slice(0, 32),
      });
    }
    return out;
  });
}

/** The SQL that checksums one table; exported so operators can rerun it by hand. */
export function checksumQuery(schema: string, table: string, columns: readonly string[]): string {
  const sorted = [...columns].sort(compareCodePoints);
  const row = `ROW(${sorted.map((c) => `t.${quoteIdent(c)}`).join(', ')})::text`;
  return `SELECT count(*)::text AS rows,
       coalesce(sum(('x' || substr(h, 1, 16))::bit(64)::bigint::numeric), 0)::text AS s1,
       coalesce(sum(('x' || substr(h, 17, 16))::bit(64)::bigint::numeric), 0)::text AS s2
FROM (SELECT md5(convert_to(${row}, 'UTF8')) AS h FROM ONLY ${qualifiedName(schema, table)} AS t) AS x`;
}

/** Differences between source and destination checksums, one per table, sorted by table. */
export function compareChecksums(
  source: ReadonlyMap<string, TableChecksum>,
  destination: ReadonlyMap<string, TableChecksum>,
): ChecksumDifference[] {
  const keys = [...new Set([...source.keys(), ...destination.keys()])].sort(compareCodePoints);
  const out: ChecksumDifference[] = [];
  for (const key of keys) {
    const s = source.get(key);
    const d = destination.get(key);
    const ref = (s ?? d)!;
    const name = displayName(ref.schema, ref.table);
    const base = { schema: ref.schema, object: `table ${displayIdent(ref.table)}`, kind: 'checksum' as const };
    if (s && !d) {
      out.push({ ...base, what: 'missing', source: summary(s), message: `table ${name}: ${rowsText(s.rows)} on the source, missing on the destination` });
    } else if (!s && d) {
      out.push({ ...base, what: 'extra', destination: summary(d), message: `table ${name}: ${rowsText(d.rows)} on the destination, not checksummed on the source` });
    } else if (s && d && (s.rows !== d.rows || s.checksum !== d.checksum)) {
      const rows = s.rows === d.rows ? `${rowsText(s.rows)} on both` : `${rowsText(s.rows)} on the source, ${d.rows} on the destination`;
      const content = s.checksum === d.checksum ? 'same content checksum' : 'content differs';
      out.push({ ...base, what: 'different', source: summary(s), destination: summary(d), message: `table ${name}: ${rows}, ${content}` });
    }
  }
  return out;
}

function summary(c: TableChecksum): string {
  return `${rowsText(c.rows)}, checksum ${c.checksum}`;
}

function rowsText(n: number): string {
  return `${n} ${n === 1 ? 'row' : 'rows'}`;
}

function compareRefs(a: TableRef, b: TableRef): number {
  return compareCodePoints(a.schema, b.schema) || compareCodePoints(a.name, b.name);
}

/** UTF-16 code unit order: the same on every machine and server, unlike locale collation. */
export function compareCodePoints(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
