/**
 * The migration, phase by phase: plan, pre-flight every enabled database (any error stops the run before a
 * single dump), read what earlier attempts recorded on the destination (marker.ts: skip, reset or refuse),
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
import type { RuntimeConfig } from '../spec/runtime-config';
import { configureNetwork, connect, describeEndpoint, releaseNetwork } from './connection';
import { humanError } from './errors';
import { withDeadline } from './exec';
import { Logger } from './log';
import {
  buildPlan, dumpInSnapshotCommand, formatCommand, passwordEnvNames, RUN_TIME_SNAPSHOT, type DatabasePlan, type MigrationPlan, type ToolCommand,
} from './plan';
import { formatPreflightProblem, preflight } from './preflight';
import type { DatabasePreflight, PreflightProblem, PreflightReport } from './preflight';
import { decideResume, readDestinationState, readSourceIdentity, type DestinationState, type ResumeAction } from './marker';
import { formatBytes, formatDuration } from './progress';
import { finishSummary, formatSummaryTable, writeSummaryFiles, type DatabaseResult, type RunSummary } from './summary';
import { planRoles } from './roles';
import { DatabaseRun, type RecordResult } from './phases/context';
import { migrateDatabase } from './phases/modes';

export { streamProgressMessage } from './phases/stream';

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
  const { env, signal } = options;

  // 1. Pre-flight, every enabled database, before anything moves.
  const pfLog = logger.child({ phase: 'preflight' });
  let report: PreflightReport;
  const preflightStarted = Date.now();
  try {
    report = await withDeadline('preflight', 'preflight', { signal }, () => preflight(config, env, { binDir: plan.binDir }));
    // How long the checks took: their catalog round trips show on a slow link.
    pfLog.info(`pre-flight checks took ${formatDuration((Date.now() - preflightStarted) / 1000)}`);
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
    if (config.migration.roles !== 'none') await printRolePlans(plan, config, env, logger);
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
      await migrateDatabase(new DatabaseRun({
        db, runtimeDb, facts: facts.get(db.name), action: actions.get(db.name)!, config, options,
        logger: logger.child({ database: db.name }), record, passwordVars, parallel: workers,
      }));
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

/** A pre-flight problem as log lines; the logger adds the icon and the database, so the formatter's are dropped. */
function logProblem(p: PreflightProblem, log: Logger): void {
  formatPreflightProblem(p).forEach((line, i) => {
    const text = i === 0 ? line.replace(/^\S+ [^:]+: /, '') : line;
    if (p.severity === 'error') log.error(text); else log.warn(text);
  });
}

function logPlan(plan: MigrationPlan, logger: Logger, env: NodeJS.ProcessEnv): void {
  const log = logger.child({ phase: 'plan' });
  // Which node runs the runner: the Job's entrypoint says where it came from (the image, or image.runtime's copy).
  log.info(`node ${process.version} ${env.DBM_NODE_SOURCE || `(${process.execPath})`}`);
  const o = plan.options;
  log.info(`${plan.dryRun ? 'dry run' : 'migration'} "${plan.name}": ${plan.databases.length} database${plan.databases.length === 1 ? '' : 's'} `
    + `(${plan.databases.map((d) => d.name).join(', ') || 'none'})${plan.skipped.length ? `, skipped: ${plan.skipped.join(', ')}` : ''}`);
  log.info(`dump jobs ${o.dump.jobs}, compression ${o.dump.compression}; restore jobs ${o.restore.jobs}${o.restore.clean ? ', clean' : ''}; `
    + `verify ${o.verify}; timeouts dump ${o.timeouts.dump}s, restore ${o.timeouts.restore}s, verify ${o.timeouts.verify}s; `
    + `${o.retries.attempts} attempts, first retry after ${o.retries.delaySeconds}s; tools from ${plan.binDir ?? 'PATH'}`);
  if (o.mode === 'stream') log.info(`mode stream: ${o.copy.jobs} COPY workers per database, nothing on the dumps volume`);
  for (const db of plan.databases) {
    for (const [what, cmd] of planCommands(db)) log.child({ database: db.name }).debug(`${what}: ${formatCommand(cmd)}`);
  }
}

/** Dry run with migration.roles: the roles each database needs, and why. */
async function printRolePlans(plan: MigrationPlan, config: RuntimeConfig, env: NodeJS.ProcessEnv, logger: Logger): Promise<void> {
  for (const db of plan.databases) {
    const l = logger.child({ phase: 'dry-run', database: db.name });
    try {
      const rp = await planRoles(config, config.databases.find((d) => d.name === db.name)!, env);
      l.info(`roles (${rp.mode}): ${rp.roles.length} would be made sure to exist on the destination (existing ones left as is)`
        + `${rp.roles.length ? `: ${rp.roles.map((r) => `${r.name} (${r.reasons.join(', ')}${r.memberOf ? ` of ${r.memberOf.join(', ')}` : ''})`).join('; ')}` : ''}`);
      for (const x of rp.excluded) l.info(`role ${x.name} left out: ${x.reason}`);
      l.info('then, after verification: the database\'s settings, grants and owner (never its comment)');
    } catch (err) {
      l.warn(`cannot plan the roles: ${humanError(err)}`);
    }
  }
}

/** The commands a database's migration runs, as the dry run and the plan log show them. */
function planCommands(db: DatabasePlan): Array<[string, ToolCommand]> {
  if (db.stream) return [['schema dump', db.stream.schemaDump], ['pre-data', db.stream.preData], ['post-data', db.stream.postData]];
  return [['dump', db.dumpInSnapshot ? dumpInSnapshotCommand(db.dump, RUN_TIME_SNAPSHOT) : db.dump], ['restore', db.restore]];
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
    if (db.stream) {
      l.info(`would stream: export a snapshot on the source, and in it dump the schema (pre-data and post-data sections) to ${dirname(db.stream.schemaDump.args.find((a) => a.startsWith('--file='))!.slice(7))}:`);
      l.info(`would run: ${formatCommand(db.stream.schemaDump)}`);
      l.info(`would run: ${formatCommand(db.stream.preData)}`);
      l.info(`then: COPY every table source → destination in the snapshot, ${plan.options.copy.jobs} at a time, largest first (large objects too); `
        + `each table's indexes and primary key, unique and exclusion constraints are restored as soon as it is loaded (pg_restore --section=post-data --use-list=<its entries>)`);
      l.info(`then the rest of post-data (foreign keys, triggers, policies, ...): ${formatCommand(db.stream.postData)}`);
      l.info(`then: set sequences to the snapshot's values; ANALYZE; verify ${db.verify}; nothing is written to the dumps volume`);
    } else {
      for (const [, cmd] of planCommands(db)) l.info(`would run: ${formatCommand(cmd)}`);
      l.info(`then: ANALYZE; verify ${db.verify}; remove ${db.dumpDir}`);
    }
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
