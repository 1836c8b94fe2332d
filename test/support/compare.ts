/**
 * An independent check, for tests, that two databases hold the same data: every table's rows (as text, sorted)
 * hashed on each side, and every sequence's state. Written apart from the runner's own verification on purpose.
 */
import type { PgServer } from './pg-server';

export interface DatabaseFingerprint {
  readonly tables: Record<string, { rows: number; md5: string | null }>;
  readonly sequences: Record<string, { last_value: string | null; is_called: boolean }>;
}

export async function fingerprint(server: PgServer, database: string): Promise<DatabaseFingerprint> {
  const tables = await server.query<{ name: string }>(`
    SELECT format('%I.%I', n.nspname, c.relname) AS name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      AND c.relispopulated
    ORDER BY 1`, database);
  const out: DatabaseFingerprint = { tables: {}, sequences: {} };
  for (const { name } of tables) {
    const [row] = await server.query<{ rows: string; md5: string | null }>(
      `SELECT count(*) AS rows, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS md5 FROM ONLY ${name} t`, database);
    out.tables[name] = { rows: Number(row.rows), md5: row.md5 };
  }
  const seqs = await server.query<{ name: string; last_value: string | null }>(`
    SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text FROM pg_sequences ORDER BY 1`, database);
  for (const s of seqs) {
    const [state] = await server.query<{ is_called: boolean }>(`SELECT is_called FROM ${s.name}`, database);
    out.sequences[s.name] = { last_value: s.last_value, is_called: state.is_called };
  }
  return out;
}
