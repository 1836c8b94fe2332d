/**
 * restore.clean in stream mode. pg_restore --clean on the pre-data section drops tables, but foreign keys
 * belong to post-data, so a foreign key already on the destination that references one of those tables
 * would make the DROP fail. Those foreign keys are dropped first (post-data recreates them).
 */
import type { Client } from 'pg';
import { escapeIdentifier } from 'pg';

export async function dropForeignKeysReferencing(destination: Client, tables: readonly { schema: string; name: string }[]): Promise<number> {
  if (tables.length === 0) return 0;
  const res = await destination.query<{ schema: string; name: string; constraint: string }>(
    `SELECT n.nspname AS schema, c.relname AS name, con.conname AS constraint
       FROM pg_catalog.pg_constraint con
       JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_class r ON r.oid = con.confrelid
       JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
      WHERE con.contype = 'f' AND con.conparentid = 0
        AND (rn.nspname, r.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
    [tables.map((t) => t.schema), tables.map((t) => t.name)],
  );
  for (const fk of res.rows) {
    await destination.query(
      `ALTER TABLE ${escapeIdentifier(fk.schema)}.${escapeIdentifier(fk.name)} DROP CONSTRAINT IF EXISTS ${escapeIdentifier(fk.constraint)}`,
    );
  }
  return res.rows.length;
}
