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
import { dirname } from 'node:path';
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../spec/runtime-config';
import { configureNetwork, connect, describeEndpoint, releaseNetwork } from './connection';
import { dumpDatabase, removeDumpDir } from './dump';
import { classifyError, humanError } from './errors';
import { quoteIdent } from './sql';
import { ToolAbortedError, ToolTimeoutError, withDeadline } from './exec';
import { Logger } from './log';
import {
  buildPlan, dumpInSnapshotCommand, formatCommand, passwordEnvNames, RUN_TIME_SNAPSHOT, type DatabasePlan, type MigrationPlan, type ToolCommand,
} from './plan';
import { formatPreflightProblem, preflight } from './preflight';
import type { DatabasePreflight, PreflightProblem, PreflightReport } from './preflight';
import {
  decideResume, readDestinationState, readSourceIdentity, type DestinationState, type DumpPoint, type MarkerState,
  type MigrationMarker, type ResumeAction, type SourceIdentity,
} from './marker';
import { DEFAULT_PROGRESS_INTERVAL_MS, directorySize, formatBytes, formatDuration, startTicker } from './progress';
import {
  analyzeDatabase, ensureDestinationDatabase, recordMarker, recreateDestinationDatabase, restoreDatabase,
} from './restore';
import { PhaseError, withRetry } from './retry';
import {
  finishSummary, formatSummaryTable, writeSummaryFiles, type DatabaseResult, type Phase, type RunSummary,
} from './summary';
import { streamDatabase, StreamTimeoutError, type StreamProgress, type StreamResult } from './stream';
import { cancelRunningQuery, verifyDatabase } from './verify';
import { exportSnapshot, releaseSnapshot, tableChecksums, tableRowCounts, withSnapshot, type TableChecksum } from './checksum';
import type { DumpResult, PhaseRunOptions } from './dump';
import { applyDatabaseSettings, readDatabaseSettings } from './database-settings';
import { describeRoleResult, migrateRoles, planRoles } from './roles';

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

type Record_ = (name: string, patch: Partial<DatabaseResult>) => void;

async function execute(plan: MigrationPlan, config: RuntimeConfig, options: RunMigrationOptions, logger: Logger, record: Record_, passwordVars: string[]) {
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

  log.info(`migrating ${describeEndpoint(db.source)} → ${describeEndpoint(db.destination)}${m.mode === 'stream' ? ' (stream mode)' : ''}`);
  try {
    // The source's identity and position just before the snapshot is taken go into the destination's marker.
    let source: SourceIdentity | undefined;
    let dumpPoint: DumpPoint | undefined;
    const readIdentity = async (p: Phase) => {
      ({ identity: source, point: dumpPoint } = await withDeadline('source identity', p, { signal, timeoutMs: (connectTimeoutSeconds + 30) * 1000 },
        () => readSourceIdentity(db.source, env, connectTimeoutSeconds)));
    };

    // The destination: created if needed (or reset when an earlier attempt left it half-restored), then marked
    // `restoring` before anything is written to it.
    const reset = action.kind === 'reset' ? action.marker : undefined;
    let created = false;
    let ensured = false;
    let markWarned = false;
    const restoreLog = log.child({ phase: m.mode === 'stream' ? 'stream' : 'restore' });
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
    const ensureDestination = async () => {
      if (ensured) return;
      if (reset?.created) {
        await recreateDestinationDatabase(db, destOpts, 'created by an earlier attempt, which left it half-restored)');
        created = true;
      } else {
        created = (await ensureDestinationDatabase(db, { ...destOpts, mayCreate: facts?.willCreateDestination ?? false })).created;
      }
      ensured = true;
    };
    // A retry (or the first run into a database an earlier attempt left half-restored but did not create)
    // removes exactly what the failed attempt wrote: a database this run created is dropped and re-created
    // (beforeRetry), any other one is restored with --clean --if-exists.
    let writeRuns = 0;
    const beforeRetry = async () => { if (writeRuns > 0 && created) await recreateDestinationDatabase(db, destOpts); };

    // verify: checksums: the source side is read in the snapshot the data was copied from (kept per attempt),
    // so writes on the source after it are not reported as differences.
    let sourceChecksums: Map<string, TableChecksum> | undefined;
    // Stream mode: each table's exact row count in the stream's snapshot, so verify counts the destination only.
    let sourceRowCounts: ReadonlyMap<string, number> | undefined;

    // migration.roles: the roles the database needs, created on the destination before anything is restored.
    const migrateRolesStep = async () => {
      if (m.roles === 'none') return;
      const rolesLog = log.child({ phase: 'roles' });
      const [res, rolesSeconds] = await timed('roles', () => withRetry(
        () => migrateRoles(config, runtimeDb, env, { binDir: options.binDir ?? (env.PG_BIN || undefined), passwordVars, signal, timeoutMs: m.timeouts.dump * 1000 }),
        { ...retry, phase: 'roles', logger: rolesLog, timeoutSetting: 'migration.timeouts.dump' },
      ));
      for (const line of describeRoleResult(res)) rolesLog[line.level](line.text);
      record(db.name, { rolesCreated: res.created });
      rolesLog.debug(`roles step took ${formatDuration(rolesSeconds)}`);
    };

    if (m.mode === 'stream') {
      await migrateRolesStep();
      // Stream: schema, COPY, post-data, sequences and ANALYZE source to destination; nothing on the dumps volume.
      const budgetSeconds = m.timeouts.dump + m.timeouts.restore;
      restoreLog.info(`streaming with ${m.copy.jobs} COPY worker${m.copy.jobs === 1 ? '' : 's'}; time limit ${formatDuration(budgetSeconds)} `
        + `(timeouts.dump + timeouts.restore; the copy alone at most timeouts.dump, each pg_restore section at most timeouts.restore)`);
      const [streamed, streamSeconds] = await timed('stream', () => withRetry(async () => {
        await readIdentity('stream');
        await ensureDestination();
        await mark('restoring', restoreLog);
        const cleanFirst = (writeRuns > 0 || reset !== undefined) && !created;
        writeRuns++;
        return runStream(runtimeDb, cleanFirst ? withCleanRestore(config) : config, {
          env, binDir: options.binDir ?? env.PG_BIN, signal, log: restoreLog, timeoutMs: budgetSeconds * 1000,
          progressIntervalMs: options.progressIntervalMs,
          onSnapshot: m.verify !== 'checksums' ? undefined : async (snapshot, stop) => {
            sourceChecksums = undefined;
            restoreLog.info(`computing the source checksums (verify: checksums) in the stream's snapshot ${snapshot}, alongside the copy`);
            sourceChecksums = await checksumsInSnapshot(runtimeDb, config, env, snapshot, stop);
          },
        });
      }, { ...retry, phase: 'stream', logger: restoreLog, beforeRetry, timeoutSetting: 'migration.timeouts.dump / migration.timeouts.restore' }));
      sourceRowCounts = streamed.sourceRowCounts;
      record(db.name, { streamSeconds, bytesCopied: streamed.bytes, rowsCopied: streamed.rows });
      restoreLog.ok(`streamed ${streamed.tables} tables, ${streamed.rows} rows, ${formatBytes(streamed.bytes)} in ${formatDuration(streamSeconds)} `
        + `(pre-data ${formatDuration(streamed.seconds.preData)}, copy ${formatDuration(streamed.seconds.copy)}, post-data ${formatDuration(streamed.seconds.postData)}`
        + `${writeRuns > 1 ? `, ${writeRuns} attempts` : ''}); ANALYZE done by the stream`);
    } else {
      // Dump: every attempt starts from an empty directory.
      const [dump, dumpSeconds] = await timed('dump', () => withRetry(
        async () => {
          await readIdentity('dump');
          const dumpOpts = { ...phaseOpts('dump'), timeoutMs: m.timeouts.dump * 1000, databaseBytes: facts?.sourceSizeBytes };
          if (!db.dumpInSnapshot) return dumpDatabase(db, dumpOpts);
          const res = await dumpWithSourceFacts(db, runtimeDb, config, dumpOpts);
          sourceChecksums = res.checksums;
          sourceRowCounts = res.rowCounts;
          return res;
        },
        {
          ...retry, phase: 'dump', logger: log.child({ phase: 'dump' }),
          ...(db.dumpInSnapshot ? { timeoutSetting: `migration.timeouts.dump (pg_dump) or migration.timeouts.verify (source ${m.verify === 'checksums' ? 'checksums' : 'row counts'})` } : {}),
        },
      ));
      record(db.name, { dumpSeconds, dumpBytes: dump.bytes });
      log.child({ phase: 'dump' }).ok(`dumped ${formatBytes(dump.bytes)} in ${formatDuration(dumpSeconds)}`);
      await migrateRolesStep();

      // Restore: the planned command first; a later one (or the first into a database an earlier attempt left
      // half-restored but did not create) with --clean --if-exists.
      const [restored, restoreSeconds] = await timed('restore', () => withRetry(async () => {
        await ensureDestination();
        // Before the first statement of the restore: from here on a re-run recognizes a half-restore as ours.
        await mark('restoring', restoreLog);
        const cleanFirst = (writeRuns > 0 || reset !== undefined) && !created;
        writeRuns++;
        return restoreDatabase(db, { ...phaseOpts('restore'), timeoutMs: m.timeouts.restore * 1000, cleanFirst });
      }, { ...retry, phase: 'restore', logger: restoreLog, beforeRetry }));
      record(db.name, { restoreSeconds });
      restoreLog.ok(`restored in ${formatDuration(restoreSeconds)} (${restored.totalItems} items in the dump${writeRuns > 1 ? `, ${writeRuns} attempts` : ''})`);

      const [analyzed, analyzeSeconds] = await timed('analyze', () => withRetry(
        () => analyzeDatabase(db, { ...destOpts, logger: log.child({ phase: 'analyze' }), jobs: m.restore.jobs }),
        { ...retry, phase: 'analyze', logger: log.child({ phase: 'analyze' }), timeoutSetting: 'migration.timeouts.restore' },
      ));
      record(db.name, { analyzeSeconds });
      log.child({ phase: 'analyze' }).ok(`analyzed ${analyzed.tables} tables and materialized views (system catalogs included), `
        + `${Math.min(m.restore.jobs, Math.max(1, analyzed.tables))} at a time, in ${formatDuration(analyzeSeconds)}`);
    }

    if (m.verify !== 'none') {
      const verifyLog = log.child({ phase: 'verify' });
      const [v, verifySeconds] = await timed('verify', () => withRetry(async () => {
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
        ...retry, phase: 'verify', logger: verifyLog,
        classify: (err) => (err instanceof VerificationFailed ? { transient: false, reason: 'differences found' } : classifyError(err)),
      }));
      record(db.name, {
        verifySeconds, rowsVerified: v.rowsVerified, tables: v.tables, objectsVerified: v.objects,
        ...(m.verify === 'checksums' ? { tablesChecksummed: v.checksummed } : {}),
      });
      const snapshotName = m.mode === 'stream' ? "stream's" : "dump's";
      const checksummed = m.verify === 'checksums'
        ? `, ${v.checksummed} tables checksummed (source side ${sourceChecksums ? `in the ${snapshotName} snapshot` : 'live'})`
        : ` (source rows ${sourceRowCounts ? `counted in the ${snapshotName} snapshot` : 'counted live'})`;
      verifyLog.ok(`verified (${m.verify}): ${v.tables} tables, ${v.rowsVerified} rows${v.sequences !== undefined ? `, ${v.sequences} sequences` : ''} match; `
        + `${v.objects} inventory objects compared${checksummed}, in ${formatDuration(verifySeconds)}`);
    } else {
      log.child({ phase: 'verify' }).warn('verification skipped (migration.verify: none)');
    }
    // Complete: a re-run skips it. If this cannot be recorded, a re-run redoes it (safe, only slower).
    const verifyLog = log.child({ phase: 'verify' });
    await withRetry(() => mark('verified', verifyLog), { ...retry, phase: 'verify', logger: verifyLog }).catch((err: unknown) => {
      if (signal?.aborted) throw err;
      verifyLog.warn(`cannot mark database "${db.destination.database}" verified (${humanError(err instanceof PhaseError ? err.cause : err)}): a re-run will migrate it again`);
    });
    // Database-level settings (ALTER DATABASE / ROLE IN DATABASE SET, grants on the database, owner) once the copy
    // is verified and marked: the owner may change, after which the marker could no longer be written. The
    // comment is never carried: it holds the marker. Whatever the destination user may not do (or what names a
    // role that does not exist there, with roles: none) is logged with its SQL; it never fails the database.
    await carryDatabaseSettings(db, runtimeDb, config, env, log.child({ phase: 'settings' }));
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

/**
 * Dump mode with verification: exports a snapshot on the source, runs pg_dump in it (--snapshot) and meanwhile
 * reads the source side of verify in it on a session of its own (row counts for verify: counts, checksums for
 * verify: checksums), so verify compares the destination with exactly what was dumped: writes on the source
 * during the migration are not reported as loss. The snapshot is released when both are done; the source side
 * may take at most timeouts.verify.
 */
async function dumpWithSourceFacts(
  db: DatabasePlan, runtimeDb: RuntimeDatabase, config: RuntimeConfig, opts: PhaseRunOptions & { readonly databaseBytes?: number },
): Promise<DumpResult & { checksums?: Map<string, TableChecksum>; rowCounts?: Map<string, number> }> {
  const m = config.migration;
  const { env, signal, logger } = opts;
  const what = m.verify === 'checksums' ? 'checksums' : 'row counts';
  const holder = await connect(db.source, env, { readOnly: true, connectTimeoutSeconds: m.timeouts.connect, applicationName: 'db-migration snapshot' });
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const started = Date.now();
  try {
    await holder.query('SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0');
    const snapshot = await exportSnapshot(holder);
    logger.info(`source snapshot ${snapshot} exported: pg_dump runs in it (--snapshot), and the source ${what} (verify: ${m.verify}) are read in it meanwhile`);
    timer = setTimeout(() => { timedOut = true; stop.abort(); }, m.timeouts.verify * 1000);
    const selection = { schemas: m.dump.schemas, excludeSchemas: m.dump.excludeSchemas };
    type Facts = { checksums?: Map<string, TableChecksum>; rowCounts?: Map<string, number> };
    const facts = inSourceSnapshot<Facts>(runtimeDb, config, env, snapshot, stop.signal, `db-migration ${m.verify}`, async (client) => (m.verify === 'checksums'
      ? { checksums: await tableChecksums(client, selection) }
      : { rowCounts: await tableRowCounts(client, selection) }));
    facts.catch(() => undefined);
    let dump: DumpResult;
    try {
      dump = await dumpDatabase(db, { ...opts, snapshot });
    } catch (err) {
      stop.abort();
      await facts.catch(() => undefined);
      throw err;
    }
    let read: Facts;
    try {
      read = await facts;
    } catch (err) {
      if (signal?.aborted) throw new ToolAbortedError(`source ${what}`, [], Date.now() - started);
      if (timedOut) throw new ToolTimeoutError(`source ${what}`, 'dump', m.timeouts.verify * 1000, [], Date.now() - started);
      throw err;
    }
    await releaseSnapshot(holder);
    logger.info(`source ${what} of ${(read.checksums ?? read.rowCounts)!.size} tables taken in snapshot ${snapshot}; snapshot released`);
    return { ...dump, ...read };
  } finally {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    await holder.end().catch(() => undefined);
  }
}

/** Checksums of the source tables verify compares (its schema selection), read in `snapshot` (see inSourceSnapshot). */
async function checksumsInSnapshot(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, snapshot: string, stop: AbortSignal,
): Promise<Map<string, TableChecksum>> {
  const m = config.migration;
  return inSourceSnapshot(db, config, env, snapshot, stop, 'db-migration checksums',
    (client) => tableChecksums(client, { schemas: m.dump.schemas, excludeSchemas: m.dump.excludeSchemas }));
}

/**
 * Runs `read` on a source session of its own that imports `snapshot`. Aborting `stop` cancels the running
 * query and ends the session.
 */
async function inSourceSnapshot<T>(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, snapshot: string, stop: AbortSignal, applicationName: string,
  read: (client: Client) => Promise<T>,
): Promise<T> {
  const client = await connect(db.source, env, { readOnly: true, connectTimeoutSeconds: config.migration.timeouts.connect, applicationName });
  let stopping: Promise<void> | undefined;
  const onStop = () => {
    stopping = cancelRunningQuery(client, db.source).then(() => client.end()).catch(() => undefined);
  };
  if (stop.aborted) onStop(); else stop.addEventListener('abort', onStop, { once: true });
  try {
    if (stop.aborted) throw new Error('stopped');
    await client.query('SET statement_timeout = 0');
    return await withSnapshot(client, snapshot, () => read(client));
  } finally {
    stop.removeEventListener('abort', onStop);
    if (stopping) await stopping;
    await client.end().catch(() => undefined);
  }
}

/**
 * Reads the source database's settings, grants and owner and applies them to the destination database
 * (database-settings.ts). Never fails the database: it is migrated and verified already; what could not be
 * applied is logged with the SQL for an administrator.
 */
async function carryDatabaseSettings(db: DatabasePlan, runtimeDb: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, log: Logger): Promise<void> {
  const m = config.migration;
  const connectTimeoutSeconds = m.timeouts.connect;
  try {
    const src = await connect(runtimeDb.source, env, { readOnly: true, connectTimeoutSeconds });
    let settings;
    try {
      settings = await readDatabaseSettings(src, runtimeDb.source.database);
    } finally {
      await src.end().catch(() => undefined);
    }
    const dst = await connect({ ...runtimeDb.destination, database: 'postgres' }, env, { readOnly: false, connectTimeoutSeconds })
      .catch(() => connect(runtimeDb.destination, env, { readOnly: false, connectTimeoutSeconds }));
    try {
      const res = await applyDatabaseSettings(dst, db.destination.database, settings, { carryOwner: !m.restore.noOwner, carryComment: false });
      for (const sql of res.applied) log.info(`applied: ${sql}`);
      for (const w of res.warnings) log.warn(`${w.message}\n  fix: ${w.sql.replace(/\n/g, '\n  ')}`);
      for (const d of res.deferred) log.warn(`${d.message}; after the migration: ${d.sql}`);
      log.ok(`database settings: ${res.applied.length} applied, ${res.unchanged.length} already in place, ${res.warnings.length} not applied`);
    } finally {
      await dst.end().catch(() => undefined);
    }
  } catch (err) {
    log.warn(`database settings (ALTER DATABASE/ROLE ... SET, grants, owner) not carried: ${humanError(err)}`);
  }
}

/** The config with restore.clean on: a stream retry into a database this run did not create starts clean. */
function withCleanRestore(config: RuntimeConfig): RuntimeConfig {
  const m = config.migration;
  return { ...config, migration: { ...m, restore: { ...m.restore, clean: true } } };
}

/**
 * One stream attempt under the phase's time limit, with progress lines every interval. Timeouts (the budget,
 * or a limit inside the engine) come out as ToolTimeoutError and interruptions as ToolAbortedError, like a
 * tool's, so retries and failure messages treat both modes alike. Settles only after the engine has closed
 * every session and stopped every child.
 */
async function runStream(db: RuntimeDatabase, config: RuntimeConfig, opts: {
  env: NodeJS.ProcessEnv; binDir?: string; signal?: AbortSignal; log: Logger; timeoutMs: number; progressIntervalMs?: number;
  onSnapshot?: (snapshot: string, signal: AbortSignal) => Promise<void>;
}): Promise<StreamResult> {
  const { log, signal } = opts;
  const started = Date.now();
  const controller = new AbortController();
  const onAbort = () => controller.abort();
  if (signal?.aborted) controller.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; controller.abort(); }, opts.timeoutMs);
  let latest: StreamProgress | undefined;
  const ticker = startTicker(log, opts.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS,
    () => streamProgressMessage(latest, (Date.now() - started) / 1000));
  try {
    return await streamDatabase(db, config, {
      env: opts.env,
      binDir: opts.binDir || undefined,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase !== latest?.phase) log.info(`${p.phase}${p.phase === 'copy' ? ` (${p.tablesTotal} tables)` : ''}`);
        latest = p;
      },
      // One line per table would flood the log of a database with thousands of tables: those are debug lines.
      log: (level, msg) => (level === 'warn' ? log.warn(msg) : msg.startsWith('copied ') ? log.debug(msg) : log.info(msg)),
      onSnapshot: opts.onSnapshot,
    });
  } catch (err) {
    const elapsed = Date.now() - started;
    if (signal?.aborted) throw new ToolAbortedError('stream', [], elapsed);
    if (timedOut) throw new ToolTimeoutError('stream', 'stream', opts.timeoutMs, [], elapsed);
    if (err instanceof StreamTimeoutError) throw new ToolTimeoutError('stream', err.phase, err.timeoutSeconds * 1000, [], elapsed);
    throw err;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    ticker.stop();
  }
}

export function streamProgressMessage(p: StreamProgress | undefined, elapsedSeconds: number): string {
  if (!p) return `streaming: starting, ${formatDuration(elapsedSeconds)} elapsed`;
  return `streaming (${p.phase}): ${p.tablesDone}/${p.tablesTotal} tables, ${formatBytes(p.bytesCopied)}, ${p.rowsCopied} rows copied, `
    + `${formatDuration(elapsedSeconds)} elapsed`;
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
