/**
 * One database's migration as the phases see it: its plan, its connections' settings, its logger, and what
 * earlier phases of this attempt recorded (the source's identity, whether this run created the destination,
 * the source side of verification). Each phase module takes a DatabaseRun and does one thing with it.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import type { TableChecksum } from '../checks/checksum';
import type { PhaseRunOptions } from '../dump-restore/pg-dump';
import { withDeadline } from '../postgres/exec';
import type { Logger } from '../report/log';
import {
  readSourceIdentity, type DumpPoint, type MarkerState, type MigrationMarker, type ResumeAction, type SourceIdentity,
} from '../checks/progress-marker';
import type { RunMigrationOptions } from '../run-options';
import type { DatabasePlan } from '../plan';
import type { DatabasePreflight } from '../checks/preflight/checks';
import { ensureDestinationDatabase, recordMarker, recreateDestinationDatabase, type DestinationOptions } from '../dump-restore/pg-restore';
import type { RetryPolicy } from '../postgres/retry';
import type { DatabaseResult, Phase } from '../report/summary';
import type { OnlineCoordinator } from '../online/coordinator';

/** Records part of a database's result for the summary (errors are redacted). */
export type RecordResult = (name: string, patch: Partial<DatabaseResult>) => void;

export interface DatabaseRunProps {
  /** The database's plan: its endpoints, commands and dump directory. */
  readonly db: DatabasePlan;
  /** The database as the runtime config gives it (what the stream engine, verify and roles read). */
  readonly runtimeDb: RuntimeDatabase;
  /** What pre-flight found on the database. @default - nothing known (no size, the destination is not created) */
  readonly facts?: DatabasePreflight;
  /** What to do with what an earlier attempt left on the destination (fresh, or reset). */
  readonly action: ResumeAction;
  readonly config: RuntimeConfig;
  /** The run's options: env (passwords), signal, binDir, progressIntervalMs, resume. */
  readonly options: RunMigrationOptions;
  /** Logger carrying the database. */
  readonly logger: Logger;
  /** Records a result field of any database (this one's through DatabaseRun.record). */
  readonly record: RecordResult;
  /** Every password variable of the config, kept out of the tools' environments but for their own. */
  readonly passwordVars: string[];
  /** Databases migrated at once (they share the dumps volume). @default 1 */
  readonly parallel?: number;
  /** Online mode: the run's coordinator of copies and cutovers. @default - not online mode */
  readonly online?: OnlineCoordinator;
}

/** A database's migration in progress: what the phases share, and the steps several of them take. */
export class DatabaseRun {
  readonly db: DatabasePlan;
  readonly runtimeDb: RuntimeDatabase;
  /** @default - nothing known (pre-flight has no facts on the database) */
  readonly facts: DatabasePreflight | undefined;
  readonly action: ResumeAction;
  readonly config: RuntimeConfig;
  readonly options: RunMigrationOptions;
  /** The environment holding the passwords (options.env). */
  readonly env: NodeJS.ProcessEnv;
  /** Aborting stops the running phase (options.signal). @default - never aborted */
  readonly signal: AbortSignal | undefined;
  /** Logger carrying the database. */
  readonly log: Logger;
  /** Online mode: the run's coordinator of copies and cutovers. @default - not online mode */
  readonly online: OnlineCoordinator | undefined;
  readonly passwordVars: string[];
  /** @default 1 */
  readonly parallel: number;
  /** migration.timeouts.connect, in seconds. */
  readonly connectTimeoutSeconds: number;
  /** The retry policy of every phase (migration.retries), for withRetry with the phase's own options. */
  readonly retry: RetryPolicy & { readonly database: string; readonly signal?: AbortSignal };
  /** Logger of the phase that writes to the destination: `stream` in stream mode, `replicate` in online mode, else `restore`. */
  readonly restoreLog: Logger;
  /** Options of the destination's create, reset, marker and ANALYZE: within timeouts.restore. */
  readonly destOpts: DestinationOptions & { readonly timeoutMs: number };
  /** The marker an earlier attempt left on a half-restored destination. @default - none (a fresh destination) */
  readonly reset: MigrationMarker | undefined;

  /** The phase running, named in the failure report when the error does not name one. @default 'dump' */
  phase: Phase = 'dump';
  /** The source's identity just before the snapshot is taken (readIdentity): it goes into the marker. @default - not read yet */
  source: SourceIdentity | undefined;
  /** The source's time and WAL position just before the snapshot is taken (readIdentity). @default - not read yet */
  dumpPoint: DumpPoint | undefined;
  /** Whether this run created the destination database (ensureDestination). @default false */
  created = false;
  /** Attempts that wrote to the destination (restore or stream); a retry after one cleans up first. @default 0 */
  writeRuns = 0;
  /**
   * verify: checksums: the source side read in the snapshot the data was copied from (kept per attempt), so
   * writes on the source after it are not reported as differences. @default - read live by verify
   */
  sourceChecksums: Map<string, TableChecksum> | undefined;
  /** Each table's exact row count in the dump's or stream's snapshot, so verify counts the destination only. @default - counted live */
  sourceRowCounts: ReadonlyMap<string, number> | undefined;

  private readonly recordResult: RecordResult;
  private ensured = false;
  private markWarned = false;

  constructor(props: DatabaseRunProps) {
    this.db = props.db;
    this.runtimeDb = props.runtimeDb;
    this.facts = props.facts;
    this.action = props.action;
    this.config = props.config;
    this.options = props.options;
    this.env = props.options.env;
    this.signal = props.options.signal;
    this.log = props.logger;
    this.online = props.online;
    this.recordResult = props.record;
    this.passwordVars = props.passwordVars;
    this.parallel = props.parallel ?? 1;
    const m = props.config.migration;
    this.connectTimeoutSeconds = m.timeouts.connect;
    this.retry = { attempts: m.retries.attempts, delaySeconds: m.retries.delaySeconds, database: props.db.name, signal: this.signal };
    this.restoreLog = props.logger.child({ phase: m.mode === 'stream' ? 'stream' : m.mode === 'online' ? 'replicate' : 'restore' });
    this.destOpts = {
      env: this.env, connectTimeoutSeconds: this.connectTimeoutSeconds, logger: this.restoreLog, signal: this.signal, timeoutMs: m.timeouts.restore * 1000,
    };
    this.reset = props.action.kind === 'reset' || props.action.kind === 'continue' ? props.action.marker : undefined;
  }

  /** config.migration. */
  get migration(): RuntimeConfig['migration'] {
    return this.config.migration;
  }

  /** Records part of this database's result. */
  record(patch: Partial<DatabaseResult>): void {
    this.recordResult(this.db.name, patch);
  }

  /** A logger carrying the database and `phase`. */
  phaseLog(phase: Phase): Logger {
    return this.log.child({ phase });
  }

  /** What a tool of `phase` runs with (dump-restore/pg-dump.ts, pg-restore.ts), but for its time limit. */
  phaseOptions(phase: Phase): Omit<PhaseRunOptions, 'timeoutMs'> {
    return { env: this.env, passwordVars: this.passwordVars, logger: this.phaseLog(phase), signal: this.signal, progressIntervalMs: this.options.progressIntervalMs };
  }

  /** Runs `work` as the current phase `p`, and says how long it took (seconds). */
  async timed<T>(p: Phase, work: () => Promise<T>): Promise<[T, number]> {
    this.phase = p;
    const started = Date.now();
    const value = await work();
    return [value, (Date.now() - started) / 1000];
  }

  /** Reads the source's identity and position just before the snapshot is taken: they go into the destination's marker. */
  async readIdentity(p: Phase): Promise<void> {
    const connectTimeoutSeconds = this.connectTimeoutSeconds;
    ({ identity: this.source, point: this.dumpPoint } = await withDeadline('source identity', p, { signal: this.signal, timeoutMs: (connectTimeoutSeconds + 30) * 1000 },
      () => readSourceIdentity(this.db.source, this.env, connectTimeoutSeconds)));
  }

  /**
   * Marks the destination database `state` (in its comment). When it cannot, warns once: a re-run would then
   * refuse the half-filled database.
   */
  async mark(state: MarkerState, l: Logger): Promise<void> {
    const { db, config } = this;
    const marker: MigrationMarker = {
      v: 1, state, migration: config.name, database: db.name, created: this.created, source: this.source!, ...(this.dumpPoint ? { dump: this.dumpPoint } : {}),
      ...(state === 'verified' ? { verify: this.migration.verify } : {}), updatedAt: new Date().toISOString(),
    };
    if (await recordMarker(db, marker, { ...this.destOpts, logger: l })) {
      l.debug(`marked database "${db.destination.database}" ${state} on the destination`);
    } else if (!this.markWarned) {
      this.markWarned = true;
      l.warn(`cannot record progress on database "${db.destination.database}" (not owned by ${db.destination.username}, or it has `
        + 'a comment of its own): if this run is interrupted, a re-run will refuse the half-filled database');
    }
  }

  /**
   * The destination: created if needed (or reset when an earlier attempt left it half-restored), once per run;
   * the caller then marks it `restoring` before anything is written to it.
   */
  async ensureDestination(): Promise<void> {
    if (this.ensured) return;
    if (this.reset?.created) {
      await recreateDestinationDatabase(this.db, this.destOpts, 'created by an earlier attempt, which left it half-restored)');
      this.created = true;
    } else {
      this.created = (await ensureDestinationDatabase(this.db, { ...this.destOpts, mayCreate: this.facts?.willCreateDestination ?? false })).created;
    }
    this.ensured = true;
  }

  /**
   * Whether the next write attempt restores with --clean --if-exists: a retry, or the first run into a database
   * an earlier attempt left half-restored, when this run did not create the database (beforeRetry re-created it).
   * Counts the attempt.
   */
  startWriteAttempt(): boolean {
    const cleanFirst = (this.writeRuns > 0 || this.reset !== undefined) && !this.created;
    this.writeRuns++;
    return cleanFirst;
  }

  /**
   * A retry (or the first run into a database an earlier attempt left half-restored but did not create)
   * removes exactly what the failed attempt wrote: a database this run created is dropped and re-created
   * (beforeRetry), any other one is restored with --clean --if-exists (startWriteAttempt).
   */
  readonly beforeRetry = async (): Promise<void> => {
    if (this.writeRuns > 0 && this.created) await recreateDestinationDatabase(this.db, this.destOpts);
  };
}
