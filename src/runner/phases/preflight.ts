/**
 * Before anything moves: pre-flight every enabled database (any error stops the run before a single dump),
 * then read what earlier attempts left on the destination and decide per database (checks/progress-marker.ts: skip, reset or
 * refuse; a refusal stops the run too).
 */
import type { RuntimeConfig } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';
import { humanError } from '../postgres/errors';
import { withDeadline } from '../postgres/exec';
import type { Logger } from '../report/log';
import { decideResume, readDestinationState, readSourceIdentity, type DestinationState, type ResumeAction } from '../checks/progress-marker';
import type { RunMigrationOptions } from '../run-options';
import type { DatabasePlan, MigrationPlan } from '../plan';
import { formatPreflightProblem, preflight, type DatabasePreflight, type PreflightProblem, type PreflightReport } from '../checks/preflight/checks';
import { formatBytes, formatDuration } from '../report/progress';
import type { RecordResult } from './context';

/** What the checks found on each database, and what to do with what earlier attempts left, by database name. */
export interface PreflightOutcome {
  readonly facts: Map<string, DatabasePreflight>;
  readonly actions: Map<string, ResumeAction>;
}

/**
 * Pre-flight and the resume decisions, logged and recorded. Undefined when the run stops here (a problem, a
 * refusal, or an interruption): every database is recorded with why.
 */
export async function preflightDatabases(
  plan: MigrationPlan, config: RuntimeConfig, options: RunMigrationOptions, logger: Logger, record: RecordResult,
): Promise<PreflightOutcome | undefined> {
  const pfLog = logger.child({ phase: 'preflight' });
  const facts = await checkDatabases(plan, config, options, pfLog, record);
  if (!facts) return undefined;
  const actions = await resumeActions(plan, config, options, pfLog, record);
  if (!actions) return undefined;
  return { facts, actions };
}

/** 1. Pre-flight, every enabled database, before anything moves. */
async function checkDatabases(
  plan: MigrationPlan, config: RuntimeConfig, options: RunMigrationOptions, pfLog: Logger, record: RecordResult,
): Promise<Map<string, DatabasePreflight> | undefined> {
  const { env, signal } = options;
  let report: PreflightReport;
  const preflightStarted = Date.now();
  try {
    report = await withDeadline('preflight', 'preflight', { signal }, () => preflight(config, env, { binDir: plan.binDir }));
    // How long the checks took: their catalog round trips show on a slow link.
    pfLog.info(`pre-flight checks took ${formatDuration((Date.now() - preflightStarted) / 1000)}`);
  } catch (err) {
    if (signal?.aborted) return interrupted(plan, pfLog, record);
    throw err;
  }
  const facts = new Map<string, DatabasePreflight>(report.databases.map((d) => [d.database, d]));
  for (const db of plan.databases) {
    const f = facts.get(db.name);
    const dbLog = pfLog.child({ database: db.name });
    record(db.name, { sizeBytes: f?.sourceSizeBytes, tables: f?.tables });
    for (const p of f?.problems ?? report.problems.filter((x) => x.database === db.name)) logProblem(p, dbLog);
    if (f?.ok) {
      dbLog.ok(`pre-flight passed: ${f.sourceSizeBytes !== undefined ? formatBytes(f.sourceSizeBytes) : 'size unknown'}, ${f.tables ?? '?'} tables`
        + `${f.willCreateDestination ? `; will create database "${db.destination.database}" on the destination` : ''}`);
    }
  }
  for (const p of report.problems.filter((x) => !plan.databases.some((d) => d.name === x.database))) {
    logProblem(p, pfLog);
  }
  if (!report.ok) {
    recordPreflightFailure(plan, report, facts, record);
    pfLog.error('pre-flight failed: nothing was dumped or restored; fix the problems above and run again');
    return undefined;
  }
  pfLog.ok(`pre-flight passed for ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'}`);
  return facts;
}

/** Each database failed by its own first error, or not started because another one failed. */
function recordPreflightFailure(
  plan: MigrationPlan, report: PreflightReport, facts: Map<string, DatabasePreflight>, record: RecordResult,
): void {
  for (const db of plan.databases) {
    const f = facts.get(db.name);
    const errors = (f?.problems ?? report.problems.filter((x) => x.database === db.name)).filter((p) => p.severity === 'error');
    if (errors.length > 0 || f?.ok === false) {
      record(db.name, {
        status: 'failed', phase: 'preflight',
        error: errors.length ? `${errors[0].message}${errors.length > 1 ? ` (and ${errors.length - 1} more pre-flight problem${errors.length > 2 ? 's' : ''})` : ''}` : 'pre-flight failed',
      });
    } else {
      record(db.name, { error: 'not started: pre-flight failed for another database' });
    }
  }
  // A problem not tied to a database (e.g. the client tools) fails every database.
  const general = report.problems.filter((p) => p.severity === 'error' && !plan.databases.some((d) => d.name === p.database));
  if (general.length) for (const db of plan.databases) record(db.name, { status: 'failed', phase: 'preflight', error: general[0].message });
}

/** 2. What earlier attempts left on the destination: skip, reset, or refuse (then nothing moves at all). */
async function resumeActions(
  plan: MigrationPlan, config: RuntimeConfig, options: RunMigrationOptions, pfLog: Logger, record: RecordResult,
): Promise<Map<string, ResumeAction> | undefined> {
  const { env, signal } = options;
  const actions = new Map<string, ResumeAction>();
  for (const db of plan.databases) {
    const dbLog = pfLog.child({ database: db.name });
    let action: ResumeAction;
    try {
      action = await withDeadline('resume check', 'preflight', { signal, timeoutMs: (config.migration.timeouts.connect * 2 + 30) * 1000 },
        () => resumeAction(db, config, env, options.resume ?? false));
    } catch (err) {
      if (signal?.aborted) return interrupted(plan, pfLog, record);
      action = { kind: 'refuse', message: `cannot read what earlier attempts recorded on the destination: ${humanError(err)}` };
    }
    actions.set(db.name, action);
    if (action.kind === 'skip') dbLog.ok(`skipped: ${action.reason}`);
    if (action.kind === 'reset') dbLog.warn(action.note);
    if (action.kind === 'continue') dbLog.info(action.note);
    if (action.kind === 'refuse') dbLog.error(action.message);
  }
  const refused = plan.databases.filter((db) => actions.get(db.name)?.kind === 'refuse');
  if (refused.length > 0) {
    for (const db of plan.databases) {
      const a = actions.get(db.name)!;
      if (a.kind === 'refuse') record(db.name, { status: 'failed', phase: 'preflight', error: a.message });
      else record(db.name, { error: 'not started: pre-flight failed for another database' });
    }
    pfLog.error('pre-flight failed: nothing was dumped or restored; fix the problems above and run again');
    return undefined;
  }
  return actions;
}

/** Interrupted during pre-flight: every database is recorded so. */
function interrupted(plan: MigrationPlan, pfLog: Logger, record: RecordResult): undefined {
  for (const db of plan.databases) record(db.name, { status: 'interrupted', phase: 'preflight', error: 'interrupted during pre-flight' });
  pfLog.warn('interrupted during pre-flight');
  return undefined;
}

/** Reads the source's identity and the destination's marker, and decides (progress-marker.ts decideResume). */
async function resumeAction(db: DatabasePlan, config: RuntimeConfig, env: NodeJS.ProcessEnv, resume: boolean): Promise<ResumeAction> {
  const connectTimeoutSeconds = config.migration.timeouts.connect;
  const destination = await readDestination(db, env, connectTimeoutSeconds);
  if (!destination.exists || !destination.marker) return { kind: 'fresh' };
  const { identity } = await readSourceIdentity(db.source, env, connectTimeoutSeconds);
  return decideResume({ destination, databaseName: db.destination.database, source: identity, resume, clean: config.migration.restore.clean, online: config.migration.mode === 'online' });
}

/** The destination database's state, read through the database itself, else a maintenance database. */
async function readDestination(db: DatabasePlan, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number): Promise<DestinationState> {
  let last: unknown;
  for (const database of [db.destination.database, 'postgres', 'template1']) {
    try {
      const client = await connect({ ...db.destination, database }, env, { readOnly: true, connectTimeoutSeconds });
      try {
        return await readDestinationState(client, db.destination.database);
      } finally {
        await client.end().catch(() => undefined);
      }
    } catch (err) {
      last = err;
      if (!['3D000', '28000', '42501'].includes(String((err as { code?: unknown }).code))) throw err;
    }
  }
  throw last;
}

/** A pre-flight problem as log lines; the logger adds the icon and the database, so the formatter's are dropped. */
export function logProblem(p: PreflightProblem, log: Logger): void {
  formatPreflightProblem(p).forEach((line, i) => {
    const text = i === 0 ? line.replace(/^\S+ [^:]+: /, '') : line;
    if (p.severity === 'error') log.error(text); else log.warn(text);
  });
}
