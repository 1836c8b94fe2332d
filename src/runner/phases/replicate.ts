/**
 * Online mode's first phase: the initial copy in the replication slot's snapshot (stream mode's engine), then
 * the subscription, and the destination marked `replicating`. A re-run after the runner was killed continues
 * from the slot and subscription an earlier attempt left (nothing copied twice, nothing missed); if they are
 * gone, it starts over like a half-restored database.
 */
import { classifyError } from '../postgres/errors';
import { DEFAULT_PROGRESS_INTERVAL_MS, formatBytes, formatDuration } from '../report/progress';
import { ReplicationFault } from '../online/faults';
import { withRetry } from '../postgres/retry';
import type { OnlineLog } from '../online/online-log';
import { replicationExists, startReplication } from '../online/setup';
import { replicationName } from '../online/names';
import { openSourceAdmin, endQuietly } from '../online/admin-sessions';
import { planPublication, type PublicationPlan } from '../online/tables';
import type { Logger } from '../report/log';
import type { DatabaseRun } from './context';
import { runStream, withCleanRestore } from './stream';

export interface Replication {
  readonly name: string;
  readonly plan: PublicationPlan;
  /** When the initial copy ended (or this run picked up replication). */
  readonly since: number;
}

export function onlineLog(log: Logger): OnlineLog {
  return (level, msg, fields) => log[level](msg, fields);
}

export async function replicatePhase(run: DatabaseRun): Promise<Replication> {
  const log = run.phaseLog('replicate');
  if (run.action.kind === 'continue') {
    if (await replicationExists(run.runtimeDb, run.config, run.env)) return continueReplication(run, log);
    log.warn('the publication, slot or subscription of the earlier attempt is gone: the database is copied again');
  }
  const m = run.migration;
  const budgetSeconds = m.timeouts.dump + m.timeouts.restore;
  const [started, seconds] = await run.timed('replicate', () => withRetry(async () => {
    await run.readIdentity('replicate');
    await run.ensureDestination();
    await run.mark('restoring', log);
    const cleanFirst = run.startWriteAttempt();
    const config = cleanFirst ? withCleanRestore(run.config) : run.config;
    return startReplication(run.runtimeDb, run.config, {
      env: run.env,
      log: onlineLog(log),
      progressIntervalMs: run.options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS,
      signal: run.signal,
      copy: (snapshot) => runStream(run.runtimeDb, config, {
        env: run.env, binDir: run.options.binDir ?? run.env.PG_BIN, signal: run.signal, log, timeoutMs: budgetSeconds * 1000,
        progressIntervalMs: run.options.progressIntervalMs, importSnapshot: snapshot,
      }),
    });
  }, {
    ...run.retry, phase: 'replicate', logger: log, beforeRetry: run.beforeRetry, timeoutSetting: 'migration.timeouts.dump / migration.timeouts.restore',
    // A replication fault (the slot's wait exceeded) meets the same blockers again: never retried.
    classify: (err) => (err instanceof ReplicationFault ? { transient: false, reason: err.fault.kind } : classifyError(err)),
  }));
  await run.mark('replicating', log);
  const c = started.copy;
  run.record({ streamSeconds: seconds, bytesCopied: c.bytes, rowsCopied: c.rows });
  log.ok(`initial copy: ${c.tables} tables, ${c.rows} rows, ${formatBytes(c.bytes)} in ${formatDuration(seconds)} in the slot's snapshot; `
    + 'replicating from the slot now');
  return { name: started.name, plan: started.plan, since: Date.now() };
}

async function continueReplication(run: DatabaseRun, log: Logger): Promise<Replication> {
  const name = replicationName(run.config.name, run.db.name);
  await run.readIdentity('replicate');
  if (run.action.kind === 'continue') run.created = run.action.marker.created;
  const admin = await openSourceAdmin(run.runtimeDb.source, run.env, run.connectTimeoutSeconds);
  try {
    const plan = await planPublication(admin, run.config);
    log.ok(`continuing the replication an earlier attempt started: slot, publication and subscription ${name} are in place`);
    return { name, plan, since: Date.now() };
  } finally {
    await endQuietly(admin);
  }
}
