/**
 * How far the destination is behind the source: read from the source's slot (confirmed_flush_lsn is where the
 * subscriber has applied and flushed everything committed before it) and the subscription's walsender, plus the
 * rows the apply worker wrote on the destination (its tables' statistics since replication started).
 *
 * Positions on the source are WAL *insert* positions: with synchronous_commit off a commit is visible before its
 * WAL is written, so the write position can lie before commits a snapshot already sees.
 */
import type { Client } from 'pg';

export interface ReplicationLag {
  /** The source's current WAL position. */
  readonly currentLsn: string;
  /** Everything committed before this position is applied on the destination. */
  readonly appliedLsn: string | null;
  /** WAL bytes between the two. */
  readonly lagBytes: number;
  /** The walsender's replay lag in seconds (0 when it has caught up); null when no walsender is connected. */
  readonly lagSeconds: number | null;
  /** A walsender is streaming to the subscription. */
  readonly streaming: boolean;
}

export async function readLag(source: Client, slot: string): Promise<ReplicationLag> {
  const res = await source.query<{ cur: string; applied: string | null; lag: number | null; active: boolean; lag_s: number | null }>(`
    SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS cur, s.confirmed_flush_lsn::text AS applied,
           pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), s.confirmed_flush_lsn)::float8 AS lag, s.active,
           (SELECT extract(epoch FROM coalesce(r.replay_lag, r.flush_lag, interval '0'))::float8
              FROM pg_catalog.pg_stat_replication r WHERE r.pid = s.active_pid) AS lag_s
    FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1`, [slot]);
  const row = res.rows[0];
  if (!row) throw new Error(`replication slot ${slot} does not exist on the source (dropped by hand?)`);
  return {
    currentLsn: row.cur, appliedLsn: row.applied, lagBytes: Math.max(0, row.lag ?? 0),
    lagSeconds: row.active ? (row.lag_s ?? 0) : null, streaming: row.active,
  };
}

/**
 * Rows inserted, updated and deleted in the destination database's tables so far (the statistics collector's
 * view), in `tables` only when given.
 */
export async function rowsWritten(destination: Client, tables?: readonly { schema: string; name: string }[]): Promise<number> {
  const res = tables
    ? await destination.query<{ n: string | null }>(`
        SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)::text AS n FROM pg_catalog.pg_stat_user_tables
        WHERE (schemaname, relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [tables.map((t) => t.schema), tables.map((t) => t.name)])
    : await destination.query<{ n: string | null }>('SELECT sum(n_tup_ins + n_tup_upd + n_tup_del)::text AS n FROM pg_catalog.pg_stat_user_tables');
  return Number(res.rows[0]?.n ?? 0);
}

/** Apply errors of the subscription so far (PostgreSQL 15 and later; undefined on older destinations). */
export async function applyErrors(destination: Client, subscription: string): Promise<number | undefined> {
  try {
    const res = await destination.query<{ n: string }>(
      'SELECT apply_error_count::text AS n FROM pg_catalog.pg_stat_subscription_stats WHERE subname = $1', [subscription],
    );
    return res.rows[0] ? Number(res.rows[0].n) : 0;
  } catch {
    return undefined;
  }
}

/**
 * Waits until the destination has applied everything the source committed before `lsn` (an insert position).
 * The slot's confirmed position reaching `lsn` proves it; but WAL that is no commit (hint bits, pruning) may sit
 * unflushed before `lsn` until something else flushes it (up to the 15 s of the next standby snapshot record),
 * and the walsender decodes only flushed WAL. Every commit is flushed within three wal_writer_delay (at once
 * when synchronous, by the WAL writer when not: PostgreSQL's documented bound), so once that much time has passed,
 * the confirmed position reaching the flush position read then proves it as well. Fails after `timeoutMs`.
 */
export async function waitApplied(source: Client, slot: string, lsn: string, timeoutMs: number, signal?: AbortSignal): Promise<number> {
  const started = Date.now();
  const graceMs = await flushGraceMs(source);
  let flushed: string | undefined;
  for (;;) {
    signal?.throwIfAborted();
    if (flushed === undefined && Date.now() - started >= graceMs) {
      flushed = (await source.query<{ f: string }>('SELECT pg_catalog.pg_current_wal_flush_lsn()::text AS f')).rows[0].f;
    }
    const res = await source.query<{ done: boolean; applied: string | null }>(
      'SELECT confirmed_flush_lsn >= $2::pg_lsn OR confirmed_flush_lsn >= $3::pg_lsn AS done, confirmed_flush_lsn::text AS applied '
      + 'FROM pg_catalog.pg_replication_slots WHERE slot_name = $1',
      [slot, lsn, flushed ?? lsn],
    );
    const row = res.rows[0];
    if (!row) throw new Error(`replication slot ${slot} does not exist on the source (dropped by hand?)`);
    if (row.done) return Date.now() - started;
    if (Date.now() - started > timeoutMs) {
      throw new Error(`the destination did not apply the source's changes up to LSN ${lsn} within ${Math.round(timeoutMs / 1000)}s `
        + `(applied up to ${row.applied ?? 'nothing'}): is the subscription's apply worker failing? See the destination server's log`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Three wal_writer_delay and a poll, read once per session (the consistent points wait once per table). */
const graceBySession = new WeakMap<Client, number>();
async function flushGraceMs(source: Client): Promise<number> {
  let grace = graceBySession.get(source);
  if (grace === undefined) {
    const delay = await source.query<{ ms: number }>("SELECT setting::int AS ms FROM pg_catalog.pg_settings WHERE name = 'wal_writer_delay'");
    grace = 3 * (delay.rows[0]?.ms ?? 200) + 100;
    graceBySession.set(source, grace);
  }
  return grace;
}

/** Bytes as "12.3 MiB" for lag lines. */
export function formatLag(lag: ReplicationLag): string {
  const mib = lag.lagBytes / 1048576;
  const bytes = mib >= 1 ? `${mib.toFixed(1)} MiB` : `${Math.round(lag.lagBytes / 1024)} KiB`;
  return `${bytes}${lag.lagSeconds !== null ? `, ${lag.lagSeconds.toFixed(1)}s` : ', no walsender connected'}`;
}
