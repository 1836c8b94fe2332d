/**
 * Folder dump-restore/: the engine of dump mode: pg_dump (this file), pg_restore and the ANALYZE after it.
 * Imports postgres/, report/, checks/ (the progress marker) and the plan's types; imported by phases/ and stream/.
 *
 * The dump phase: pg_dump in directory format into `<dumps>/<database>`, read only on the source. With
 * `--jobs` pg_dump exports a snapshot and its workers share it, so the dump is consistent. Every attempt
 * starts from an empty directory (pg_dump refuses a non-empty one, and a partial dump must never be restored).
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { runTool } from '../postgres/exec';
import type { Logger } from '../report/log';
import { commandEnv, dumpInSnapshotCommand, formatCommand, type DatabasePlan } from '../plan';
import { directorySize, startDumpProgress } from '../report/progress';

export interface PhaseRunOptions {
  /** The runner's environment (passwords by the names the config gives). */
  readonly env: NodeJS.ProcessEnv;
  /** Every password variable of the config, kept out of the tools' environments but for their own. */
  readonly passwordVars: readonly string[];
  /** Logger carrying the database and phase. */
  readonly logger: Logger;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** @default 30000 */
  readonly progressIntervalMs?: number;
  /** Told the share (0..1) of the phase's work done at each progress line (the run's progress). @default - not told */
  readonly onFraction?: (fraction: number) => void;
}

export interface DumpResult {
  readonly seconds: number;
  /** Size of the dump directory. */
  readonly bytes: number;
}

/** Removes a dump directory and everything in it (missing is fine). */
export async function removeDumpDir(dumpDir: string): Promise<void> {
  await rm(dumpDir, { recursive: true, force: true });
}

/**
 * pg_dump into an empty dump directory. With `snapshot`, pg_dump (and each of its -j workers) runs in that
 * exported snapshot (--snapshot), so what the caller reads in it (the source checksums) is exactly what was dumped.
 */
export async function dumpDatabase(
  db: DatabasePlan, opts: PhaseRunOptions & { readonly databaseBytes?: number; readonly snapshot?: string },
): Promise<DumpResult> {
  const { logger } = opts;
  const cmd = opts.snapshot ? dumpInSnapshotCommand(db.dump, opts.snapshot) : db.dump;
  await removeDumpDir(db.dumpDir);
  await mkdir(dirname(db.dumpDir), { recursive: true });
  logger.debug(`running ${formatCommand(cmd)}`);
  const ticker = startDumpProgress({
    logger, dumpDir: db.dumpDir, databaseBytes: opts.databaseBytes, intervalMs: opts.progressIntervalMs, onFraction: opts.onFraction,
  });
  try {
    const res = await runTool({
      cmd: cmd.cmd,
      args: cmd.args,
      env: commandEnv(cmd, opts.env, opts.passwordVars),
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      phase: 'dump',
      secrets: logger.secrets,
      onStderrLine: (line) => logger.debug(line),
      onStdoutLine: (line) => logger.debug(line),
    });
    return { seconds: res.durationMs / 1000, bytes: await directorySize(db.dumpDir) };
  } finally {
    ticker.stop();
  }
}
