/**
 * The source snapshot: one read-only REPEATABLE READ transaction that exports its snapshot for pg_dump and
 * the COPY workers, and holds ACCESS SHARE locks on the copied tables so no DDL or TRUNCATE (which is not
 * MVCC-safe) can change them while they are read. Nothing here writes to the source.
 */
import type { Client } from 'pg';
import { escapeIdentifier, escapeLiteral } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';
import { closeClient, destroyClient } from './snapshot-sessions';

export class SourceSnapshot {
  private closed = false;

  private constructor(readonly client: Client, readonly id: string, readonly serverVersionNum: number) {}

  /**
   * Connects (read only), begins the transaction and exports its snapshot. With `importFrom` (online mode: the
   * snapshot a replication slot exported) the transaction first imports that one, so everything reads exactly
   * the slot's starting point.
   */
  static async open(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number, importFrom?: string): Promise<SourceSnapshot> {
    const client = await connect(ep, env, { readOnly: true, connectTimeoutSeconds });
    try {
      await client.query('SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0');
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      if (importFrom !== undefined) await client.query(`SET TRANSACTION SNAPSHOT ${escapeLiteral(importFrom)}`);
      const res = await client.query<{ id: string; v: string }>(
        "SELECT pg_catalog.pg_export_snapshot() AS id, pg_catalog.current_setting('server_version_num') AS v",
      );
      return new SourceSnapshot(client, res.rows[0].id, Number(res.rows[0].v));
    } catch (err) {
      await closeClient(client);
      throw err;
    }
  }

  /**
   * ACCESS SHARE locks on the tables, waiting at most `lockWaitTimeoutSeconds` for each (like pg_dump's
   * --lock-wait-timeout). Held until {@link close}.
   */
  async lockTables(tables: readonly { schema: string; name: string }[], lockWaitTimeoutSeconds: number): Promise<void> {
    if (tables.length === 0) return;
    await this.client.query(`SET LOCAL lock_timeout = ${Math.round(lockWaitTimeoutSeconds * 1000)}`);
    for (let i = 0; i < tables.length; i += 500) {
      const names = tables.slice(i, i + 500).map((t) => `ONLY ${escapeIdentifier(t.schema)}.${escapeIdentifier(t.name)}`);
      await this.client.query(`LOCK TABLE ${names.join(', ')} IN ACCESS SHARE MODE`);
    }
    await this.client.query('SET LOCAL lock_timeout = 0');
  }

  /** Ends the transaction (COMMIT: it wrote nothing) and the session. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.query('COMMIT');
    } finally {
      await closeClient(this.client);
    }
  }

  /** Abort path: drop the connection; the server rolls the transaction back when the socket goes. */
  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    destroyClient(this.client);
    await closeClient(this.client, 500);
  }
}
