/**
 * COPY format per table. Binary skips formatting and parsing numbers and timestamps, but its layout is only
 * guaranteed between servers of the same major version, and only for types with binary send and receive
 * functions; otherwise text, which both servers parse with the same DateStyle, IntervalStyle, TimeZone and
 * extra_float_digits (snapshot-sessions.ts), the way pg_dump's own data files are read back.
 *
 * Where both are possible, a large table's format is chosen by measurement: a sample of its rows is printed in
 * both formats (in the stream's snapshot) and the one with fewer bytes on the wire wins, except that binary
 * keeps the table when it is at most BINARY_MARGIN larger: its cheaper parsing pays for that much on a fast
 * link. Narrow integers and blank-padded text (pgbench_accounts) are larger in binary; wide numerics and
 * timestamps smaller.
 */
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Client } from 'pg';
import type { TableToCopy } from './table-catalog';
import type { CopyFormat } from './stream-types';
import { copyOutSql } from './copy-table';
import { CopyOutFrames } from './copy-frames';


/** Binary is kept while it is at most this much larger than text. */
export const BINARY_MARGIN = 0.1;
/** Tables at least this large (on disk) are measured; smaller ones use binary where possible. */
export const MEASURE_FROM_BYTES = 8 * 1024 * 1024;
export const SAMPLE_ROWS = 2000;

export function majorVersion(serverVersionNum: number): number {
  return Math.floor(serverVersionNum / 10000);
}

/** Whether binary COPY is possible at all for this table between these servers. */
export function binaryPossible(table: TableToCopy, sourceVersionNum: number, destinationVersionNum: number): boolean {
  return majorVersion(sourceVersionNum) === majorVersion(destinationVersionNum) && table.columns.every((c) => c.binary);
}

export interface FormatChoice {
  readonly format: CopyFormat;
  /** Sample bytes in each format; undefined when not measured. */
  readonly sample?: { readonly rows: number; readonly text: number; readonly binary: number };
}

/** The measured choice (see the header); `client` reads in the stream's snapshot. */
export async function chooseFormat(client: Client, table: TableToCopy, sourceVersionNum: number, destinationVersionNum: number): Promise<FormatChoice> {
  if (!binaryPossible(table, sourceVersionNum, destinationVersionNum)) return { format: 'text' };
  if (table.bytes < MEASURE_FROM_BYTES || table.extensionFilter !== undefined) return { format: 'binary' };
  const [text, binary] = [await sampleBytes(client, table, 'text'), await sampleBytes(client, table, 'binary')];
  const format: CopyFormat = binary.bytes <= text.bytes * (1 + BINARY_MARGIN) ? 'binary' : 'text';
  return { format, sample: { rows: text.rows, text: text.bytes, binary: binary.bytes } };
}

async function sampleBytes(client: Client, table: TableToCopy, format: CopyFormat): Promise<{ rows: number; bytes: number }> {
  const out = client.query(new CopyOutFrames(copyOutSql(table, format, `true LIMIT ${SAMPLE_ROWS}`)));
  const discard = new Writable({ write: (_chunk, _enc, done) => done() });
  await pipeline(out, discard);
  const rows = await out.done;
  // Binary's 19-byte header and 2-byte trailer are paid once per table, not per row.
  return { rows, bytes: format === 'binary' ? Math.max(0, out.payloadBytes - 21) : out.payloadBytes };
}

/** "text (2000 sample rows: 193.1 KiB as text, 227.5 KiB as binary)", for the log. */
export function describeChoice(c: FormatChoice): string {
  if (!c.sample) return c.format;
  const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
  return `${c.format} (${c.sample.rows} sample rows: ${kib(c.sample.text)} as text, ${kib(c.sample.binary)} as binary)`;
}
