/**
 * Online mode's second phase: catch-up, then the cutover. While the subscription applies the source's changes,
 * a progress line every interval gives the lag (bytes, seconds) and the rows applied, and the coordinator hears
 * whether this database is ready (lag below migration.online.readyLagBytes). When the coordinator says so
 * (cutover: auto, or the operator's command) the database cuts over (../online/cutover.ts); a failed cutover
 * goes back to replicating and waits for the operator's next command.
 *
 * Leaving any other way (failure, interruption, the wait's time limit) drops the slot, publication and
 * subscription, so no slot is left holding WAL on the source; except after a failed cutover, when they stay for
 * the operator's next attempt (a re-run continues from them).
 */
import type { Client } from 'pg';
import { classifyError, humanError } from '../errors';
import { sleep } from '../retry';
import { formatDuration, DEFAULT_PROGRESS_INTERVAL_MS } from '../progress';
import type { CutoverTicket } from '../online/coordinator';
import { cutoverDatabase, CutoverFailed } from '../online/cutover';
import { unfenceSql } from '../online/fence';
import { applyErrors, formatLag, readLag, rowsWritten } from '../online/lag';
import { dropReplication } from '../online/replication';
import { endQuietly, openDestinationAdmin, openSourceAdmin } from '../online/sessions';
import { removeReplication } from '../online/setup';
import type { DatabaseRun } from './context';
import type { Replication } from './replicate';

/** How long the replication status may stay unreadable (a server restarting, a network outage) before the run gives up. */
const OUTAGE_LIMIT_MS = 15 * 60 * 1000;

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
  try {
    coordinator.update(run.db.name, { state: 'replicating', ready: false, status: 'replicating' });
    for (;;) {
      run.signal?.throwIfAborted();
      try {
        const [admin, destination] = await sessions.open();
        await watch.observe(admin, destination);
        outageSince = undefined;
        const ticket = coordinator.ticketFor(run.db.name);
        if (ticket && await cutover(run, rep, admin, ticket)) return;
        if (ticket) keepObjects = true; // a failed cutover: the operator fixes and tries again
      } catch (err) {
        if (run.signal?.aborted || !classifyError(err).transient) throw err;
        outageSince ??= Date.now();
        if (Date.now() - outageSince > OUTAGE_LIMIT_MS) throw err;
        log.warn(`cannot read the replication status (${humanError(err)}); trying again, for up to ${formatDuration(OUTAGE_LIMIT_MS / 1000)}`);
        await sessions.close();
      }
      if (Date.now() > deadline) {
        throw new Error(`no cutover within migration.online.waitSeconds (${formatDuration(m.online.waitSeconds)}): `
          + 'replication stopped and its objects removed; run again to start over');
      }
      // An interruption ends the wait; the loop's next turn throws it.
      await sleep(outageSince ? 5000 : 1000, run.signal).catch(() => undefined);
    }
  } catch (err) {
    coordinator.leave(run.db.name);
    if (!keepObjects) {
      const removed = await removeReplication(run.runtimeDb, run.config, run.env).catch((e: unknown) => [`nothing (${humanError(e)})`]);
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

/** The source admin and destination sessions the catch-up reads through, opened again after an outage. */
class StatusSessions {
  private sessions: [Client, Client] | undefined;

  constructor(private readonly run: DatabaseRun) {}

  async open(): Promise<[Client, Client]> {
    if (this.sessions) return this.sessions;
    const { runtimeDb, env, connectTimeoutSeconds } = this.run;
    const admin = await openSourceAdmin(runtimeDb.source, env, connectTimeoutSeconds);
    const destination = await openDestinationAdmin(runtimeDb.destination, env, connectTimeoutSeconds).catch(async (err: unknown) => {
      await endQuietly(admin);
      throw err;
    });
    this.sessions = [admin, destination];
    return this.sessions;
  }

  async close(): Promise<void> {
    const s = this.sessions;
    this.sessions = undefined;
    if (s) await endQuietly(...s);
  }
}

/** One database's catch-up as the log and the coordinator see it: lag, rows applied, readiness, apply errors. */
class CatchUpWatch {
  private baseline: number | undefined;
  private lastLine = 0;
  private errors: number | undefined;
  private readyAt: number | undefined;

  constructor(private readonly run: DatabaseRun, private readonly rep: Replication) {}

  async observe(admin: Client, destination: Client): Promise<void> {
    const { run, rep } = this;
    const m = run.migration;
    const log = run.phaseLog('replicate');
    this.baseline ??= await rowsWritten(destination);
    const lag = await readLag(admin, rep.name);
    const applied = (await rowsWritten(destination)) - this.baseline;
    const ready = lag.streaming && lag.lagBytes <= m.online.readyLagBytes;
    if (ready && this.readyAt === undefined) {
      this.readyAt = Date.now();
      run.record({ catchUpSeconds: (this.readyAt - rep.since) / 1000 });
      log.ok(`caught up: lag ${formatLag(lag)} after ${formatDuration((this.readyAt - rep.since) / 1000)}; ready to cut over`);
    }
    const status = `lag ${formatLag(lag)}, ${applied} rows applied, ${ready ? 'ready to cut over' : 'catching up'}`;
    run.online!.update(run.db.name, { ready, status });
    if (Date.now() - this.lastLine >= (run.options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS)) {
      this.lastLine = Date.now();
      log.info(`replicating: ${status}`, {
        lagBytes: lag.lagBytes, lagSeconds: lag.lagSeconds, rowsApplied: applied, ready, appliedLsn: lag.appliedLsn, currentLsn: lag.currentLsn,
      });
    }
    const errors = await applyErrors(destination, rep.name);
    if (errors !== undefined && this.errors !== undefined && errors > this.errors) {
      log.warn(`the subscription's apply worker failed ${errors - this.errors} more time(s) (it retries): the destination server's log says why`);
    }
    this.errors = errors;
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

