/**
 * The source catalog seen in the snapshot: the tables whose rows are copied (leaf tables only, biggest
 * first), the sequences to set, and the partitioned parents to analyze. Which objects count is decided by
 * pg_dump (see toc.ts); this adds what the COPY needs: columns, size, and whether binary COPY can carry them.
 */
import type { Client } from 'pg';
import { patternToRegExp } from '../checks/dumped-schemas';
import { qualifiedName as quoteQualified } from '../postgres/sql';
import type { ArchiveContents } from './toc';

export interface CopyColumn {
  readonly name: string;
  /** The type has binary send and receive functions. */
  readonly binary: boolean;
  /**
   * A character(n) column: its values are blank-padded to n, and the padding is not part of the value (the
   * destination pads again on input), so the copy sends them trimmed (copy-table.ts). @default false
   */
  readonly padded?: boolean;
}

export interface TableToCopy {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** pg_table_size in the snapshot: the queue order (largest first). */
  readonly bytes: number;
  /** Stored columns in attnum order (no dropped or generated ones). */
  readonly columns: readonly CopyColumn[];
  /**
   * Extension configuration tables: only rows matching the extension's filter (pg_extension_config_dump),
   * appended to what CREATE EXTENSION put there (so no TRUNCATE).
   */
  readonly extensionFilter?: string;
}

export interface SequenceValue {
  readonly schema: string;
  readonly name: string;
  /** bigint, as text. */
  readonly lastValue: string;
  readonly isCalled: boolean;
}

export interface SourceCatalog {
  /** Largest first. */
  readonly tables: readonly TableToCopy[];
  readonly sequences: readonly SequenceValue[];
  /** Partitioned tables (they hold no rows; analyzed after their partitions). */
  readonly partitionedParents: readonly { schema: string; name: string }[];
  readonly largeObjectOids: readonly number[];
  /**
   * By copied table OID: the listing lines of its table-level post-data entries (indexes; primary key, unique
   * and exclusion constraints), which can be restored as soon as that table is loaded.
   */
  readonly tableLevelPostData: ReadonlyMap<number, readonly string[]>;
}

interface RelationRow {
  oid: string;
  schema: string;
  name: string;
  relkind: string;
  relpersistence: string;
  visible: boolean;
  bytes: string;
  columns: CopyColumn[];
}

export interface CatalogOptions {
  readonly serverVersionNum: number;
  /** dump.extraArgs: --no-unlogged-table-data and --exclude-table-data change which tables have data. */
  readonly dumpExtraArgs: readonly string[];
}

export async function readSourceCatalog(client: Client, toc: ArchiveContents, opts: CatalogOptions): Promise<SourceCatalog> {
  const configs = await extensionConfigs(client, toc.extensionOids);
  const configByOid = new Map(configs.map((c) => [c.oid, c.filter]));
  const relOids = [...new Set([...toc.tableOids, ...toc.sequenceOids, ...configs.map((c) => c.oid)])];
  const rels = await relations(client, relOids, opts.serverVersionNum);

  const noUnlogged = opts.dumpExtraArgs.includes('--no-unlogged-table-data');
  const excluded = excludeTableDataMatchers(opts.dumpExtraArgs);
  const tables: TableToCopy[] = [];
  const parents: { schema: string; name: string }[] = [];
  const sequenceRels: RelationRow[] = [];
  for (const r of rels) {
    const oid = Number(r.oid);
    if (r.relkind === 'S') { sequenceRels.push(r); continue; }
    if (r.relkind === 'p') { parents.push({ schema: r.schema, name: r.name }); continue; }
    if (r.relkind !== 'r') continue;
    if (noUnlogged && r.relpersistence === 'u') continue;
    if (excluded.some((m) => m(r))) continue;
    const filter = configByOid.get(oid);
    tables.push({
      oid, schema: r.schema, name: r.name, bytes: Number(r.bytes), columns: r.columns,
      ...(filter !== undefined ? { extensionFilter: filter } : {}),
    });
  }
  tables.sort((a, b) => b.bytes - a.bytes || a.oid - b.oid);
  return {
    tables,
    sequences: await sequenceValues(client, sequenceRels),
    partitionedParents: parents,
    largeObjectOids: toc.largeObjectOids,
    tableLevelPostData: await tableLevelEntries(client, toc, new Set(tables.map((t) => t.oid))),
  };
}

/** The archive's table-level post-data entries grouped by the copied table they belong to. */
async function tableLevelEntries(client: Client, toc: ArchiveContents, copied: ReadonlySet<number>): Promise<Map<number, string[]>> {
  const out = new Map<number, string[]>();
  const indexes = toc.tableLevelPostData.filter((e) => e.kind === 'index').map((e) => e.oid);
  const constraints = toc.tableLevelPostData.filter((e) => e.kind === 'constraint').map((e) => e.oid);
  if (indexes.length + constraints.length === 0) return out;
  const res = await client.query<{ kind: 'index' | 'constraint'; oid: string; rel: string }>(
    `SELECT 'index' AS kind, indexrelid::int8 AS oid, indrelid::int8 AS rel FROM pg_catalog.pg_index WHERE indexrelid = ANY($1::oid[])
     UNION ALL
     SELECT 'constraint', oid::int8, conrelid::int8 FROM pg_catalog.pg_constraint WHERE oid = ANY($2::oid[])`,
    [indexes, constraints],
  );
  const tableOf = new Map(res.rows.map((r) => [`${r.kind}:${r.oid}`, Number(r.rel)]));
  for (const e of toc.tableLevelPostData) {
    const rel = tableOf.get(`${e.kind}:${e.oid}`);
    if (rel === undefined || !copied.has(rel)) continue;
    const lines = out.get(rel) ?? [];
    lines.push(e.line);
    out.set(rel, lines);
  }
  return out;
}

async function extensionConfigs(client: Client, extensionOids: readonly number[]): Promise<{ oid: number; filter: string }[]> {
  if (extensionOids.length === 0) return [];
  const res = await client.query<{ oid: string; filter: string | null }>(
    `SELECT c.reloid::int8 AS oid, c.cond AS filter
       FROM pg_catalog.pg_extension e,
            LATERAL unnest(e.extconfig, coalesce(e.extcondition, '{}'::text[])) AS c(reloid, cond)
      WHERE e.oid = ANY($1::oid[]) AND c.reloid IS NOT NULL`,
    [extensionOids],
  );
  return res.rows.map((r) => ({ oid: Number(r.oid), filter: r.filter ?? '' }));
}

/** Tables by name as COPY needs them (their stored columns), read like the catalog's; in the order given. */
export async function tablesByName(client: Client, names: readonly { schema: string; name: string }[], serverVersionNum: number): Promise<TableToCopy[]> {
  if (names.length === 0) return [];
  const ids = await client.query<{ oid: string }>(
    'SELECT c.oid::int8 AS oid FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(schema, name, i) '
    + 'JOIN pg_catalog.pg_namespace n ON n.nspname = t.schema JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.name ORDER BY t.i',
    [names.map((t) => t.schema), names.map((t) => t.name)],
  );
  const rows = new Map((await relations(client, ids.rows.map((r) => Number(r.oid)), serverVersionNum)).map((r) => [r.oid, r]));
  return ids.rows.map((r) => rows.get(r.oid)!).filter(Boolean)
    .map((r) => ({ oid: Number(r.oid), schema: r.schema, name: r.name, bytes: Number(r.bytes), columns: r.columns }));
}

async function relations(client: Client, oids: readonly number[], serverVersionNum: number): Promise<RelationRow[]> {
  if (oids.length === 0) return [];
  const notGenerated = serverVersionNum >= 120000 ? "AND a.attgenerated = ''" : '';
  const res = await client.query<RelationRow>(
    `SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind::text AS relkind,
            c.relpersistence::text AS relpersistence, pg_catalog.pg_table_is_visible(c.oid) AS visible,
            CASE WHEN c.relkind = 'r' THEN pg_catalog.pg_table_size(c.oid) ELSE 0 END AS bytes,
            coalesce((SELECT json_agg(json_build_object(
                        'name', a.attname,
                        'binary', t.typsend::oid <> 0 AND t.typreceive::oid <> 0,
                        'padded', a.atttypid = 'pg_catalog.bpchar'::pg_catalog.regtype AND a.atttypmod > 4) ORDER BY a.attnum)
                        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                       WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped ${notGenerated}),
                     '[]'::json) AS columns
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY($1::oid[])`,
    [oids],
  );
  return res.rows;
}

/**
 * Sequence state. Sequences are not transactional, so this is their state when read (right after the
 * snapshot was taken): never lower than any value the snapshot's rows use, which is what matters.
 */
async function sequenceValues(client: Client, seqs: readonly RelationRow[]): Promise<SequenceValue[]> {
  const out: SequenceValue[] = [];
  for (let i = 0; i < seqs.length; i += 200) {
    const batch = seqs.slice(i, i + 200);
    const sql = batch.map((s, j) =>
      `SELECT ${j} AS i, last_value::text AS last_value, is_called FROM ${quoteQualified(s.schema, s.name)}`).join(' UNION ALL ');
    const res = await client.query<{ i: number; last_value: string; is_called: boolean }>(sql);
    for (const row of res.rows) {
      const s = batch[row.i];
      out.push({ schema: s.schema, name: s.name, lastValue: row.last_value, isCalled: row.is_called });
    }
  }
  return out;
}

/**
 * Matchers for pg_dump's --exclude-table-data patterns: "schema.table" or "table" (an unqualified pattern
 * matches tables visible on the search path, as in pg_dump).
 */
export function excludeTableDataMatchers(extraArgs: readonly string[]): ((r: { schema: string; name: string; visible: boolean }) => boolean)[] {
  const patterns: string[] = [];
  extraArgs.forEach((a, i) => {
    if (a.startsWith('--exclude-table-data=')) patterns.push(a.slice('--exclude-table-data='.length));
    else if (a === '--exclude-table-data' && i + 1 < extraArgs.length) patterns.push(extraArgs[i + 1]);
  });
  return patterns.map((p) => {
    const [schemaPart, namePart] = splitQualified(p);
    const nameRe = patternToRegExp(namePart);
    if (schemaPart === undefined) return (r) => r.visible && nameRe.test(r.name);
    const schemaRe = patternToRegExp(schemaPart);
    return (r) => schemaRe.test(r.schema) && nameRe.test(r.name);
  });
}

/** Splits at the last dot outside double quotes. */
function splitQualified(pattern: string): [string | undefined, string] {
  let quoted = false;
  let dot = -1;
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === '"') quoted = !quoted;
    else if (pattern[i] === '.' && !quoted) dot = i;
  }
  return dot < 0 ? [undefined, pattern] : [pattern.slice(0, dot), pattern.slice(dot + 1)];
}
