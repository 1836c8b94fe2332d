/**
 * The migration, phase by phase: plan, pre-flight every enabled database (any error stops the run before a
 * single dump), read what earlier attempts recorded on the destination (marker.ts: skip, reset or refuse),
 * then per database dump → restore → ANALYZE → verify → remove the dump, `migration.parallelDatabases` at a
 * time. Each phase has its own time limit, retries of transient failures, and a failure report naming the
 * database and the phase. The summary is built from what each phase recorded, in spec order.
 *
 * Safe re-runs: a Job pod can die at any moment and its replacement starts with empty volumes. Before its
 * restore a database is marked `restoring` on the destination, after verification `verified`; a new attempt
 * skips verified databases, resets half-restored ones and never touches anything it did not fill.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../spec/runtime-config';
import { connect, describeEndpoint } from './connection';
import { dumpDatabase, removeDumpDir } from './dump';
import { classifyError, humanError } from './errors';
import { quoteIdent } from './sql';
import { ToolTimeoutError, withDeadline } from './exec';
import { Logger } from './log';
import { buildPlan, formatCommand, passwordEnvNames, type DatabasePlan, type MigrationPlan } from './plan';
import { formatPreflightProblem, preflight } from './preflight';
import type { DatabasePreflight, PreflightProblem, PreflightReport } from './preflight';
import {
  decideResume, readDestinationState, readSourceIdentity, type DestinationState, type DumpPoint, type MarkerState,
  type MigrationMarker, type ResumeAction, type SourceIdentity,
} from './marker';
import { directorySize, formatBytes, formatDuration } from './progress';
import {
  analyzeDatabase, ensureDestinationDatabase, recordMarker, recreateDestinationDatabase, restoreDatabase,
} from './restore';
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
  /**
   * Continue what an earlier attempt left on the destination: databases it marked `verified` (from the same
   * source) are skipped, databases it left `restoring` are reset and migrated again. Without it such
   * databases are refused in pre-flight with what to do. The Job's runner always resumes (a retried pod
   * cannot be given flags); on a workstation it is `migrate --resume`.
   * @default false
   */
  readonly resume?: boolean;
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

  // 2. What earlier attempts left on the destination: skip, reset, or refuse (then nothing moves at all).
  const actions = new Map<string, ResumeAction>();
  for (const db of plan.databases) {
    const dbLog = pfLog.child({ database: db.name });
    let action: ResumeAction;
    try {
      action = await withDeadline('resume check', 'preflight', { signal, timeoutMs: (config.migration.timeouts.connect * 2 + 30) * 1000 },
        () => resumeAction(db, config, env, options.resume ?? false));
    } catch (err) {
      if (signal?.aborted) {
        for (const d of plan.databases) record(d.name, { status: 'interrupted', phase: 'preflight', error: 'interrupted during pre-flight' });
        pfLog.warn('interrupted during pre-flight');
        return;
      }
      action = { kind: 'refuse', message: `cannot read what earlier attempts recorded on the destination: ${humanError(err)}` };
    }
    actions.set(db.name, action);
    if (action.kind === 'skip') dbLog.ok(`skipped: ${action.reason}`);
    if (action.kind === 'reset') dbLog.warn(action.note);
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
    return;
  }

  // 3. Dry run: show exactly what would run, and stop.
  if (plan.dryRun) {
    printDryRun(plan, facts, actions, logger);
    for (const db of plan.databases) record(db.name, { status: 'dry-run' });
    return;
  }

  // 4. The databases, `parallelDatabases` at a time, taken in spec order (the summary keeps that order).
  const queue: DatabasePlan[] = [];
  for (const db of plan.databases) {
    const a = actions.get(db.name)!;
    if (a.kind === 'skip') record(db.name, { status: 'skipped', reason: a.reason });
    else queue.push(db);
  }
  const workers = Math.max(1, Math.min(config.migration.parallelDatabases, queue.length));
  if (workers > 1) warnSharedDumpVolume(queue, facts, config, workers, logger.child({ phase: 'plan' }));
  let next = 0;
  const worker = async () => {
    while (next < queue.length && !signal?.aborted) {
      const db = queue[next++];
      const runtimeDb = config.databases.find((d) => d.name === db.name)!;
      await migrateDatabase(db, runtimeDb, facts.get(db.name), actions.get(db.name)!, config, options,
        logger.child({ database: db.name }), record, passwordVars, workers);
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}

/** Reads the source's identity and the destination's marker, and decides (marker.ts decideResume). */
async function resumeAction(db: DatabasePlan, config: RuntimeConfig, env: NodeJS.ProcessEnv, resume: boolean): Promise<ResumeAction> {
  const connectTimeoutSeconds = config.migration.timeouts.connect;
  const destination = await readDestination(db, env, connectTimeoutSeconds);
  if (!destination.exists || !destination.marker) return { kind: 'fresh' };
  const { identity } = await readSourceIdentity(db.source, env, connectTimeoutSeconds);
  return decideResume({ destination, databaseName: db.destination.database, source: identity, resume, clean: config.migration.restore.clean });
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

/** Databases dumped at once share the dumps volume; pre-flight checked each one alone. */
function warnSharedDumpVolume(
  queue: readonly DatabasePlan[], facts: Map<string, DatabasePreflight>, config: RuntimeConfig, workers: number, log: Logger,
): void {
  const sizes = queue.map((d) => facts.get(d.name)?.estimatedDumpBytes ?? 0).sort((a, b) => b - a);
  const worst = sizes.slice(0, workers).reduce((a, b) => a + b, 0);
  if (worst > config.storage.dumpsBytes) {
    log.warn(`${workers} databases are dumped at once (migration.parallelDatabases): the largest ${workers} need up to `
      + `${formatBytes(worst)} on the dumps volume together, more than job.storage.dumps (${formatBytes(config.storage.dumpsBytes)}); `
      + 'raise job.storage.dumps or lower migration.parallelDatabases if the dumps are not compressed well');
  }
}

async function migrateDatabase(
  db: DatabasePlan, runtimeDb: RuntimeDatabase, facts: DatabasePreflight | undefined, action: ResumeAction, config: RuntimeConfig,
  options: RunMigrationOptions, log: Logger, record: Record_, passwordVars: string[], parallel: number,
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
    // Dump: every attempt starts from an empty directory. The source's identity and position just before
    // pg_dump takes its snapshot go into the destination's marker.
    let source: SourceIdentity | undefined;
    let dumpPoint: DumpPoint | undefined;
    const [dump, dumpSeconds] = await timed('dump', () => withRetry(
      async () => {
        ({ identity: source, point: dumpPoint } = await withDeadline('source identity', 'dump', { signal, timeoutMs: (connectTimeoutSeconds + 30) * 1000 },
          () => readSourceIdentity(db.source, env, connectTimeoutSeconds)));
        return dumpDatabase(db, { ...phaseOpts('dump'), timeoutMs: m.timeouts.dump * 1000, databaseBytes: facts?.sourceSizeBytes });
      },
      { ...retry, phase: 'dump', logger: log.child({ phase: 'dump' }) },
    ));
    record(db.name, { dumpSeconds, dumpBytes: dump.bytes });
    log.child({ phase: 'dump' }).ok(`dumped ${formatBytes(dump.bytes)} in ${formatDuration(dumpSeconds)}`);

    // Restore: create the database if needed (or reset what an earlier attempt left half-restored), mark it
    // `restoring`, then pg_restore; a retry first removes what the failed attempt restored.
    const reset = action.kind === 'reset' ? action.marker : undefined;
    let created = false;
    let ensured = false;
    let restoreRuns = 0;
    let markWarned = false;
    const restoreLog = log.child({ phase: 'restore' });
    const destOpts = { env, connectTimeoutSeconds, logger: restoreLog, signal, timeoutMs: m.timeouts.restore * 1000 };
    const mark = async (state: MarkerState, l: Logger): Promise<void> => {
      const marker: MigrationMarker = {
        v: 1, state, migration: config.name, database: db.name, created, source: source!, ...(dumpPoint ? { dump: dumpPoint } : {}),
        ...(state === 'verified' ? { verify: m.verify } : {}), updatedAt: new Date().toISOString(),
      };
      if (await recordMarker(db, marker, { ...destOpts, logger: l })) {
        l.debug(`marked database "${db.destination.database}" ${state} on the destination`);
      } else if (!markWarned) {
        markWarned = true;
        l.warn(`cannot record progress on database "${db.destination.database}" (not owned by ${db.destination.username}, or it has `
          + 'a comment of its own): if this run is interrupted, a re-run will refuse the half-filled database');
      }
    };
    const [restored, restoreSeconds] = await timed('restore', () => withRetry(async () => {
      if (!ensured) {
        if (reset?.created) {
          await recreateDestinationDatabase(db, destOpts, 'created by an earlier attempt, which left it half-restored)');
          created = true;
        } else {
          created = (await ensureDestinationDatabase(db, { ...destOpts, mayCreate: facts?.willCreateDestination ?? false })).created;
        }
        ensured = true;
      }
      // Before the first statement of the restore: from here on a re-run recognizes a half-restore as ours.
      await mark('restoring', restoreLog);
      // The first pg_restore runs the planned command. A later one either got a fresh database (created by the
      // runner, re-created before the retry) or restores with --clean --if-exists into the database pre-flight
      // found empty (or restore.clean allowed to replace), removing exactly what the failed attempt restored;
      // so does the first one into a database an earlier attempt left half-restored but did not create.
      const cleanFirst = (restoreRuns > 0 || reset !== undefined) && !created;
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
    // Complete: a re-run skips it. If this cannot be recorded, a re-run redoes it (safe, only slower).
    const verifyLog = log.child({ phase: 'verify' });
    await withRetry(() => mark('verified', verifyLog), { ...retry, phase: 'verify', logger: verifyLog }).catch((err: unknown) => {
      if (signal?.aborted) throw err;
      verifyLog.warn(`cannot mark database "${db.destination.database}" verified (${humanError(err instanceof PhaseError ? err.cause : err)}): a re-run will migrate it again`);
    });
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
          : (failedPhase === 'dump' ? await dumpFailure(cause, db, facts, config, parallel) : undefined) ?? humanError(cause);
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

function printDryRun(plan: MigrationPlan, facts: Map<string, DatabasePreflight>, actions: Map<string, ResumeAction>, logger: Logger): void {
  const log = logger.child({ phase: 'dry-run' });
  for (const db of plan.databases) {
    const f = facts.get(db.name);
    const l = log.child({ database: db.name });
    const action = actions.get(db.name);
    if (action?.kind === 'skip') {
      l.info(`would skip: ${action.reason}`);
      continue;
    }
    if (action?.kind === 'reset') l.info(`would reset it first: ${action.note}`);
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

/**
 * The failures of a dump that deserve a sentence of their own: the dumps volume filled up, or a privilege
 * pre-flight saw was revoked before pg_dump got to the table. Undefined: the general message fits.
 */
async function dumpFailure(
  cause: unknown, db: DatabasePlan, facts: DatabasePreflight | undefined, config: RuntimeConfig, parallel: number,
): Promise<string | undefined> {
  const { reason } = classifyError(cause);
  const stderr = cause instanceof Error && 'stderrTail' in cause ? (cause as { stderrTail: readonly string[] }).stderrTail.join('\n') : '';
  if (reason === 'out of disk space') {
    const written = await directorySize(db.dumpDir).catch(() => undefined);
    const shared = parallel > 1 ? ` (shared by ${parallel} databases dumped at once: migration.parallelDatabases)` : '';
    return `the dumps volume ${config.paths.dumps} is full (No space left on device)${shared}`
      + `${written !== undefined ? ` after ${formatBytes(written)} of the dump of` : ' while dumping'} `
      + `${facts?.sourceSizeBytes !== undefined ? `a ${formatBytes(facts.sourceSizeBytes)} database` : 'the database'}: `
      + `raise job.storage.dumps (now ${formatBytes(config.storage.dumpsBytes)})`
      + `${config.migration.dump.compression === 0 ? ' or set migration.dump.compression' : ''} and run again`;
  }
  if (reason === 'insufficient privilege') {
    const denied = /permission denied for (table|sequence|schema|function|large object|view|materialized view) ("[^"]+"|\S+)/i.exec(stderr);
    if (!denied) return undefined;
    // pg_dump names the relation bare in the error; the failed statement names it with its schema.
    const query = /Query was: (?:LOCK TABLE|COPY|SELECT .* FROM(?: ONLY)?) ((?:"[^"]+"|[\w$]+)\.(?:"[^"]+"|[\w$]+))/i.exec(stderr);
    const object = query?.[1] ?? denied[2];
    const kind = denied[1].toLowerCase();
    const privilege = kind === 'schema' ? 'USAGE' : kind === 'function' ? 'EXECUTE' : 'SELECT';
    const who = quoteIdent(db.source.username);
    return `permission denied for ${kind} ${object} on the source: the ${privilege} privilege of user ${who} was revoked after pre-flight `
      + `checked it; not retried. Fix: GRANT ${privilege} ON ${kind === 'sequence' ? 'SEQUENCE' : kind === 'schema' ? 'SCHEMA' : kind === 'function' ? 'FUNCTION' : 'TABLE'} `
      + `${object} TO ${who}; and run again`;
  }
  return undefined;
}
