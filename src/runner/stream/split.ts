/**
 * Large tables split into parts that COPY workers load in parallel (migration.copy.splitTablesLargerThan), all
 * in the stream's one snapshot, so the table arrives exactly once:
 * - by a single-column integer primary key: equal ranges between its min and max in the snapshot (an index
 *   scan each, both ends), the last part open-ended;
 * - otherwise by block ranges of `ctid`, which PostgreSQL 14 and later read with a TID range scan (only the
 *   part's blocks); the last part open-ended. An older source would scan the whole table once per part, so
 *   there such a table is not split, and the log says why.
 * The destination table is truncated once before its first part; its indexes are built when its last part is
 * loaded (stream-database.ts counts the parts).
 */
import type { Client } from 'pg';
import { escapeIdentifier } from 'pg';
import type { TableToCopy } from './table-catalog';
import { qualifiedName } from './copy-table';

export interface TablePart {
  readonly table: TableToCopy;
  /** 1-based. */
  readonly index: number;
  readonly count: number;
  /** The part's rows: a key or ctid range condition. */
  readonly where: string;
  /** The table's size divided by the parts: the queue's order. */
  readonly bytes: number;
}

export interface SplitPlan {
  /** Parts of the tables that were split, by table oid. */
  readonly parts: ReadonlyMap<number, readonly TablePart[]>;
  /** One line per large table: how it was split, or why not. */
  readonly notes: readonly string[];
}

/** At most this many parts per table (a part per worker and more is enough to balance; each costs a round trip). */
export const MAX_PARTS = 64;

/** Splits the tables larger than `thresholdBytes` (read in `snapshot`: a session on the stream's snapshot). */
export async function planSplits(snapshot: Client, tables: readonly TableToCopy[], thresholdBytes: number, serverVersionNum: number): Promise<SplitPlan> {
  const parts = new Map<number, TablePart[]>();
  const notes: string[] = [];
  for (const t of tables) {
    if (t.bytes <= thresholdBytes || t.extensionFilter !== undefined) continue;
    const count = Math.min(MAX_PARTS, Math.ceil(t.bytes / thresholdBytes));
    const size = `${(t.bytes / 1048576).toFixed(0)} MiB`;
    const key = await integerKey(snapshot, t);
    if (key) {
      const ranges = await keyRanges(snapshot, t, key, count);
      if (ranges.length > 1) {
        parts.set(t.oid, ranges.map((where, i) => ({ table: t, index: i + 1, count: ranges.length, where, bytes: t.bytes / ranges.length })));
        notes.push(`split ${qualifiedName(t)} (${size}) into ${ranges.length} parts by its primary key ${key}`);
      }
      continue;
    }
    if (serverVersionNum < 140000) {
      notes.push(`not split ${qualifiedName(t)} (${size}): no integer primary key, and block ranges (ctid) need a PostgreSQL 14 source to be read part by part`);
      continue;
    }
    const ranges = await blockRanges(snapshot, t, count);
    parts.set(t.oid, ranges.map((where, i) => ({ table: t, index: i + 1, count: ranges.length, where, bytes: t.bytes / ranges.length })));
    notes.push(`split ${qualifiedName(t)} (${size}) into ${ranges.length} parts by block ranges (ctid)`);
  }
  return { parts, notes };
}

/** The column of a single-column primary key of type smallint, integer or bigint. */
async function integerKey(client: Client, t: TableToCopy): Promise<string | undefined> {
  const res = await client.query<{ name: string }>(`
    SELECT a.attname AS name FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = $1::oid AND i.indisprimary AND i.indnatts = 1 AND a.atttypid IN ('int2'::regtype, 'int4'::regtype, 'int8'::regtype)`, [t.oid]);
  return res.rows[0]?.name;
}

async function keyRanges(client: Client, t: TableToCopy, key: string, count: number): Promise<string[]> {
  const k = escapeIdentifier(key);
  const res = await client.query<{ lo: string | null; hi: string | null }>(
    `SELECT min(${k})::text AS lo, max(${k})::text AS hi FROM ONLY ${qualifiedName(t)}`);
  const { lo, hi } = res.rows[0];
  if (lo === null || hi === null) return [];
  const [min, max] = [BigInt(lo), BigInt(hi)];
  const span = max - min + 1n;
  const n = span < BigInt(count) ? span : BigInt(count);
  const step = span / n;
  const bounds = Array.from({ length: Number(n) - 1 }, (_, i) => min + step * BigInt(i + 1));
  return rangesFrom(bounds.map(String), (b) => `${k} >= ${b}`, (b) => `${k} < ${b}`);
}

async function blockRanges(client: Client, t: TableToCopy, count: number): Promise<string[]> {
  const res = await client.query<{ blocks: string }>(
    "SELECT (pg_catalog.pg_relation_size($1::oid) / current_setting('block_size')::int8)::text AS blocks", [t.oid]);
  const blocks = Number(res.rows[0].blocks);
  const n = Math.max(1, Math.min(count, blocks));
  const bounds = Array.from({ length: n - 1 }, (_, i) => Math.floor((blocks * (i + 1)) / n));
  return rangesFrom(bounds.map(String), (b) => `ctid >= '(${b},0)'::pg_catalog.tid`, (b) => `ctid < '(${b},0)'::pg_catalog.tid`);
}

/** n-1 inner bounds → n conditions; the first open below, the last open above. */
function rangesFrom(bounds: readonly string[], from: (b: string) => string, below: (b: string) => string): string[] {
  if (bounds.length === 0) return ['true'];
  return [below(bounds[0]), ...bounds.slice(1).map((b, i) => `${from(bounds[i])} AND ${below(b)}`), from(bounds[bounds.length - 1])];
}
