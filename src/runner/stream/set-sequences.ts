/**
 * Sequence values on the destination: setval to what the source had at the snapshot, with is_called kept
 * (so the next nextval returns exactly what it would have returned on the source).
 */
import type { Client } from 'pg';
import type { SequenceValue } from './table-catalog';
import { qualifiedName } from './copy-table';

export async function setSequences(destination: Client, sequences: readonly SequenceValue[]): Promise<void> {
  if (sequences.length === 0) return;
  await destination.query('BEGIN');
  for (const s of sequences) {
    await destination.query('SELECT pg_catalog.setval($1::regclass, $2::int8, $3::bool)', [qualifiedName(s), s.lastValue, s.isCalled]);
  }
  await destination.query('COMMIT');
}
