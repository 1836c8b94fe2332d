/**
 * COPY format per table. Binary is faster (no number or timestamp formatting and parsing) but its layout
 * is only guaranteed between servers of the same major version, and only for types with binary send and
 * receive functions; otherwise text, which both servers parse with the same DateStyle, IntervalStyle,
 * TimeZone and extra_float_digits (sessions.ts), the way pg_dump's own data files are read back.
 */
import type { TableToCopy } from './catalog';

export type CopyFormat = 'binary' | 'text';

export function majorVersion(serverVersionNum: number): number {
  return Math.floor(serverVersionNum / 10000);
}

export function copyFormat(table: TableToCopy, sourceVersionNum: number, destinationVersionNum: number): CopyFormat {
  const sameMajor = majorVersion(sourceVersionNum) === majorVersion(destinationVersionNum);
  return sameMajor && table.columns.every((c) => c.binary) ? 'binary' : 'text';
}
