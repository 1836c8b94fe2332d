/**
 * The wait for a logical replication slot's creation, watched from a second source session: as soon as it waits
 * for transactions (slot-blockers.ts), and again whenever the list changes or a progress interval has passed, a
 * warning names each one with the statement that ends it; at migration.online.slotWaitSeconds the creation is
 * cancelled (PostgreSQL then removes the half-created slot itself) and the database fails with the same list.
 */
import type { Client } from 'pg';
import { formatDuration } from '../report/progress';
import { sleep } from '../postgres/retry';
import { faultFields, ReplicationFault, type FaultRecord } from './faults';
import type { OnlineLog } from './online-log';
import { blockerCount, describeBlockers, readSlotBlockers, type SlotBlockers } from './slot-blockers';

/** How often the watcher looks (a slot is normally created within milliseconds, so the first look is the first line). */
const POLL_MS = 1000;
/** How long a cancelled creation may take to end before the watcher gives up on it (the caller closes the connection). */
const CANCEL_WAIT_MS = 10_000;

export interface SlotWaitOptions {
  /** A second session on the source (any database: pg_stat_activity shows the whole server). */
  readonly admin: Client;
  /** The slot's name, for the lines. */
  readonly name: string;
  readonly log: OnlineLog;
  /** At least one line per interval while the creation waits. */
  readonly intervalMs: number;
  /** migration.online.slotWaitSeconds. */
  readonly limitSeconds: number;
  readonly signal?: AbortSignal;
}

const faultOf = (b: SlotBlockers, kind: FaultRecord['kind']): FaultRecord => ({
  kind, blockingPids: b.sessions.map((s) => s.pid), preparedGids: b.prepared.map((p) => p.gid),
});

const blockersKey = (b: SlotBlockers) => [...b.sessions.map((s) => s.pid), ...b.prepared.map((p) => p.gid)].join('\0');

/**
 * Watches the creation running on walsender `pid` (begun at `started`) until `created` settles. Throws a
 * {@link ReplicationFault} when the bound is reached, the abort reason when `signal` aborts: in both cases the
 * creation has been cancelled first.
 */
export async function watchSlotCreation(pid: number, started: Date, created: Promise<unknown>, o: SlotWaitOptions): Promise<void> {
  let settled = false;
  const done = created.then(() => { settled = true; }, () => { settled = true; });
  let lastLine = 0;
  let lastKey = '';
  for (;;) {
    await Promise.race([done, sleep(POLL_MS, o.signal).catch(() => undefined)]);
    if (settled) return;
    if (o.signal?.aborted) {
      await cancelCreation(o.admin, pid, done);
      throw o.signal.reason;
    }
    const blockers = await readSlotBlockers(o.admin, { since: started, slotPid: pid });
    if (settled) return;
    const waited = (Date.now() - started.getTime()) / 1000;
    if (waited >= o.limitSeconds) {
      await cancelCreation(o.admin, pid, done);
      throw slotWaitExceeded(o, blockers);
    }
    const key = blockersKey(blockers);
    if ((key !== lastKey && key !== '') || Date.now() - lastLine >= o.intervalMs) {
      lastLine = Date.now();
      lastKey = key;
      o.log('warn', waitingLine(o, blockers, waited), faultFields(faultOf(blockers, 'slot-blocked')));
    }
  }
}

function waitingLine(o: SlotWaitOptions, b: SlotBlockers, waited: number): string {
  const bound = `it waits up to migration.online.slotWaitSeconds (${formatDuration(o.limitSeconds)}), then this database fails and what it created is removed`;
  if (blockerCount(b) === 0) {
    return `creating replication slot ${o.name} has waited ${formatDuration(waited)} for transactions that began before it to end `
      + `(none is visible to this user now; pg_read_all_stats shows every session); ${bound}`;
  }
  return `creating replication slot ${o.name} has waited ${formatDuration(waited)}: a logical slot waits until every transaction that holds `
    + `a transaction id on the source server (any database) has ended. Waiting for ${blockerCount(b)}: ${describeBlockers(b)}. `
    + `Ending them is your call (their work is rolled back); ${bound}`;
}

function slotWaitExceeded(o: SlotWaitOptions, b: SlotBlockers): ReplicationFault {
  const list = blockerCount(b) ? `: it waited for ${describeBlockers(b)}` : ' (no blocking transaction was visible to this user at the end)';
  return new ReplicationFault(faultOf(b, 'slot-wait-exceeded'),
    `replication slot ${o.name} was not created within migration.online.slotWaitSeconds (${formatDuration(o.limitSeconds)})${list}. `
    + 'A logical slot can only be created once every transaction holding a transaction id on the source server has ended; '
    + 'end those transactions (the operator\'s call) or raise migration.online.slotWaitSeconds, then run again');
}

/** Cancels the CREATE_REPLICATION_SLOT running on `pid` and waits (bounded) for it to end. */
async function cancelCreation(admin: Client, pid: number, done: Promise<void>): Promise<void> {
  await admin.query('SELECT pg_catalog.pg_cancel_backend($1)', [pid]).catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([done, new Promise<void>((resolve) => { timer = setTimeout(resolve, CANCEL_WAIT_MS); })]);
  clearTimeout(timer);
}
