/**
 * What a logical replication slot's creation waits for. CREATE_REPLICATION_SLOT ... LOGICAL builds its snapshot
 * only once every transaction that holds a transaction id on the source *server* (every database, prepared
 * transactions included) has ended. While it waits, a second session names them from PostgreSQL's own views:
 * pg_stat_activity (sessions, all databases), pg_prepared_xacts, and pg_locks (the transaction id the slot's
 * walsender waits for right now). Read only; ending a blocker is the operator's call, so the runner only says how.
 */
import type { Client } from 'pg';
import { escapeLiteral } from 'pg';
import { formatDuration } from '../report/progress';
import { quoteIdent } from '../postgres/sql';

export interface BlockingSession {
  readonly pid: number;
  readonly user: string | null;
  readonly database: string | null;
  readonly applicationName: string | null;
  readonly clientAddress: string | null;
  readonly state: string | null;
  /** Seconds since its transaction began; null when this user may not see it (pg_read_all_stats). */
  readonly transactionSeconds: number | null;
}

export interface BlockingPrepared {
  readonly gid: string;
  readonly database: string;
  readonly owner: string;
  /** Seconds since PREPARE TRANSACTION. */
  readonly preparedSeconds: number;
}

export interface SlotBlockers {
  readonly sessions: readonly BlockingSession[];
  readonly prepared: readonly BlockingPrepared[];
}

export interface BlockerQuery {
  /** Transactions that began before this time block the slot; @default - older than `minAgeSeconds` */
  readonly since?: Date;
  /** Or that are at least this old, in seconds. @default 0 */
  readonly minAgeSeconds?: number;
  /** The walsender creating the slot: the transaction it waits for is a blocker whatever its age; it is never one itself. */
  readonly slotPid?: number;
  /** Every prepared transaction, whatever its age. @default false */
  readonly allPrepared?: boolean;
}

/**
 * Transactions holding a transaction id that began before `since` (or are at least `minAgeSeconds` old), plus the
 * one the slot's walsender waits for now; the reading session and the walsender left out.
 */
export async function readSlotBlockers(client: Client, q: BlockerQuery): Promise<SlotBlockers> {
  const args = [q.since?.toISOString() ?? null, q.minAgeSeconds ?? 0, q.slotPid ?? null, q.allPrepared ?? false];
  const waited = `(SELECT l.transactionid FROM pg_catalog.pg_locks l
      WHERE l.pid = $3::int AND NOT l.granted AND l.locktype = 'transactionid')`;
  const sessions = await client.query<{ pid: number; usename: string | null; datname: string | null; application_name: string | null;
    client_addr: string | null; state: string | null; age: number | null }>(`
    SELECT a.pid, a.usename::text, a.datname::text, a.application_name, host(a.client_addr) AS client_addr, a.state,
           extract(epoch FROM now() - a.xact_start)::float8 AS age
    FROM pg_catalog.pg_stat_activity a
    WHERE a.backend_xid IS NOT NULL AND a.pid <> pg_catalog.pg_backend_pid() AND a.pid IS DISTINCT FROM $3::int
      AND (a.xact_start < coalesce($1::timestamptz, now() - make_interval(secs => $2::float8))
           OR a.xact_start IS NULL AND $2::float8 = 0
           OR a.backend_xid = ANY (ARRAY${waited}))
    ORDER BY a.xact_start NULLS LAST, a.pid`, args.slice(0, 3));
  const prepared = await client.query<{ gid: string; database: string; owner: string; age: number }>(`
    SELECT p.gid, p.database::text, p.owner::text, extract(epoch FROM now() - p.prepared)::float8 AS age
    FROM pg_catalog.pg_prepared_xacts p
    WHERE $4::bool OR p.prepared < coalesce($1::timestamptz, now() - make_interval(secs => $2::float8))
       OR p.transaction = ANY (ARRAY${waited})
    ORDER BY p.prepared`, args);
  return {
    sessions: sessions.rows.map((r) => ({
      pid: r.pid, user: r.usename, database: r.datname, applicationName: r.application_name, clientAddress: r.client_addr,
      state: r.state, transactionSeconds: r.age,
    })),
    prepared: prepared.rows.map((r) => ({ gid: r.gid, database: r.database, owner: r.owner, preparedSeconds: r.age })),
  };
}

export function blockerCount(b: SlotBlockers): number {
  return b.sessions.length + b.prepared.length;
}

/** The statement that ends a blocking session (on any database of the source server), without its semicolon. */
export function terminateSql(s: BlockingSession): string {
  return `SELECT pg_terminate_backend(${s.pid})`;
}

/** The statement that ends a prepared transaction, without its semicolon; it must run in the prepared transaction's database. */
export function rollbackPreparedSql(p: BlockingPrepared): string {
  return `ROLLBACK PREPARED ${escapeLiteral(p.gid)}`;
}

const or = (v: string | null, unknown = '?') => (v === null || v === '' ? unknown : v);

export function describeSession(s: BlockingSession): string {
  const age = s.transactionSeconds === null ? 'open for an unknown time (pg_read_all_stats shows it)' : `open ${formatDuration(s.transactionSeconds)}`;
  return `session pid ${s.pid} (user ${or(s.user)}, database ${or(s.database)}, application ${or(s.applicationName, '(none)')}, `
    + `client ${or(s.clientAddress, 'local')}, ${or(s.state, 'state unknown')}, transaction ${age}): end it with ${terminateSql(s)}`;
}

export function describePrepared(p: BlockingPrepared): string {
  return `prepared transaction ${escapeLiteral(p.gid)} (database ${p.database}, owner ${p.owner}, prepared ${formatDuration(p.preparedSeconds)} ago): `
    + `end it with ${rollbackPreparedSql(p)} in database ${quoteIdent(p.database)} (or COMMIT PREPARED to keep its changes)`;
}

/** Every blocker, one clause each, joined for one log line. */
export function describeBlockers(b: SlotBlockers): string {
  return [...b.sessions.map(describeSession), ...b.prepared.map(describePrepared)].join('; ');
}
