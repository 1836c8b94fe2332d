/**
 * What logical replication does not carry, copied inside the write pause once the source is fenced (so it no
 * longer changes): sequence positions, large objects (only those that differ), and the tables that were not
 * published (unlogged ones, tablesWithoutKey: exclude), each truncated and copied again.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { exportSnapshot } from '../checks/checksum';
import { readSequenceValues } from '../checks/sequence-positions';
import { copyLargeObjects } from '../stream/large-objects';
import { tablesByName } from '../stream/table-catalog';
import { copyTable } from '../stream/copy-table';
import { openSnapshotReader, openWriter } from '../stream/snapshot-sessions';
import { setSequences } from '../stream/set-sequences';
import { connect } from '../postgres/connection';
import { schemaMatcher } from '../checks/dumped-schemas';
import { qualifiedName } from '../postgres/sql';
import { endQuietly } from './admin-sessions';
import type { SourceTable } from './tables';

export interface SyncResult {
  readonly sequences: number;
  readonly largeObjects: { readonly copied: number; readonly removed: number; readonly unchanged: number };
  readonly tables: number;
  readonly rows: number;
  /** Materialized views refreshed (those populated on the source). */
  readonly matviews: number;
}

export async function syncAtCutover(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, tables: readonly SourceTable[], signal: AbortSignal,
): Promise<SyncResult> {
  const m = config.migration;
  const sessionOpts = { env, connectTimeoutSeconds: m.timeouts.connect };
  const holder = await connect(db.source, env, { readOnly: true, connectTimeoutSeconds: m.timeouts.connect, applicationName: 'db-migration cutover' });
  let reader: Client | undefined;
  let writer: Client | undefined;
  try {
    const snapshot = await exportSnapshot(holder);
    reader = await openSnapshotReader(db.source, snapshot, sessionOpts);
    writer = await openWriter(db.destination, sessionOpts);
    const selection = { schemas: m.dump.schemas, excludeSchemas: m.dump.excludeSchemas };
    const seqs = [...(await readSequenceValues(reader, selection)).values()];
    await setSequences(writer, seqs);
    const largeObjects = await syncLargeObjects(reader, writer, signal);
    let rows = 0;
    const version = Number((await reader.query<{ v: string }>("SELECT current_setting('server_version_num') AS v")).rows[0].v);
    for (const table of await tablesByName(reader, tables, version)) {
      const res = await copyTable(reader, writer, table, { format: 'text', signal });
      rows += res.rows;
    }
    const matviews = await refreshMatviews(reader, writer, selection);
    return { sequences: seqs.length, largeObjects, tables: tables.length, rows, matviews };
  } finally {
    await endQuietly(reader, writer, holder);
  }
}

/** Large objects: those missing or different on the destination are copied, those gone from the source removed. */
async function syncLargeObjects(reader: Client, writer: Client, signal: AbortSignal): Promise<SyncResult['largeObjects']> {
  const digest = 'SELECT m.oid::int8 AS oid, md5(pg_catalog.lo_get(m.oid)) AS md5 FROM pg_catalog.pg_largeobject_metadata m';
  const [src, dst] = await Promise.all([reader.query<{ oid: string; md5: string }>(digest), writer.query<{ oid: string; md5: string }>(digest)]);
  const there = new Map(dst.rows.map((r) => [r.oid, r.md5]));
  const wanted = new Set(src.rows.map((r) => r.oid));
  const changed = src.rows.filter((r) => there.get(r.oid) !== r.md5);
  const removed = dst.rows.filter((r) => !wanted.has(r.oid));
  for (const r of removed) await writer.query('SELECT pg_catalog.lo_unlink($1::oid)', [r.oid]);
  for (const r of changed) {
    if (there.has(r.oid)) {
      await writer.query('BEGIN');
      await writer.query('SELECT pg_catalog.lo_truncate(pg_catalog.lo_open($1::oid, 131072), 0)', [r.oid]);
      await writer.query('COMMIT');
    } else {
      await writer.query('SELECT pg_catalog.lo_create($1::oid)', [r.oid]);
    }
  }
  await copyLargeObjects(reader, writer, changed.map((r) => Number(r.oid)), { signal });
  return { copied: changed.length, removed: removed.length, unchanged: src.rows.length - changed.length };
}

/**
 * Materialized views are not replicated: those populated on the source are refreshed on the destination from
 * the replicated tables (in the source's creation order, so one built on another comes after it); unpopulated
 * ones stay unpopulated.
 */
async function refreshMatviews(reader: Client, writer: Client, selection: { schemas: readonly string[]; excludeSchemas: readonly string[] }): Promise<number> {
  const res = await reader.query<{ schema: string; name: string }>(`
    SELECT n.nspname AS schema, c.relname AS name FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'm' AND c.relispopulated ORDER BY c.oid`);
  const matches = schemaMatcher({ schemas: [...selection.schemas], excludeSchemas: [...selection.excludeSchemas] });
  const views = res.rows.filter((v) => matches(v.schema));
  for (const v of views) await writer.query(`REFRESH MATERIALIZED VIEW ${qualifiedName(v.schema, v.name)}`);
  return views.length;
}
