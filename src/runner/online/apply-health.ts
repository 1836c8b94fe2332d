/**
 * The subscription's apply health during catch-up. An apply worker that meets a change it cannot apply (a row
 * written on the destination, a column the source has and the destination lacks, a missing privilege) exits and
 * is restarted in a loop, and the slot's confirmed position stops moving. Seen from PostgreSQL's own views on
 * the destination (pg_subscription, pg_stat_subscription, and pg_stat_subscription_stats.apply_error_count on 15+)
 * and the slot's confirmed position on the source: the log says so within a second of an apply error (within
 * NOT_RUNNING_GRACE_MS of a worker that is not running, before PostgreSQL 15), again every progress interval,
 * and once apply moves again; after migration.online.applyStallSeconds the database fails.
 */
import type { Client } from 'pg';
import { formatDuration } from '../report/progress';
import { faultFields, ReplicationFault, type FaultRecord } from './faults';
import { applyErrors, formatLag, type ReplicationLag } from './lag';
import type { OnlineLog } from './online-log';

/** A worker not running for this long (no error count to tell, before PostgreSQL 15) counts as a stall; a restart takes about 5 s. */
const NOT_RUNNING_GRACE_MS = 10_000;

export interface ApplyWorkerState {
  /** The subscription is enabled. */
  readonly enabled: boolean;
  /** The apply worker's pid; null when none runs. */
  readonly pid: number | null;
  /** pg_stat_subscription_stats.apply_error_count; undefined before PostgreSQL 15. */
  readonly errors: number | undefined;
}

export async function readApplyWorker(destination: Client, subscription: string): Promise<ApplyWorkerState> {
  const res = await destination.query<{ enabled: boolean; pid: number | null }>(`
    SELECT s.subenabled AS enabled,
           (SELECT w.pid FROM pg_catalog.pg_stat_subscription w WHERE w.subid = s.oid AND w.relid IS NULL AND w.pid IS NOT NULL LIMIT 1) AS pid
    FROM pg_catalog.pg_subscription s
    WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`, [subscription]);
  const row = res.rows[0];
  return { enabled: row?.enabled ?? false, pid: row?.pid ?? null, errors: await applyErrors(destination, subscription) };
}

export interface ApplyHealthOptions {
  readonly subscription: string;
  readonly database: string;
  readonly log: OnlineLog;
  readonly intervalMs: number;
  /** migration.online.applyStallSeconds. */
  readonly limitSeconds: number;
}

export class ApplyHealthWatch {
  private applied: string | null | undefined;
  private movedAt = Date.now();
  private errors: number | undefined;
  /** Errors counted since apply last moved (the first seen then), and when the worker was first seen not running. */
  private errorSince: number | undefined;
  private errorsAtMove: number | undefined;
  private notRunningSince: number | undefined;
  private stalledSince: number | undefined;
  private warnedAt = 0;

  constructor(private readonly o: ApplyHealthOptions) {}

  /** Whether apply is stalled now. Throws a {@link ReplicationFault} once it has been for applyStallSeconds. */
  observe(lag: ReplicationLag, worker: ApplyWorkerState): boolean {
    const now = Date.now();
    const moved = (this.applied !== undefined && lag.appliedLsn !== this.applied) || lag.lagBytes === 0;
    this.applied = lag.appliedLsn;
    const before = this.errors;
    const rose = worker.errors !== undefined && before !== undefined && worker.errors > before;
    if (before === undefined) this.errorsAtMove = worker.errors;
    this.errors = worker.errors;
    if (rose) this.errorSince ??= now;
    else if (moved) this.errorSince = undefined;
    const running = worker.enabled && worker.pid !== null && lag.streaming;
    this.notRunningSince = running ? undefined : this.notRunningSince ?? now;
    if (moved) {
      this.movedAt = now;
      // An error seen in the same look as the last progress came after it (the failing change is the next one).
      this.errorsAtMove = rose ? before : worker.errors;
      if (this.stalledSince !== undefined) this.resumed(lag, now);
      return false;
    }
    const evidence = this.errorSince !== undefined || (this.notRunningSince !== undefined && now - this.notRunningSince >= NOT_RUNNING_GRACE_MS);
    if (this.stalledSince === undefined && !evidence) return false;
    this.stalledSince ??= this.movedAt;
    if (now - this.stalledSince >= this.o.limitSeconds * 1000) throw this.exceeded(lag, worker, now);
    if (now - this.warnedAt >= this.o.intervalMs) {
      this.warnedAt = now;
      this.o.log('warn', `${this.what(lag, worker, now)}. ${this.causes()} The runner keeps waiting for up to migration.online.applyStallSeconds `
        + `(${formatDuration(this.o.limitSeconds)}, ${formatDuration(this.o.limitSeconds - (now - this.stalledSince) / 1000)} left); `
        + 'then this database fails and its replication objects are removed', this.fields('apply-stalled', worker));
    }
    return true;
  }

  private resumed(lag: ReplicationLag, now: number): void {
    this.o.log('ok', `apply of subscription ${this.o.subscription} moves again after ${formatDuration((now - this.stalledSince!) / 1000)}: `
      + `lag ${formatLag(lag)}`, { fault: 'apply-resumed' });
    this.stalledSince = undefined;
    this.warnedAt = 0;
  }

  private what(lag: ReplicationLag, worker: ApplyWorkerState, now: number): string {
    const since = this.errorsAtMove === undefined || worker.errors === undefined ? undefined : worker.errors - this.errorsAtMove;
    const state = !worker.enabled ? 'the subscription is disabled'
      : since ? `its apply worker failed ${since} time(s) (apply_error_count ${worker.errors}) and keeps restarting`
        : worker.pid === null ? 'its apply worker is not running' : 'no walsender streams to it';
    return `replication of database ${this.o.database} is stuck: ${state}, and subscription ${this.o.subscription} has applied nothing for `
      + `${formatDuration((now - this.stalledSince!) / 1000)} (lag ${formatLag(lag)})`;
  }

  private causes(): string {
    return 'Usual causes: a row written on the destination that a replicated change conflicts with (duplicate key: delete it on the '
      + 'destination), DDL run on the source only (a column or table the destination lacks: run the same DDL on the destination), or a '
      + 'privilege the destination user lacks. The error text is in the destination server\'s log, on the lines of the "logical replication '
      + `apply worker" for subscription "${this.o.subscription}"; once the cause is fixed, replication continues by itself.`;
  }

  private fields(kind: FaultRecord['kind'], worker: ApplyWorkerState) {
    return faultFields({ kind, ...(worker.errors !== undefined ? { applyErrorCount: worker.errors } : {}) });
  }

  private exceeded(lag: ReplicationLag, worker: ApplyWorkerState, now: number): ReplicationFault {
    const record: FaultRecord = { kind: 'apply-stall-exceeded', ...(worker.errors !== undefined ? { applyErrorCount: worker.errors } : {}) };
    return new ReplicationFault(record, `${this.what(lag, worker, now)}, longer than migration.online.applyStallSeconds `
      + `(${formatDuration(this.o.limitSeconds)}): replication stopped and its objects are removed. ${this.causes().replace(/; once the cause is fixed.*$/, '.')} `
      + 'Fix the cause, then run again (the database is copied again)');
  }
}
