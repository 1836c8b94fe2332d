/**
 * What a run is given besides its config: the passwords' environment, signals, output and the resume switch.
 * Shared by the orchestrator (migrate.ts) and the phases, so neither imports the other for it.
 */
import type { RunProgress } from './report/progress';

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
  /**
   * The run's progress across databases, which the phases tell each database's share done. Set by runMigration
   * itself for the phases. @default - none
   */
  readonly runProgress?: RunProgress;
}
