/**
 * The verify phase: the destination compared with the source (migration.verify), then the database marked
 * `verified` on the destination so that a re-run skips it.
 */
import { classifyError, humanError } from '../postgres/errors';
import { withDeadline } from '../postgres/exec';
import { formatDuration } from '../report/progress';
import { PhaseError, withRetry } from '../postgres/retry';
import { verifyDatabase } from '../checks/verification';
import type { DatabaseRun } from './context';

/** Thrown inside a phase when verification finds differences: permanent, never retried. */
export class VerificationFailed extends Error {
  constructor(readonly differences: string[]) {
    super(`verification found ${differences.length} difference${differences.length === 1 ? '' : 's'}: ${differences.slice(0, 3).join('; ')}`);
  }
}

function differenceText(d: unknown): string {
  if (typeof d === 'string') return d;
  if (d && typeof d === 'object' && typeof (d as { message?: unknown }).message === 'string') return (d as { message: string }).message;
  return JSON.stringify(d);
}

/** Verifies (unless migration.verify: none), then marks the database verified. */
export async function verifyPhase(run: DatabaseRun): Promise<void> {
  if (run.migration.verify !== 'none') {
    await verifyDestination(run);
  } else {
    run.phaseLog('verify').warn('verification skipped (migration.verify: none)');
  }
  await markVerified(run);
}

async function verifyDestination(run: DatabaseRun): Promise<void> {
  const m = run.migration;
  const { runtimeDb, config, env, signal } = run;
  const verifyLog = run.phaseLog('verify');
  const [v, verifySeconds] = await run.timed('verify', () => withRetry(async () => {
    const { sourceChecksums, sourceRowCounts } = run;
    let running: Promise<unknown> | undefined;
    const res = await withDeadline('verify', 'verify', { timeoutMs: m.timeouts.verify * 1000, signal }, (stop) => {
      const p = verifyDatabase(runtimeDb, config, env, {
        signal: stop, ...(sourceChecksums ? { sourceChecksums } : {}), ...(sourceRowCounts ? { sourceRowCounts } : {}),
      });
      running = p;
      return p;
    }).catch(async (err: unknown) => {
      // Stopped (timeout or interruption): wait until its queries are cancelled and its sessions gone.
      await running?.catch(() => undefined);
      throw err;
    });
    if (!res.ok) throw new VerificationFailed(res.differences.map(differenceText));
    return res;
  }, {
    ...run.retry, phase: 'verify', logger: verifyLog,
    classify: (err) => (err instanceof VerificationFailed ? { transient: false, reason: 'differences found' } : classifyError(err)),
  }));
  run.record({
    verifySeconds, rowsVerified: v.rowsVerified, tables: v.tables, objectsVerified: v.objects,
    ...(m.verify === 'checksums' ? { tablesChecksummed: v.checksummed } : {}),
  });
  const snapshotName = m.mode === 'stream' ? "stream's" : "dump's";
  const checksummed = m.verify === 'checksums'
    ? `, ${v.checksummed} tables checksummed (source side ${run.sourceChecksums ? `in the ${snapshotName} snapshot` : 'live'})`
    : ` (source rows ${run.sourceRowCounts ? `counted in the ${snapshotName} snapshot` : 'counted live'})`;
  verifyLog.ok(`verified (${m.verify}): ${v.tables} tables, ${v.rowsVerified} rows${v.sequences !== undefined ? `, ${v.sequences} sequences` : ''} match; `
    + `${v.objects} inventory objects compared${checksummed}, in ${formatDuration(verifySeconds)}`);
}

/** Complete: a re-run skips it. If this cannot be recorded, a re-run redoes it (safe, only slower). */
async function markVerified(run: DatabaseRun): Promise<void> {
  const verifyLog = run.phaseLog('verify');
  await withRetry(() => run.mark('verified', verifyLog), { ...run.retry, phase: 'verify', logger: verifyLog }).catch((err: unknown) => {
    if (run.signal?.aborted) throw err;
    verifyLog.warn(`cannot mark database "${run.db.destination.database}" verified (${humanError(err instanceof PhaseError ? err.cause : err)}): a re-run will migrate it again`);
  });
}
