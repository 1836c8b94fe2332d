/**
 * Replication faults online mode names: each has a kind a log collector can alert on (the `fault` field of the
 * JSON log lines), the facts that go with it (blocking pids, wal_status, safe_wal_size, the apply error count),
 * and, when it ends a database, the error that carries the whole explanation into the summary.
 */
import type { LogFields } from '../report/log';

export type FaultKind =
  /** The replication slot waits for transactions that hold a transaction id (warning). */
  | 'slot-blocked'
  /** ... for longer than migration.online.slotWaitSeconds: the database fails. */
  | 'slot-wait-exceeded'
  /** The slot is past max_slot_wal_keep_size: the next checkpoint may invalidate it (warning). */
  | 'slot-unreserved'
  /** The WAL the slot may still retain (safe_wal_size) runs low (warning). */
  | 'slot-wal-low'
  /** The source invalidated the slot (wal_status lost): the database fails. */
  | 'slot-lost'
  /** The slot is gone from the source: the database fails. */
  | 'slot-missing'
  /** The subscription's apply worker fails or does not run, and the lag does not go down (warning). */
  | 'apply-stalled'
  /** ... for longer than migration.online.applyStallSeconds: the database fails. */
  | 'apply-stall-exceeded';

/** A fault as the summary records it for a failed database (summary.json). */
export interface FaultRecord {
  readonly kind: FaultKind;
  /** Sessions that blocked the slot's creation. @default - none */
  readonly blockingPids?: readonly number[];
  /** Prepared transactions that blocked the slot's creation. @default - none */
  readonly preparedGids?: readonly string[];
  /** pg_replication_slots.wal_status when the fault was seen. @default - not read */
  readonly walStatus?: string | null;
  /** pg_replication_slots.safe_wal_size, bytes. @default - not read */
  readonly safeWalSize?: number | null;
  /** pg_stat_subscription_stats.apply_error_count (PostgreSQL 15+). @default - not known */
  readonly applyErrorCount?: number;
}

/** The fields of a log line about a fault (LogFields hold scalars: lists are comma-separated). */
export function faultFields(f: FaultRecord): LogFields {
  return {
    fault: f.kind,
    ...(f.blockingPids ? { blockingPids: f.blockingPids.join(',') } : {}),
    ...(f.preparedGids ? { preparedGids: f.preparedGids.join(',') } : {}),
    ...(f.walStatus !== undefined ? { walStatus: f.walStatus } : {}),
    ...(f.safeWalSize !== undefined ? { safeWalSize: f.safeWalSize } : {}),
    ...(f.applyErrorCount !== undefined ? { applyErrorCount: f.applyErrorCount } : {}),
  };
}

/**
 * A fault that ends one database's migration. Its message is the whole explanation (what, why, the fix) and is
 * recorded as is; it is never retried (trying again meets the same fault).
 */
export class ReplicationFault extends Error {
  constructor(readonly fault: FaultRecord, message: string) {
    super(message);
    this.name = 'ReplicationFault';
  }
}
