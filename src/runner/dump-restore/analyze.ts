/**
 * ANALYZE after a load, several tables at a time (as `vacuumdb --analyze-only --jobs` does), so the planner
 * has statistics from the first query on: the tables largest first, one per session at a time, then the
 * partitioned parents together (their statistics sample the partitions, which must be analyzed first).
 * A table the session's role may not analyze is skipped by the server with a warning, as a database-wide
 * ANALYZE would skip it.
 */
import type { Client } from 'pg';
import { drainQueue } from './work-queue';

export interface AnalyzeTargets {
  /** Quoted "schema"."name" of tables and materialized views, largest first. */
  readonly tables: readonly string[];
  /** Quoted "schema"."name" of partitioned tables. */
  readonly partitionedParents: readonly string[];
}

/** Runs ANALYZE over `sessions` (one table per session at a time); the first failure stops the rest. */
export async function analyzeTables(sessions: readonly Client[], targets: AnalyzeTargets, controller = new AbortController()): Promise<void> {
  await drainQueue(targets.tables, { workers: sessions, controller }, async (table, session) => {
    await session.query(`ANALYZE ${table}`);
  });
  if (targets.partitionedParents.length) await sessions[0].query(`ANALYZE ${targets.partitionedParents.join(', ')}`);
}

/**
 * What a database-wide ANALYZE would analyze in the connected database: every table and materialized view
 * (system catalogs included, shared catalogs and temporary tables not), largest first, and the partitioned
 * tables.
 */
export async function analyzeTargets(client: Client): Promise<AnalyzeTargets> {
  const { rows } = await client.query<{ name: string; parent: boolean }>(`
    SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) AS name, c.relkind = 'p' AS parent
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'm', 'p') AND c.relpersistence <> 't' AND NOT c.relisshared
    ORDER BY pg_catalog.pg_relation_size(c.oid) DESC, 1`);
  return { tables: rows.filter((r) => !r.parent).map((r) => r.name), partitionedParents: rows.filter((r) => r.parent).map((r) => r.name) };
}
