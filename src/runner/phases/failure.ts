/** What a database's failed or interrupted migration records: the phase, a message that says why, and the tool's last lines. */
import { humanError } from '../postgres/errors';
import { ToolTimeoutError } from '../postgres/exec';
import { faultFields, ReplicationFault } from '../online/faults';
import { formatDuration } from '../report/progress';
import { PhaseError } from '../postgres/retry';
import type { Phase } from '../report/summary';
import type { DatabaseRun } from './context';
import { dumpFailure } from './dump';
import { VerificationFailed } from './verify';

export async function recordFailure(run: DatabaseRun, err: unknown): Promise<void> {
  const { log, signal } = run;
  const pe = err instanceof PhaseError ? err : undefined;
  const failedPhase = (pe?.phase as Phase | undefined) ?? run.phase;
  const cause = pe ? pe.cause : err;
  if (pe?.interrupted || signal?.aborted) {
    run.record({ status: 'interrupted', phase: failedPhase, error: `interrupted during ${failedPhase}` });
    log.child({ phase: failedPhase }).warn(`interrupted during ${failedPhase}; the tool was stopped`);
    return;
  }
  const differences = cause instanceof VerificationFailed ? cause.differences : undefined;
  const fault = cause instanceof ReplicationFault ? cause.fault : undefined;
  const message = cause instanceof VerificationFailed || fault ? (cause as Error).message
    : cause instanceof ToolTimeoutError ? `timed out after ${formatDuration(cause.elapsedMs / 1000)} (limit ${formatDuration(cause.timeoutMs / 1000)})`
      : (failedPhase === 'dump' ? await dumpFailure(cause, run.db, run.facts, run.config, run.parallel) : undefined) ?? humanError(cause);
  const attempts = pe && pe.attempts > 1 ? ` (after ${pe.attempts} attempts)` : '';
  run.record({ status: 'failed', phase: failedPhase, error: `${message}${attempts}`, ...(differences ? { differences } : {}), ...(fault ? { fault } : {}) });
  const flog = log.child({ phase: failedPhase });
  flog.error(`${failedPhase} failed${attempts}: ${message}`, fault ? faultFields(fault) : undefined);
  for (const d of differences ?? []) flog.error(`difference: ${d}`);
  if (!differences && cause instanceof Error && 'stderrTail' in cause) {
    for (const line of (cause as { stderrTail: readonly string[] }).stderrTail.slice(-10)) flog.info(`| ${line}`);
  }
}
