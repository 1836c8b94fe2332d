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
import { humanError } from '../errors';
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

export async function catchUpAndCutover(run: DatabaseRun, rep: Replication): Promise<void> {
  const coordinator = run.online!;
  const log = run.phaseLog('replicate');
  const m = run.migration;
  run.phase = 'replicate';
  const admin = await openSourceAdmin(run.runtimeDb.source, run.env, run.connectTimeoutSeconds);
  const destination = await openDestinationAdmin(run.runtimeDb.destination, run.env, run.connectTimeoutSeconds);
  let keepObjects = false;
  try {
    const baseline = await rowsWritten(destination);
    coordinator.update(run.db.name, { state: 'replicating', ready: false, status: 'replicating' });
    const interval = run.options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS;
    const deadline = Date.now() + m.online.waitSeconds * 1000;
    let lastLine = 0;
    let errors = await applyErrors(destination, rep.name);
    let readyAt: number | undefined;
    for (;;) {
      run.signal?.throwIfAborted();
      const lag = await readLag(admin, rep.name);
      const applied = (await rowsWritten(destination)) - baseline;
      const ready = lag.streaming && lag.lagBytes <= m.online.readyLagBytes;
      if (ready && readyAt === undefined) {
        readyAt = Date.now();
        run.record({ catchUpSeconds: (readyAt - rep.since) / 1000 });
        log.ok(`caught up: lag ${formatLag(lag)} after ${formatDuration((readyAt - rep.since) / 1000)}; ready to cut over`);
      }
      const status = `lag ${formatLag(lag)}, ${applied} rows applied, ${ready ? 'ready to cut over' : 'catching up'}`;
      coordinator.update(run.db.name, { ready, status });
      if (Date.now() - lastLine >= interval) {
        lastLine = Date.now();
        log.info(`replicating: ${status}`, {
          lagBytes: lag.lagBytes, lagSeconds: lag.lagSeconds, rowsApplied: applied, ready, appliedLsn: lag.appliedLsn, currentLsn: lag.currentLsn,
        });
      }
      const now = await applyErrors(destination, rep.name);
      if (now !== undefined && errors !== undefined && now > errors) {
        log.warn(`the subscription's apply worker failed ${now - errors} more time(s) (it retries): the destination server's log says why`);
      }
      errors = now;
      const ticket = coordinator.ticketFor(run.db.name);
      if (ticket && await cutover(run, rep, admin, ticket)) return;
      if (ticket) keepObjects = true; // a failed cutover: the operator fixes and tries again
      if (Date.now() > deadline) {
        throw new Error(`no cutover within migration.online.waitSeconds (${formatDuration(m.online.waitSeconds)}): `
          + 'replication stopped and its objects removed; run again to start over');
      }
      await sleep(1000, run.signal);
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
    await endQuietly(admin, destination);
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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() { clearTimeout(t); signal?.removeEventListener('abort', done); resolve(); }
    signal?.addEventListener('abort', done, { once: true });
  });
}

