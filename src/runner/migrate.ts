/**
 * The migration, phase by phase: plan, pre-flight every enabled database (any error stops the run before a
 * single dump), read what earlier attempts recorded on the destination (checks/progress-marker.ts: skip, reset or refuse),
 * then per database dump → restore → ANALYZE → verify → remove the dump, `migration.parallelDatabases` at a
 * time. Each phase has its own time limit, retries of transient failures, and a failure report naming the
 * database and the phase. The summary is built from what each phase recorded, in spec order.
 *
 * This module orchestrates; the phases live in phases/ (one module each, over one DatabaseRun per database),
 * and a mode is a short list of them (phases/modes.ts).
 *
 * Safe re-runs: a Job pod can die at any moment and its replacement starts with empty volumes. Before its
 * restore a database is marked `restoring` on the destination, after verification `verified`; a new attempt
 * skips verified databases, resets half-restored ones and never touches anything it did not fill.
 */
import { dirname } from 'node:path';
import { CONTAINER_PATHS, type RuntimeConfig } from '../spec/runtime-config';
import { configureNetwork, releaseNetwork } from './postgres/connection';
import { humanError } from './postgres/errors';
import { Logger } from './report/log';
import type { ResumeAction } from './checks/progress-marker';
import { buildPlan, passwordEnvNames, type DatabasePlan, type MigrationPlan } from './plan';
import type { DatabasePreflight } from './checks/preflight/checks';
import { DEFAULT_PROGRESS_INTERVAL_MS, formatBytes, RunProgress, startTicker } from './report/progress';
import { finishSummary, formatSummaryTable, writeSummaryFiles, type DatabaseResult, type RunSummary } from './report/summary';
import { DatabaseRun, type RecordResult } from './phases/context';
import { logPlan, printDryRun, printRolePlans } from './phases/dry-run';
import { migrateDatabase } from './phases/modes';
import { preflightDatabases } from './phases/preflight';
import { OnlineCoordinator } from './online/coordinator';
import type { RunMigrationOptions } from './run-options';

export { streamProgressLine } from './phases/stream';

export type { RunMigrationOptions } from './run-options';

export async function runMigration(config: RuntimeConfig, options: RunMigrationOptions): Promise<RunSummary> {
  const startedAt = new Date();
  const { env, signal } = options;
  // Every connection from here on: keepalives and a bound on unacknowledged data (migration.timeouts.network).
  configureNetwork(config.migration.timeouts.network, config.paths.tmp);
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
    logPlan(plan, logger, env);
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
  } finally {
    // The runner removes what it created: the libpq service file in the tmp directory.
    releaseNetwork();
  }

  const summary = finishSummary({ name: config.name, dryRun: plan?.dryRun ?? config.migration.dryRun, startedAt }, [...results.values()]);
  if (signal?.aborted && !summary.interrupted) summary.interrupted = true;
  reportSummary(summary, config, logger);
  logger.close();
  return summary;
}

async function execute(plan: MigrationPlan, config: RuntimeConfig, options: RunMigrationOptions, logger: Logger, record: RecordResult, passwordVars: string[]) {
  const { env } = options;
  // 1 and 2. Pre-flight, and what earlier attempts left on the destination; any problem stops the run here.
  const checked = await preflightDatabases(plan, config, options, logger, record);
  if (!checked) return;
  const { facts, actions } = checked;

  // 3. Dry run: show exactly what would run, and stop.
  if (plan.dryRun) {
    printDryRun(plan, facts, actions, logger);
    if (config.migration.roles !== 'none') await printRolePlans(plan, config, env, logger);
    for (const db of plan.databases) record(db.name, { status: 'dry-run' });
    return;
  }

  await migrateDatabases(plan, facts, actions, config, options, logger, record, passwordVars);
}

/** 4. The databases, `parallelDatabases` at a time, taken in spec order (the summary keeps that order). */
async function migrateDatabases(
  plan: MigrationPlan, facts: Map<string, DatabasePreflight>, actions: Map<string, ResumeAction>, config: RuntimeConfig,
  options: RunMigrationOptions, logger: Logger, record: RecordResult, passwordVars: string[],
): Promise<void> {
  const { signal } = options;
  const queue: DatabasePlan[] = [];
  for (const db of plan.databases) {
    const a = actions.get(db.name)!;
    if (a.kind === 'skip') record(db.name, { status: 'skipped', reason: a.reason });
    else queue.push(db);
  }
  // Online mode replicates every database at once until the cutover; its copies take parallelDatabases slots.
  const online = config.migration.mode === 'online' && queue.length > 0
    ? new OnlineCoordinator(config, queue.map((d) => d.name), logger.child({ phase: 'replicate' }), cutoverHint(config)) : undefined;
  const workers = online ? queue.length : Math.max(1, Math.min(config.migration.parallelDatabases, queue.length));
  if (workers > 1 && !online) warnSharedDumpVolume(queue, facts, config, workers, logger.child({ phase: 'plan' }));
  // A line for the whole run while more than one database is left (online mode replicates until the cutover: no end to estimate).
  const runProgress = !online && queue.length > 1
    ? new RunProgress(queue.map((d) => ({ name: d.name, bytes: facts.get(d.name)?.sourceSizeBytes }))) : undefined;
  const runTicker = runProgress
    && startTicker(logger.child({ phase: 'run' }), options.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, () => runProgress.line());
  const dbOptions: RunMigrationOptions = runProgress ? { ...options, runProgress } : options;
  let next = 0;
  const worker = async () => {
    while (next < queue.length && !signal?.aborted) {
      const db = queue[next++];
      const runtimeDb = config.databases.find((d) => d.name === db.name)!;
      await migrateDatabase(new DatabaseRun({
        db, runtimeDb, facts: facts.get(db.name), action: actions.get(db.name)!, config, options: dbOptions,
        logger: logger.child({ database: db.name }), record, passwordVars, parallel: workers, online,
      }));
      runProgress?.finish(db.name);
    }
  };
  await online?.start();
  try {
    await Promise.all(Array.from({ length: workers }, worker));
  } finally {
    runTicker?.stop();
    await online?.stop(signal);
  }
}

/** How the operator asks for the cutover: in the Job, or on the workstation that runs `migrate --work-dir`. */
function cutoverHint(config: RuntimeConfig): string {
  if (config.paths.logs === CONTAINER_PATHS.logs) {
    return `Cut over with: kubectl -n ${config.namespace} exec job/${config.name} -- sh ${CONTAINER_PATHS.runnerDir}/cutover.sh`;
  }
  return `Cut over with: db-migration cutover --work-dir ${dirname(config.paths.logs)}`;
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

function reportSummary(summary: RunSummary, config: RuntimeConfig, logger: Logger): void {
  if (logger.format === 'text') logger.raw(`\n${formatSummaryTable(summary)}\n`);
  else logger.info('summary', { ok: summary.ok, dryRun: summary.dryRun, ...summary.totals, seconds: summary.durationSeconds, ...(summary.writePauseSeconds !== undefined ? { writePauseSeconds: summary.writePauseSeconds } : {}) });
  const files = writeSummaryFiles(summary, { logs: config.paths.logs, terminationLog: config.paths.terminationLog }, logger.secrets);
  for (const f of files.failures) {
    // No /dev/termination-log on a workstation: not worth a warning.
    if (config.paths.terminationLog && f.startsWith(config.paths.terminationLog)) logger.debug(`cannot write ${f}`);
    else logger.warn(`cannot write ${f}`);
  }
}
