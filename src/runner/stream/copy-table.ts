/**
 * One table, source to destination, with no intermediate file: `COPY ... TO STDOUT` on a snapshot reader
 * piped by stream.pipeline into `COPY ... FROM STDIN` on a writer, frame by frame (copy-frames.ts). pipeline
 * carries back-pressure both ways (the source socket is read only while the destination socket accepts more),
 * so memory stays a few socket buffers whatever the table size.
 */
import { pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import { escapeIdentifier } from 'pg';
import { qualifiedName as quoteQualified } from '../postgres/sql';
import type { TableToCopy } from './table-catalog';
import type { CopyFormat } from './stream-types';
import { CopyInFrames, CopyOutFrames } from './copy-frames';

export interface TableCopyResult {
  /** Rows the destination stored (COPY FROM's command tag). */
  readonly rows: number;
  /** Rows the source sent in its snapshot (COPY TO's command tag): the table's exact count in that snapshot. */
  readonly sourceRows: number;
  readonly bytes: number;
}

/** "schema"."name", exactly as verify keys its tables (sourceRowCounts relies on that). */
export function qualifiedName(t: { schema: string; name: string }): string {
  return quoteQualified(t.schema, t.name);
}

/**
 * The source side: a plain table COPY, a query for extension configuration tables with a filter, or a query for
 * one part of a split table (`partWhere`: its key or block range).
 */
export function copyOutSql(table: TableToCopy, format: CopyFormat, partWhere?: string): string {
  const cols = table.columns.map((c) => escapeIdentifier(c.name));
  const opts = `(FORMAT ${format})`;
  // character(n) values without their blank padding (a cast to text drops it): fewer bytes on the wire, and the
  // destination column pads them again on input, so the stored values are the same.
  const select = table.columns.some((c) => c.padded)
    ? table.columns.map((c) => (c.padded ? `${escapeIdentifier(c.name)}::pg_catalog.text` : escapeIdentifier(c.name)))
    : cols;
  if (partWhere !== undefined || (select !== cols && table.extensionFilter === undefined)) {
    return `COPY (SELECT ${select.length ? select.join(', ') : '*'} FROM ONLY ${qualifiedName(table)}${partWhere !== undefined ? ` WHERE ${partWhere}` : ''}) TO STDOUT ${opts}`;
  }
  if (table.extensionFilter !== undefined) {
    const list = cols.length ? cols.join(', ') : '*';
    return `COPY (SELECT ${list} FROM ONLY ${qualifiedName(table)} ${table.extensionFilter}) TO STDOUT ${opts}`;
  }
  return `COPY ${qualifiedName(table)}${cols.length ? ` (${cols.join(', ')})` : ''} TO STDOUT ${opts}`;
}

/**
 * The destination side. Ordinary tables are truncated first in the same transaction: that makes a retry
 * start clean, and lets COPY FREEZE write rows already frozen (no later anti-wraparound rewrite).
 */
export function copyInSql(table: TableToCopy, format: CopyFormat, append = false): string {
  const cols = table.columns.map((c) => escapeIdentifier(c.name));
  const freeze = table.extensionFilter === undefined && !append ? ', FREEZE' : '';
  return `COPY ${qualifiedName(table)}${cols.length ? ` (${cols.join(', ')})` : ''} FROM STDIN (FORMAT ${format}${freeze})`;
}

export interface CopyTableOptions {
  readonly format: CopyFormat;
  readonly signal: AbortSignal;
  /** Called with the size of each chunk as it passes (for progress). */
  readonly onBytes?: (n: number) => void;
  /**
   * One part of a split table: only the rows matching this condition, appended (the table was truncated once
   * before its first part; parts load in parallel, so no FREEZE, which needs the truncation in the same transaction).
   * @default - the whole table, truncated first
   */
  readonly partWhere?: string;
}

/**
 * Copies the rows `source` sees in its snapshot into `destination`, in one destination transaction. On
 * failure the destination transaction is rolled back when possible; the caller closes both sessions on abort.
 */
export async function copyTable(source: Client, destination: Client, table: TableToCopy, opts: CopyTableOptions): Promise<TableCopyResult> {
  const part = opts.partWhere !== undefined;
  await destination.query('BEGIN');
  if (table.extensionFilter === undefined && !part) await destination.query(`TRUNCATE ONLY ${qualifiedName(table)}`);
  const sink = destination.query(new CopyInFrames(copyInSql(table, opts.format, part)));
  const sourceStream = source.query(new CopyOutFrames(copyOutSql(table, opts.format, opts.partWhere), opts.onBytes));
  await pipeline(sourceStream, sink, { signal: opts.signal });
  const sourceRows = await sourceStream.done;
  await destination.query('COMMIT');
  return { rows: sink.rowCount, sourceRows, bytes: sourceStream.payloadBytes };
}
