/**
 * The migration, phase by phase: plan, pre-flight every enabled database (any error stops the run before a
 * single dump), then per database in spec order dump → restore → ANALYZE → verify → remove the dump. Each
 * phase has its own time limit, retries of transient failures, and a failure report naming the database and
 * the phase. The summary is built from what each phase recorded.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../spec/runtime-config';
import { describeEndpoint } from './connection';
import { dumpDatabase, removeDumpDir } from './dump';
import { classifyError, humanError } from './errors';
import { ToolTimeoutError, withDeadline } from './exec';
import { Logger } from './log';
import { buildPlan, formatCommand, passwordEnvNames, type DatabasePlan, type MigrationPlan } from './plan';
import { formatPreflightProblem, preflight } from './preflight';
import type { DatabasePreflight, PreflightProblem, PreflightReport } from './preflight';
import { formatBytes, formatDuration } from './progress';
import { analyzeDatabase, ensureDestinationDatabase, recreateDestinationDatabase, restoreDatabase } from './restore';
import { PhaseError, withRetry } from './retry';
import {
  finishSummary, formatSummaryTable, writeSummaryFiles, type DatabaseResult, type Phase, type RunSummary,
} from './summary';
import { verifyDatabase } from './verify';

export interface RunMigrationOptions {
  /** The environment holding the passwords (by the variable names the config gives). */
  readonly env: NodeJS.ProcessEnv;
  /** @default - config.migration.dryRun */
  readonly dryRun?: boolean;
  /** Directory of pg_dump / pg_restore. @default - $PG_BIN, else PATH */
  readonly binDir?: string;
  /** Aborting stops the running tool, records the database and phase as interrupted, and ends the run. */
  readonly signal?: AbortSignal;
  /** @default process.stdout */
  readonly out?: NodeJS.WritableStream;
  /** Interval of progress lines during dump and restore. @default 30000 */
  readonly progressIntervalMs?: number;
}

/** Thrown inside a phase when verification finds differences: permanent, never retried. */
class VerificationFailed extends Error {
  constructor(readonly differences: string[]) {
    super(`verification found ${differences.length} difference${differences.length === 1 ? '' : 's'}: ${differences.slice(0, 3).join('; ')}`);
  }
}

function differenceText(d: unknown): string {
  if (typeof d === 'string') return d;
  if (d && typeof d === 'object' && typeof (d as { message?: unknown }).message === 'string') return (d as { message: string }).message;
  return JSON.stringify(d);
}

export async function runMigration(config: RuntimeConfig, options: RunMigrationOptions): Promise<RunSummary> {
  const startedAt = new Date();
  const { env, signal } = options;
  const passwordVars = passwordEnvNames(config);
  const logger = Logger.create({
    format: config.migration.logFormat,
    verbose: config.migration.verbose,
    out: options.out,
    logDir: config.paths.logs,
    secrets: passwordVars.map((v) => env[v]),
  });

  const results = new Map<string, DatabaseResult>(config.databases.map((d) => [d.name, {
    name: d.name, status: d.enabled ? 'planned' : 'skipped',
  }]));
  const record = (name: string, patch: Partial<DatabaseResult>) => {
    const r = results.get(name)!;
    Object.assign(r, patch, patch.error !== undefined ? { error: logger.redact(patch.error) } : {});
  };

  let plan: MigrationPlan | undefined;
  try {
    plan = buildPlan(config, { dryRun: options.dryRun, binDir: options.binDir, env });
    logPlan(plan, logger);
    if (config.migration.mode !== 'dump') {
      throw new Error(`migration.mode "${config.migration.mode}" is not supported by this runner; use mode: dump`);
    }
    if (plan.databases.length === 0) {
      logger.warn('no database is enabled: nothing to do');
    } else {
      await execute(plan, config, options, logger, record, passwordVars);
    }
  } catch (err) {
    // Only unexpected errors get here (phases record their own failures).
    const message = humanError(err);
    logger.error(`the run failed: ${message}`);
    for (const r of results.values()) if (r.status === 'planned') record(r.name, { status: 'failed', phase: 'plan', error: message });
  }

  const summary = finishSummary({ name: config.name, dryRun: plan?.dryRun ?? config.migration.dryRun, startedAt }, [...results.values()]);
  if (signal?.aborted && !summary.interrupted) summary.interrupted = true;
  reportSummary(summary, config, logger);
  logger.close();
  return summary;
}

type Record_ = (name: string, patch: Partial<DatabaseResult>) => void;

async function execute(plan: MigrationPlan, config: RuntimeConfig, options: RunMigrationOptions, logger: Logger, record: Record_, passwordVars: string[]) {
  const { env, signal } = options;

  // 1. Pre-flight, every enabled database, before anything moves.
  const pfLog = logger.child({ phase: 'preflight' });
  let report: PreflightReport;
  try {
    report = await withDeadline('preflight', 'preflight', { signal }, () => preflight(config, env, { binDir: plan.binDir }));
  } catch (err) {
    if (signal?.aborted) {
      for (const db of plan.databases) record(db.name, { status: 'interrupted', phase: 'preflight', error: 'interrupted during pre-flight' });
      pfLog.warn('interrupted during pre-flight');
      return;
    }
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
    pfLog.error('pre-flight failed: nothing was dumped or restored; fix the problems above and run again');
    return;
  }
  pfLog.ok(`pre-flight passed for ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'}`);

  // 2. Dry run: show exactly what would run, and stop.
  if (plan.dryRun) {
    printDryRun(plan, facts, logger);
    for (const db of plan.databases) record(db.name, { status: 'dry-run' });
    return;
  }

  // 3. Each database in spec order.
  for (const db of plan.databases) {
    if (signal?.aborted) break;
    const runtimeDb = config.databases.find((d) => d.name === db.name)!;
    await migrateDatabase(db, runtimeDb, facts.get(db.name), config, options, logger.child({ database: db.name }), record, passwordVars);
  }
}

async function migrateDatabase(
  db: DatabasePlan, runtimeDb: RuntimeDatabase, facts: DatabasePreflight | undefined, config: RuntimeConfig,
  options: RunMigrationOptions, log: Logger, record: Record_, passwordVars: string[],
): Promise<void> {
  const { env, signal } = options;
  const m = config.migration;
  const retry = { attempts: m.retries.attempts, delaySeconds: m.retries.delaySeconds, database: db.name, signal };
  const phaseOpts = (phase: Phase) => ({ env, passwordVars, logger: log.child({ phase }), signal, progressIntervalMs: options.progressIntervalMs });
  const connectTimeoutSeconds = m.timeouts.connect;
  let phase: Phase = 'dump';
  const timed = async <T>(p: Phase, work: () => Promise<T>): Promise<[T, number]> => {
    phase = p;
    const started = Date.now();
    const value = await work();
    return [value, (Date.now() - started) / 1000];
  };

  log.info(`migrating ${describeEndpoint(db.source)} → ${describeEndpoint(db.destination)}`);
  try {
    // Dump: every attempt starts from an empty directory.
    const [dump, dumpSeconds] = await timed('dump', () => withRetry(
      () => dumpDatabase(db, { ...phaseOpts('dump'), timeoutMs: m.timeouts.dump * 1000, databaseBytes: facts?.sourceSizeBytes }),
      { ...retry, phase: 'dump', logger: log.child({ phase: 'dump' }) },
    ));
    record(db.name, { dumpSeconds, dumpBytes: dump.bytes });
    log.child({ phase: 'dump' }).ok(`dumped ${formatBytes(dump.bytes)} in ${formatDuration(dumpSeconds)}`);

    // Restore: create the database if needed; a retry first removes what the failed attempt restored.
    let created = false;
    let ensured = false;
    let restoreRuns = 0;
    const restoreLog = log.child({ phase: 'restore' });
    const destOpts = { env, connectTimeoutSeconds, logger: restoreLog, signal, timeoutMs: m.timeouts.restore * 1000 };
    const [restored, restoreSeconds] = await timed('restore', () => withRetry(async () => {
      if (!ensured) {
        created = (await ensureDestinationDatabase(db, { ...destOpts, mayCreate: facts?.willCreateDestination ?? false })).created;
        ensured = true;
      }
      // The first pg_restore runs the planned command. A later one either got a fresh database (created by this
      // run, re-created before the retry) or restores with --clean --if-exists into the database pre-flight
      // found empty (or restore.clean allowed to replace), removing exactly what the failed attempt restored.
      const cleanFirst = restoreRuns > 0 && !created;
      restoreRuns++;
      return restoreDatabase(db, { ...phaseOpts('restore'), timeoutMs: m.timeouts.restore * 1000, cleanFirst });
    }, {
      ...retry, phase: 'restore', logger: restoreLog,
      beforeRetry: async () => { if (restoreRuns > 0 && created) await recreateDestinationDatabase(db, destOpts); },
    }));
    record(db.name, { restoreSeconds });
    restoreLog.ok(`restored in ${formatDuration(restoreSeconds)} (${restored.totalItems} items in the dump${restoreRuns > 1 ? `, ${restoreRuns} attempts` : ''})`);

    const [, analyzeSeconds] = await timed('analyze', () => withRetry(
      () => analyzeDatabase(db, { ...destOpts, logger: log.child({ phase: 'analyze' }) }),
      { ...retry, phase: 'analyze', logger: log.child({ phase: 'analyze' }), timeoutSetting: 'migration.timeouts.restore' },
    ));
    record(db.name, { analyzeSeconds });
    log.child({ phase: 'analyze' }).ok(`analyzed in ${formatDuration(analyzeSeconds)}`);

    if (m.verify !== 'none') {
      const verifyLog = log.child({ phase: 'verify' });
      const [v, verifySeconds] = await timed('verify', () => withRetry(async () => {
        const res = await withDeadline('verify', 'verify', { timeoutMs: m.timeouts.verify * 1000, signal }, () => verifyDatabase(runtimeDb, config, env));
        if (!res.ok) throw new VerificationFailed(res.differences.map(differenceText));
        return res;
      }, {
        ...retry, phase: 'verify', logger: verifyLog,
        classify: (err) => (err instanceof VerificationFailed ? { transient: false, reason: 'differences found' } : classifyError(err)),
      }));
      record(db.name, { verifySeconds, rowsVerified: v.rowsVerified, tables: v.tables });
      verifyLog.ok(`verified (${m.verify}): ${v.tables} tables, ${v.rowsVerified} rows${v.sequences !== undefined ? `, ${v.sequences} sequences` : ''} match, in ${formatDuration(verifySeconds)}`);
    } else {
      log.child({ phase: 'verify' }).warn('verification skipped (migration.verify: none)');
    }
    record(db.name, { status: 'migrated', phase: undefined });
    log.ok('migrated');
  } catch (err) {
    const pe = err instanceof PhaseError ? err : undefined;
    const failedPhase = (pe?.phase as Phase | undefined) ?? phase;
    const cause = pe ? pe.cause : err;
    if (pe?.interrupted || signal?.aborted) {
      record(db.name, { status: 'interrupted', phase: failedPhase, error: `interrupted during ${failedPhase}` });
      log.child({ phase: failedPhase }).warn(`interrupted during ${failedPhase}; the tool was stopped`);
    } else {
      const differences = cause instanceof VerificationFailed ? cause.differences : undefined;
      const message = cause instanceof VerificationFailed ? cause.message
        : cause instanceof ToolTimeoutError ? `timed out after ${formatDuration(cause.elapsedMs / 1000)} (limit ${formatDuration(cause.timeoutMs / 1000)})`
          : humanError(cause);
      const attempts = pe && pe.attempts > 1 ? ` (after ${pe.attempts} attempts)` : '';
      record(db.name, { status: 'failed', phase: failedPhase, error: `${message}${attempts}`, ...(differences ? { differences } : {}) });
      const flog = log.child({ phase: failedPhase });
      flog.error(`${failedPhase} failed${attempts}: ${message}`);
      for (const d of differences ?? []) flog.error(`difference: ${d}`);
      if (!differences && cause instanceof Error && 'stderrTail' in cause) {
        for (const line of (cause as { stderrTail: readonly string[] }).stderrTail.slice(-10)) flog.info(`| ${line}`);
      }
    }
  } finally {
    await removeDumpDir(db.dumpDir).then(
      () => log.child({ phase: 'cleanup' }).debug(`removed ${db.dumpDir}`),
      (e: Error) => log.child({ phase: 'cleanup' }).warn(`cannot remove ${db.dumpDir}: ${e.message}`),
    );
  }
}

/** A pre-flight problem as log lines; the logger adds the icon and the database, so the formatter's are dropped. */
function logProblem(p: PreflightProblem, log: Logger): void {
  formatPreflightProblem(p).forEach((line, i) => {
    const text = i === 0 ? line.replace(/^\S+ [^:]+: /, '') : line;
    if (p.severity === 'error') log.error(text); else log.warn(text);
  });
}

function logPlan(plan: MigrationPlan, logger: Logger): void {
  const log = logger.child({ phase: 'plan' });
  const o = plan.options;
  log.info(`${plan.dryRun ? 'dry run' : 'migration'} "${plan.name}": ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'} `
    + `(${plan.databases.map((d) => d.name).join(', ') || 'none'})${plan.skipped.length ? `, skipped: ${plan.skipped.join(', ')}` : ''}`);
  log.info(`dump jobs ${o.dump.jobs}, compression ${o.dump.compression}; restore jobs ${o.restore.jobs}${o.restore.clean ? ', clean' : ''}; `
    + `verify ${o.verify}; timeouts dump ${o.timeouts.dump}s, restore ${o.timeouts.restore}s, verify ${o.timeouts.verify}s; `
    + `${o.retries.attempts} attempts, first retry after ${o.retries.delaySeconds}s; tools from ${plan.binDir ?? 'PATH'}`);
  for (const db of plan.databases) {
    log.child({ database: db.name }).debug(`dump: ${formatCommand(db.dump)}`);
    log.child({ database: db.name }).debug(`restore: ${formatCommand(db.restore)}`);
  }
}

function printDryRun(plan: MigrationPlan, facts: Map<string, DatabasePreflight>, logger: Logger): void {
  const log = logger.child({ phase: 'dry-run' });
  for (const db of plan.databases) {
    const f = facts.get(db.name);
    const l = log.child({ database: db.name });
    l.info(`${describeEndpoint(db.source)} → ${describeEndpoint(db.destination)}: `
      + `${f?.sourceSizeBytes !== undefined ? formatBytes(f.sourceSizeBytes) : 'size unknown'}, ${f?.tables ?? '?'} tables`
      + `${f?.willCreateDestination ? `; would create database "${db.destination.database}" on the destination` : ''}`);
    l.info(`would run: ${formatCommand(db.dump)}`);
    l.info(`would run: ${formatCommand(db.restore)}`);
    l.info(`then: ANALYZE; verify ${db.verify}; remove ${db.dumpDir}`);
  }
  log.ok('dry run: nothing was dumped or restored');
}

function reportSummary(summary: RunSummary, config: RuntimeConfig, logger: Logger): void {
  if (logger.format === 'text') logger.raw(`\n${formatSummaryTable(summary)}\n`);
  else logger.info('summary', { ok: summary.ok, dryRun: summary.dryRun, ...summary.totals, seconds: summary.durationSeconds });
  const files = writeSummaryFiles(summary, { logs: config.paths.logs, terminationLog: config.paths.terminationLog }, logger.secrets);
  for (const f of files.failures) {
    // No /dev/termination-log on a workstation: not worth a warning.
    if (config.paths.terminationLog && f.startsWith(config.paths.terminationLog)) logger.debug(`cannot write ${f}`);
    else logger.warn(`cannot write ${f}`);
  }
}
