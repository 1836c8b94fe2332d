/**
 * The replication slot's health during catch-up, read from the source alone (so it is watched while the destination
 * is unreachable too): pg_replication_slots.wal_status and safe_wal_size (PostgreSQL 13 and newer) against
 * max_slot_wal_keep_size. A slot that falls further behind than that setting allows is invalidated by the source's
 * next checkpoint (wal_status lost): the subscription can never continue from it, so the database fails at once.
 */
import type { Client } from 'pg';
import { formatBytes, formatDuration } from '../report/progress';
import { faultFields, ReplicationFault, type FaultRecord } from './faults';
import type { OnlineLog } from './online-log';

export interface SlotHealth {
  readonly exists: boolean;
  /** reserved, extended, unreserved or lost; null before PostgreSQL 13. */
  readonly walStatus: string | null;
  /** Bytes of WAL the source may still write before the slot is in danger; null when unlimited or before 13. */
  readonly safeWalSize: number | null;
  /** max_slot_wal_keep_size in bytes; null when unlimited (-1) or before 13. */
  readonly keepBytes: number | null;
  /** The source's WAL insert position, in bytes from 0/0 (for the WAL rate). */
  readonly position: number;
}

export async function readSlotHealth(source: Client, slot: string): Promise<SlotHealth> {
  const v = (await source.query<{ v: number; pos: number }>(`SELECT current_setting('server_version_num')::int AS v,
    pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_insert_lsn(), '0/0')::float8 AS pos`)).rows[0];
  if (v.v < 130000) {
    const res = await source.query('SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [slot]);
    return { exists: (res.rowCount ?? 0) > 0, walStatus: null, safeWalSize: null, keepBytes: null, position: v.pos };
  }
  const res = await source.query<{ wal_status: string | null; safe: number | null; keep: number }>(`
    SELECT s.wal_status, s.safe_wal_size::float8 AS safe,
           (SELECT setting::float8 FROM pg_catalog.pg_settings WHERE name = 'max_slot_wal_keep_size') AS keep
    FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1`, [slot]);
  const row = res.rows[0];
  if (!row) return { exists: false, walStatus: null, safeWalSize: null, keepBytes: null, position: v.pos };
  return { exists: true, walStatus: row.wal_status, safeWalSize: row.safe, keepBytes: row.keep < 0 ? null : row.keep * 1048576, position: v.pos };
}

/** Below this share of max_slot_wal_keep_size left, the slot's WAL is running low. */
const LOW_SHARE = 0.25;
/** The WAL rate is measured over at least this long. */
const RATE_WINDOW_MS = 10_000;

/** One database's slot, checked each time the catch-up looks; warns at most once per interval, fails on loss. */
export class SlotHealthWatch {
  private samples: { at: number; position: number }[] = [];
  private lastWarning = 0;
  /** The last reading, for the progress line's fields. */
  last: SlotHealth | undefined;

  constructor(private readonly slot: string, private readonly intervalMs: number, private readonly log: OnlineLog) {}

  /** Throws a {@link ReplicationFault} when the slot is lost or gone; warns when it is in danger. */
  async check(source: Client): Promise<void> {
    const h = await readSlotHealth(source, this.slot);
    this.last = h;
    if (!h.exists) throw this.fault(h, 'slot-missing');
    if (h.walStatus === 'lost') throw this.fault(h, 'slot-lost');
    const rate = this.rate(h);
    const low = h.safeWalSize !== null && h.keepBytes !== null && h.safeWalSize < h.keepBytes * LOW_SHARE;
    if ((h.walStatus === 'unreserved' || low) && Date.now() - this.lastWarning >= this.intervalMs) {
      this.lastWarning = Date.now();
      const kind = h.walStatus === 'unreserved' ? 'slot-unreserved' : 'slot-wal-low';
      this.log('warn', this.warning(h, rate), faultFields({ kind, walStatus: h.walStatus, safeWalSize: h.safeWalSize }));
    }
  }

  /** Bytes of WAL per second the source writes, over the last RATE_WINDOW_MS or interval; undefined until measured. */
  private rate(h: SlotHealth): number | undefined {
    const now = Date.now();
    this.samples.push({ at: now, position: h.position });
    const window = Math.max(RATE_WINDOW_MS, this.intervalMs);
    while (this.samples.length > 2 && now - this.samples[1].at >= window) this.samples.shift();
    const first = this.samples[0];
    return now - first.at >= 1000 ? Math.max(0, (h.position - first.position) / ((now - first.at) / 1000)) : undefined;
  }

  private warning(h: SlotHealth, rate: number | undefined): string {
    const fix = 'keep the destination reachable and its subscription applying, or raise max_slot_wal_keep_size on the source '
      + '(ALTER SYSTEM SET max_slot_wal_keep_size = ...; SELECT pg_reload_conf();)';
    const keep = h.keepBytes === null ? '' : `max_slot_wal_keep_size ${formatBytes(h.keepBytes)}, `;
    if (h.walStatus === 'unreserved') {
      return `replication slot ${this.slot} is further behind than the source keeps WAL for it (${keep}wal_status unreserved): the source's `
        + `next checkpoint removes WAL it still needs and invalidates it, and this database then fails; ${fix}`;
    }
    const lasts = rate === undefined ? 'the WAL rate is not measured yet'
      : rate === 0 ? 'the source writes no WAL now' : `at the source's current WAL rate of ${formatBytes(rate)}/s that lasts about ${formatDuration(h.safeWalSize! / rate)}`;
    return `replication slot ${this.slot} may fall only ${formatBytes(Math.max(0, h.safeWalSize!))} more behind before the source invalidates it `
      + `(${keep}wal_status ${h.walStatus}); ${lasts}; ${fix}`;
  }

  private fault(h: SlotHealth, kind: 'slot-lost' | 'slot-missing'): ReplicationFault {
    const record: FaultRecord = { kind, walStatus: h.walStatus, safeWalSize: h.safeWalSize };
    const after = 'The subscription can never continue from it: replication stopped and the subscription, slot and publication are removed. '
      + 'Run again to copy the database again';
    if (kind === 'slot-missing') {
      return new ReplicationFault(record, `replication slot ${this.slot} no longer exists on the source (dropped by hand or by another tool?). ${after}`);
    }
    return new ReplicationFault(record, `replication slot ${this.slot} was invalidated by the source (wal_status lost): the source removed WAL the `
      + 'slot still needed, because the destination fell further behind than max_slot_wal_keep_size allows (typically while the destination was '
      + `unreachable or its subscription stopped applying). ${after}, after raising max_slot_wal_keep_size on the source or making sure the `
      + 'destination stays reachable during the migration');
  }
}
