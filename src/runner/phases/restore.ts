/** The restore and ANALYZE phases (dump mode): pg_restore of the dump into the destination, then fresh statistics. */
import { formatDuration } from '../report/progress';
import { analyzeDatabase, restoreDatabase } from '../dump-restore/pg-restore';
import { withRetry } from '../postgres/retry';
import type { DatabaseRun } from './context';

/**
 * Restore: the planned command first; a later one (or the first into a database an earlier attempt left
 * half-restored but did not create) with --clean --if-exists.
 */
export async function restorePhase(run: DatabaseRun): Promise<void> {
  const m = run.migration;
  const { restoreLog } = run;
  const [restored, restoreSeconds] = await run.timed('restore', () => withRetry(async () => {
    await run.ensureDestination();
    // Before the first statement of the restore: from here on a re-run recognizes a half-restore as ours.
    await run.mark('restoring', restoreLog);
    const cleanFirst = run.startWriteAttempt();
    return restoreDatabase(run.db, {
      ...run.phaseOptions('restore'), timeoutMs: m.timeouts.restore * 1000, cleanFirst,
      onFraction: (f) => run.options.runProgress?.update(run.db.name, 0.5 + f / 2), // the second half (dumpPhase)
    });
  }, { ...run.retry, phase: 'restore', logger: restoreLog, beforeRetry: run.beforeRetry }));
  run.record({ restoreSeconds });
  restoreLog.ok(`restored in ${formatDuration(restoreSeconds)} (${restored.totalItems} items in the dump${run.writeRuns > 1 ? `, ${run.writeRuns} attempts` : ''})`);
}

/** ANALYZE of the restored database, `migration.restore.jobs` tables at a time. */
export async function analyzePhase(run: DatabaseRun): Promise<void> {
  const m = run.migration;
  const [analyzed, analyzeSeconds] = await run.timed('analyze', () => withRetry(
    () => analyzeDatabase(run.db, { ...run.destOpts, logger: run.phaseLog('analyze'), jobs: m.restore.jobs }),
    { ...run.retry, phase: 'analyze', logger: run.phaseLog('analyze'), timeoutSetting: 'migration.timeouts.restore' },
  ));
  run.record({ analyzeSeconds });
  run.phaseLog('analyze').ok(`analyzed ${analyzed.tables} tables and materialized views (system catalogs included), `
    + `${Math.min(m.restore.jobs, Math.max(1, analyzed.tables))} at a time, in ${formatDuration(analyzeSeconds)}`);
}
