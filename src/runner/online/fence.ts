/**
 * The cutover's fence on the source (migration.online.fence):
 * - readOnly: `ALTER DATABASE ... SET default_transaction_read_only = on`, then every other session of the
 *   database is ended (pg_terminate_backend; walsenders are left alone), so writers reconnect read-only and
 *   fail loudly instead of writing into the old database. The only write the runner makes to the source besides
 *   its publication and slot; {@link liftFence} undoes it, and the summary prints the SQL.
 * - none: nothing is changed; the operator has stopped the writers (the cutover checks that nothing changed).
 */
import type { Client } from 'pg';
import { escapeIdentifier } from 'pg';

export interface FenceResult {
  /** Sessions ended. */
  readonly ended: number;
  /** WAL position once the fence stands: everything committed before it must reach the destination. */
  readonly lsn: string;
}

/** The SQL that lifts a readOnly fence (printed in the summary after a successful cutover). */
export function unfenceSql(database: string): string {
  return `ALTER DATABASE ${escapeIdentifier(database)} RESET default_transaction_read_only;`;
}

/**
 * Fences `database`. `admin` is a read-write source session of the runner (never ended). Sessions that do not
 * end within `waitMs` fail the fence (it is then lifted by the caller).
 */
export async function fence(admin: Client, database: string, mode: 'readOnly' | 'none', waitMs = 10_000): Promise<FenceResult> {
  let ended = 0;
  if (mode === 'readOnly') {
    await admin.query(`ALTER DATABASE ${escapeIdentifier(database)} SET default_transaction_read_only = on`);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const res = await admin.query<{ pid: number; ended: boolean }>(`
        SELECT pid, pg_catalog.pg_terminate_backend(pid) AS ended FROM pg_catalog.pg_stat_activity
        WHERE datname = $1 AND pid <> pg_catalog.pg_backend_pid() AND backend_type = 'client backend'`, [database]);
      if (res.rowCount === 0) break;
      ended += res.rows.filter((r) => r.ended).length;
      if (res.rows.some((r) => !r.ended)) {
        throw new Error(`cannot end ${res.rows.filter((r) => !r.ended).length} session(s) of database ${database} on the source `
          + '(sessions of a superuser, or no pg_signal_backend): grant pg_signal_backend to the source user, or use fence: none and stop the writers');
      }
      if (Date.now() > deadline) throw new Error(`sessions of database ${database} on the source did not end within ${waitMs / 1000}s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // The fence's setting once more, committed synchronously: its commit flushes all WAL before it, so the last
    // writers' commits (asynchronous ones too) reach the walsender at once instead of at the WAL writer's pace.
    await admin.query('SET synchronous_commit = on');
    await admin.query(`ALTER DATABASE ${escapeIdentifier(database)} SET default_transaction_read_only = on`);
  }
  const res = await admin.query<{ lsn: string }>('SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn');
  return { ended, lsn: res.rows[0].lsn };
}

/** Lifts a readOnly fence (idempotent). */
export async function liftFence(admin: Client, database: string): Promise<void> {
  await admin.query(unfenceSql(database));
}
