/**
 * Sequence positions (last_value, is_called), read from the sequence relations themselves: pg_sequences
 * hides last_value from users without USAGE/SELECT and before the first nextval. One statement for all
 * sequences (in chunks), so it stays fast with thousands of them.
 *
 * Sequences are not transactional: inside an imported snapshot they still show their current position, so
 * a source read after the dump may be ahead of what the dump carried. That is why only a destination that
 * is BEHIND the source is reported: it would hand out values the source already used.
 */
import type { Client } from 'pg';
import { compareCodePoints, type TableSelection } from './checksum';
import { schemaMatcher } from './dumped-schemas';
import { displayIdent, displayName, qualifiedName, quoteLiteral } from '../postgres/sql';

export interface SequenceValue {
  readonly schema: string;
  readonly name: string;
  /** bigint as decimal text. */
  readonly lastValue: string;
  readonly isCalled: boolean;
  readonly increment: string;
  /** What nextval() would return next (ignoring cycling): lastValue (+ increment when is_called). */
  readonly nextValue: string;
}

export interface SequenceDifference {
  readonly schema: string;
  readonly object: string;
  readonly kind: 'sequence';
  readonly what: 'missing' | 'different';
  readonly source?: string;
  readonly destination?: string;
  readonly message: string;
}

const CHUNK = 500;

/** Positions of every sequence in the selected schemas (extension members left out), keyed by `"schema"."name"`. */
export async function readSequenceValues(client: Client, selection: TableSelection = {}): Promise<Map<string, SequenceValue>> {
  const list = await client.query<{ schema: string; name: string; increment: string }>(`
    SELECT n.nspname AS schema, c.relname AS name, s.seqincrement::text AS increment
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid
    WHERE c.relkind = 'S' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid AND d.deptype = 'e')`);
  const matches = schemaMatcher({ schemas: [...(selection.schemas ?? [])], excludeSchemas: [...(selection.excludeSchemas ?? [])] });
  const seqs = list.rows.filter((s) => matches(s.schema))
    .sort((a, b) => compareCodePoints(a.schema, b.schema) || compareCodePoints(a.name, b.name));
  const out = new Map<string, SequenceValue>();
  for (let i = 0; i < seqs.length; i += CHUNK) {
    const chunk = seqs.slice(i, i + CHUNK);
    const sql = chunk.map((s, j) => `SELECT ${j} AS i, last_value::text AS last_value, is_called FROM ${qualifiedName(s.schema, s.name)}`).join('\nUNION ALL\n');
    const res = await client.query<{ i: number; last_value: string; is_called: boolean }>(sql);
    for (const row of res.rows) {
      const s = chunk[row.i];
      const next = row.is_called ? (BigInt(row.last_value) + BigInt(s.increment)).toString() : row.last_value;
      out.set(qualifiedName(s.schema, s.name), {
        schema: s.schema, name: s.name, lastValue: row.last_value, isCalled: row.is_called, increment: s.increment, nextValue: next,
      });
    }
  }
  return out;
}

/**
 * Sequences missing on the destination, or whose next value is behind the source's (in the direction of
 * the increment). A destination ahead of the source is fine and not reported.
 */
export function compareSequenceValues(
  source: ReadonlyMap<string, SequenceValue>,
  destination: ReadonlyMap<string, SequenceValue>,
): SequenceDifference[] {
  const out: SequenceDifference[] = [];
  for (const key of [...source.keys()].sort(compareCodePoints)) {
    const s = source.get(key)!;
    const d = destination.get(key);
    const base = { schema: s.schema, object: `sequence ${displayIdent(s.name)}`, kind: 'sequence' as const };
    const name = displayName(s.schema, s.name);
    if (!d) {
      out.push({ ...base, what: 'missing', source: `next value ${s.nextValue}`, message: `Sequence ${name} is missing on the destination` });
      continue;
    }
    const ascending = BigInt(s.increment) > 0n;
    const behind = ascending ? BigInt(d.nextValue) < BigInt(s.nextValue) : BigInt(d.nextValue) > BigInt(s.nextValue);
    if (behind) {
      out.push({
        ...base, what: 'different', source: `next value ${s.nextValue}`, destination: `next value ${d.nextValue}`,
        message: `Sequence ${name} would return ${d.nextValue} next on the destination but ${s.nextValue} on the source (behind: values would repeat); fix with SELECT setval(${quoteLiteral(qualifiedName(s.schema, s.name))}, ${s.lastValue}, ${s.isCalled})`,
      });
    }
  }
  return out;
}
