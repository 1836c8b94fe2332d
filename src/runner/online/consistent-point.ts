/**
 * The full verification of online mode, before the fence, so the write pause does not grow with the data: each
 * table is read on both sides at one consistent point while replication goes on.
 *
 * Per table:
 * 1. A source transaction takes a SHARE lock on the table (its writers wait; readers do not), exports its
 *    snapshot and reads the WAL position L: every change to the table is committed before L.
 * 2. Once the destination has applied everything before L (the slot's confirmed position), a destination
 *    transaction takes its snapshot: it sees exactly the table the source snapshot sees.
 * 3. The lock is released (the table's writers waited for steps 1-2 only: the time the destination needs to
 *    apply up to L, at most about three wal_writer_delay on a quiet source, see waitApplied), and the table is
 *    read in both snapshots for as long as that takes.
 * One table at a time, the runner never waits for a lock while holding one, so it cannot deadlock with the
 * application. The lock waits at most `lockTimeoutMs` per attempt, so it never queues writers behind a long
 * transaction for long, and is retried.
 */
import type { Client } from 'pg';
import { escapeIdentifier, escapeLiteral } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';
import { waitApplied } from './lag';
import { endQuietly } from './admin-sessions';
import type { TableName } from './replication';

export interface ConsistentReaderOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly connectTimeoutSeconds: number;
  /** @default 1000 */
  readonly lockTimeoutMs?: number;
  /** @default 10 */
  readonly attempts?: number;
  /** How long the destination may take to apply up to a point. @default 30000 */
  readonly applyTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

export class ConsistentReader {
  /** The longest time a table's writers waited for a point. */
  maxWritersWaitedMs = 0;

  private constructor(
    private readonly admin: Client, private readonly slot: string, private readonly locker: Client,
    private readonly source: Client, private readonly destination: Client, private readonly opts: ConsistentReaderOptions,
  ) {}

  /** `admin` is a source session that reads the slot's position. */
  static async open(admin: Client, slot: string, sourceEp: ResolvedEndpoint, destinationEp: ResolvedEndpoint, opts: ConsistentReaderOptions): Promise<ConsistentReader> {
    const connectOpts = { connectTimeoutSeconds: opts.connectTimeoutSeconds, applicationName: 'db-migration verify' };
    const opened: Client[] = [];
    try {
      for (const [ep, readOnly] of [[sourceEp, false], [sourceEp, true], [destinationEp, true]] as const) {
        const c = await connect(ep, opts.env, { ...connectOpts, readOnly });
        opened.push(c);
        await c.query('SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0; SET jit = off');
      }
      return new ConsistentReader(admin, slot, opened[0], opened[1], opened[2], opts);
    } catch (err) {
      await endQuietly(...opened);
      throw err;
    }
  }

  /** Runs `read` with both sessions in snapshots that see the same `table`; returns its value. */
  async atPoint<T>(table: TableName, read: (source: Client, destination: Client) => Promise<T>): Promise<T> {
    await this.point(table);
    try {
      return await read(this.source, this.destination);
    } finally {
      for (const c of [this.source, this.destination]) await c.query('ROLLBACK');
    }
  }

  private async point(table: TableName): Promise<void> {
    const { locker, opts } = this;
    const name = `ONLY ${escapeIdentifier(table.schema)}.${escapeIdentifier(table.name)}`;
    for (let attempt = 1; ; attempt++) {
      opts.signal?.throwIfAborted();
      const started = Date.now();
      // LOCK ... IN SHARE MODE is refused in a read-only transaction, though it writes nothing.
      await locker.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ WRITE');
      try {
        await locker.query(`SET LOCAL lock_timeout = ${opts.lockTimeoutMs ?? 1000}`);
        await locker.query(`LOCK TABLE ${name} IN SHARE MODE`);
      } catch (err) {
        await locker.query('ROLLBACK').catch(() => undefined);
        // 55P03: lock_not_available (a long writer holds the table); try again shortly.
        if ((err as { code?: string }).code === '55P03' && attempt < (opts.attempts ?? 10)) {
          await new Promise((r) => setTimeout(r, 200 * attempt));
          continue;
        }
        throw err;
      }
      try {
        const point = await locker.query<{ id: string; lsn: string }>(
          'SELECT pg_catalog.pg_export_snapshot() AS id, pg_catalog.pg_current_wal_insert_lsn()::text AS lsn',
        );
        const { id, lsn } = point.rows[0];
        await this.source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        await this.source.query(`SET TRANSACTION SNAPSHOT ${escapeLiteral(id)}`);
        await waitApplied(this.admin, this.slot, lsn, opts.applyTimeoutMs ?? 30_000, opts.signal);
        await this.destination.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        await this.destination.query('SELECT 1'); // the transaction's snapshot is taken by its first query
      } finally {
        await locker.query('COMMIT').catch(() => undefined);
      }
      this.maxWritersWaitedMs = Math.max(this.maxWritersWaitedMs, Date.now() - started);
      return;
    }
  }

  async close(): Promise<void> {
    await endQuietly(this.locker, this.source, this.destination);
  }
}
