/**
 * Online mode's second phase: catch-up, then the cutover. While the subscription applies the source's changes,
 * a progress line every interval gives the lag (bytes, seconds) and the rows applied, and the coordinator hears
 * whether this database is ready (lag below migration.online.readyLagBytes). When the coordinator says so
 * (cutover: auto, or the operator's command) the database cuts over (../online/cutover-steps.ts); a failed cutover
 * goes back to replicating and waits for the operator's next command.
 *
 * Each look also checks the slot's health on the source (slot-health.ts: an invalidated or vanished slot fails
 * the database at once, even while the destination is unreachable) and the subscription's apply on the
 * destination (apply-health.ts: a stuck apply worker is named within a second, and bounded).
 *
 * Leaving any other way (failure, interruption, the wait's time limit) drops the slot, publication and
 * subscription, so no slot is left holding WAL on the source; except after a failed cutover, when they stay for
 * the operator's next attempt (a re-run continues from them), unless replication itself broke since.
 */
import type { Client } from 'pg';
import { classifyError, humanError } from '../postgres/errors';
import { sleep } from '../postgres/retry';
import { formatDuration, DEFAULT_PROGRESS_INTERVAL_MS } from '../report/progress';
import type { CutoverTicket } from '../online/coordinator';
import { cutoverDatabase, CutoverFailed } from '../online/cutover-steps';
import { unfenceSql } from '../online/fence';
import { ApplyHealthWatch, readApplyWorker } from '../online/apply-health';
import { faultFields, ReplicationFault } from '../online/faults';
import { formatLag, readLag, rowsWritten } from '../online/lag';
import { removeReplicationPatiently } from '../online/removal';
import { dropReplication } from '../online/replication';
import { endQuietly, openDestinationAdmin, openSourceAdmin } from '../online/admin-sessions';
import { SlotHealthWatch } from '../online/slot-health';
import type { DatabaseRun } from './context';
import { onlineLog, type Replication } from './replicate';

/** How long the replication status may stay unreadable (a server restarting, a network outage) before the run gives up. */
const OUTAGE_LIMIT_MS = 15 * 60 * 1000;
/** A server that did not answer is asked again after this long (the other one is still read every second). */
const RECONNECT_MS = 5000;

export async function catchUpAndCutover(run: DatabaseRun, rep: Replication): Promise<void> {
  const coordinator = run.online!;
  const log = run.phaseLog('replicate');
  const m = run.migration;
  run.phase = 'replicate';
  const sessions = new StatusSessions(run);
  const watch = new CatchUpWatch(run, rep);
  const deadline = Date.now() + m.online.waitSeconds * 1000;
  let keepObjects = false;
  let outageSince: number | undefined;
  let outageLine = 0;
  try {
    coordinator.update(run.db.name, { state: 'replicating', ready: false, status: 'replicating' });
    for (;;) {
      run.signal?.throwIfAborted();
      try {
        const admin = await sessions.source();
        await watch.slot.check(admin);
        const destination = await sessions.destination();
        await watch.observe(admin, destination);
        outageSince = undefined;
        const ticket = coordinator.ticketFor(run.db.name);
        if (ticket && await cutover(run, rep, admin, ticket)) return;
        if (ticket) keepObjects = true; // a failed cutover: the operator fixes and tries again
      } catch (err) {
        if (run.signal?.aborted || err instanceof ReplicationFault || !classifyError(err).transient) throw err;
        outageSince ??= Date.now();
        if (Date.now() - outageSince > OUTAGE_LIMIT_MS) throw err;
        if (Date.now() - outageLine >= watch.intervalMs) {
          outageLine = Date.now();
          log.warn(`cannot read the replication status (${humanError(err)}); trying again, for up to `
            + `${formatDuration((OUTAGE_LIMIT_MS - (Date.now() - outageSince)) / 1000)}`);
        }
        // A server that did not answer has no session to close; any other failure may have broken either.
        if (!sessions.failedToOpen(err)) await sessions.close();
      }
      if (Date.now() > deadline) {
        throw new Error(`no cutover within migration.online.waitSeconds (${formatDuration(m.online.waitSeconds)}): `
          + 'replication stopped and its objects removed; run again to start over');
      }
      // An interruption ends the wait; the loop's next turn throws it.
      await sleep(1000, run.signal).catch(() => undefined);
    }
  } catch (err) {
    coordinator.leave(run.db.name);
    // Said at once: removing the objects may wait for a server that does not answer.
    if (err instanceof ReplicationFault) log.error(err.message, faultFields(err.fault));
    if (!keepObjects || err instanceof ReplicationFault) {
      const removed = await removeReplicationPatiently(run.runtimeDb, run.config, run.env, {
        log: onlineLog(log), intervalMs: watch.intervalMs, limitMs: OUTAGE_LIMIT_MS, signal: run.signal,
      }).catch((e: unknown) => [`nothing (${humanError(e)})`]);
      log.warn(`removed the replication objects: ${removed.join(', ') || 'none were left'}`);
    } else {
      log.warn(`replication objects ${rep.name} are left in place after the failed cutover: a re-run continues from them, `
        + '`db-migration migrate --cleanup` removes them');
    }
    throw err;
  } finally {
    await sessions.close();
  }
}

/**
 * The source admin and destination sessions the catch-up reads through, each opened on its own (the slot's
 * health is read every second while the destination is down) and again after an outage, a server that did
 * not answer at most every RECONNECT_MS.
 */
class StatusSessions {
  private admin: Client | undefined;
  private dest: Client | undefined;
  private readonly failed = new Map<'source' | 'destination', { at: number; err: unknown }>();

  constructor(private readonly run: DatabaseRun) {}

  async source(): Promise<Client> {
    this.admin ??= await this.open('source', () => openSourceAdmin(this.run.runtimeDb.source, this.run.env, this.run.connectTimeoutSeconds));
    return this.admin;
  }

  async destination(): Promise<Client> {
    this.dest ??= await this.open('destination', () => openDestinationAdmin(this.run.runtimeDb.destination, this.run.env, this.run.connectTimeoutSeconds));
    return this.dest;
  }

  /** Whether `err` is a server's refusal to open a session (the sessions that are open are fine). */
  failedToOpen(err: unknown): boolean {
    return [...this.failed.values()].some((f) => f.err === err);
  }

  private async open(side: 'source' | 'destination', connect: () => Promise<Client>): Promise<Client> {
    const last = this.failed.get(side);
    if (last && Date.now() - last.at < RECONNECT_MS) throw last.err;
    try {
      const client = await connect();
      this.failed.delete(side);
      return client;
    } catch (err) {
      this.failed.set(side, { at: Date.now(), err });
      throw err;
    }
  }

  async close(): Promise<void> {
    const s = [this.admin, this.dest];
    this.admin = this.dest = undefined;
    await endQuietly(...s);
  }
}

/** One database's catch-up as the log and the coordinator see it: lag, rows applied, readiness, the slot's and apply's health. */
class CatchUpWatch {
  private baseline: number | undefined;
  private lastLine = 0;
  private readyAt: number | undefined;
  readonly intervalMs: number;
  readonly slot: SlotHealthWatch;
  private readonly apply: ApplyHealthWatch;

  constructor(private readonly run: DatabaseRun, private readonly rep: Replication) {
    this.intervalMs = run.options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    const log = onlineLog(run.phaseLog('replicate'));
    this.slot = new SlotHealthWatch(rep.name, this.intervalMs, log);
    this.apply = new ApplyHealthWatch({
      subscription: rep.name, database: run.db.name, log, intervalMs: this.intervalMs, limitSeconds: run.migration.online.applyStallSeconds,
    });
  }

  async observe(admin: Client, destination: Client): Promise<void> {
    const { run, rep } = this;
    const m = run.migration;
    const log = run.phaseLog('replicate');
    this.baseline ??= await rowsWritten(destination);
    const lag = await readLag(admin, rep.name);
    const applied = (await rowsWritten(destination)) - this.baseline;
    const worker = await readApplyWorker(destination, rep.name);
    const stalled = this.apply.observe(lag, worker);
    const ready = lag.streaming && lag.lagBytes <= m.online.readyLagBytes && !stalled;
    if (ready && this.readyAt === undefined) {
      this.readyAt = Date.now();
      run.record({ catchUpSeconds: (this.readyAt - rep.since) / 1000 });
      log.ok(`caught up: lag ${formatLag(lag)} after ${formatDuration((this.readyAt - rep.since) / 1000)}; ready to cut over`);
    }
    const status = `lag ${formatLag(lag)}, ${applied} rows applied, ${ready ? 'ready to cut over' : stalled ? 'apply stuck' : 'catching up'}`;
    run.online!.update(run.db.name, { ready, status });
    if (Date.now() - this.lastLine >= this.intervalMs) {
      this.lastLine = Date.now();
      const slot = this.slot.last;
      log.info(`replicating: ${status}`, {
        lagBytes: lag.lagBytes, lagSeconds: lag.lagSeconds, rowsApplied: applied, ready, appliedLsn: lag.appliedLsn, currentLsn: lag.currentLsn,
        walStatus: slot?.walStatus, safeWalSize: slot?.safeWalSize, applyErrorCount: worker.errors,
      });
    }
  }
}

/** One cutover attempt: true when it succeeded. */
async function cutover(run: DatabaseRun, rep: Replication, admin: Client, ticket: CutoverTicket): Promise<boolean> {
  const coordinator = run.online!;
  const log = run.phaseLog('cutover');
  run.phase = 'cutover';
  const say = (level: 'info' | 'ok' | 'warn' | 'error', msg: string) => { log[level](msg); ticket.report(msg); };
  say('info', `cutting over (${ticket.id === 'auto' ? 'cutover: auto' : `the operator's request ${ticket.id}`})`);
  try {
    const res = await cutoverDatabase({
      db: run.runtimeDb, config: run.config, env: run.env, name: rep.name, replicated: rep.plan.replicated, atCutover: rep.plan.atCutover,
      admin, log: say, signal: run.signal ?? new AbortController().signal,
      finish: async () => {
        const destination = await openDestinationAdmin(run.runtimeDb.destination, run.env, run.connectTimeoutSeconds);
        try {
          const removed = await dropReplication(admin, destination, rep.name);
          say('info', `removed ${removed.join(', ')}`);
        } finally {
          await endQuietly(destination);
        }
        await run.mark('verified', log);
      },
    });
    const fenced = run.migration.online.fence === 'readOnly';
    run.record({
      writePauseSeconds: res.pauseSeconds, verifySeconds: res.verifySeconds, rowsVerified: res.rowsVerified, objectsVerified: res.objectsVerified,
      ...(run.migration.verify === 'checksums' ? { tablesChecksummed: res.tablesChecksummed } : {}),
      ...(fenced ? { undoFenceSql: unfenceSql(run.db.source.database) } : {}),
    });
    say('ok', `cut over: write pause ${res.pauseSeconds.toFixed(2)}s (fence to verified); the source stays read-only`
      + `${fenced ? `; to make it writable again: ${unfenceSql(run.db.source.database)}` : ''}`);
    coordinator.finished(run.db.name, ticket, true, res.pauseSeconds);
    run.phase = 'settings';
    return true;
  } catch (err) {
    const differences = err instanceof CutoverFailed ? [...err.differences] : [];
    say('error', `cutover failed: ${humanError(err)}`);
    for (const d of differences) say('error', `difference: ${d}`);
    coordinator.finished(run.db.name, ticket, false);
    if (run.signal?.aborted) throw err;
    if (differences.length) run.record({ differences });
    say('warn', 'replication goes on; fix the cause and run the cutover command again');
    run.phase = 'replicate';
    return false;
  }
}

