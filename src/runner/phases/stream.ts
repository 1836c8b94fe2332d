/**
 * The stream phase (stream mode): schema, COPY, post-data, sequences and ANALYZE source to destination by the
 * stream engine (../stream); nothing on the dumps volume.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { ToolAbortedError, ToolTimeoutError } from '../exec';
import type { Logger } from '../log';
import { DEFAULT_PROGRESS_INTERVAL_MS, formatBytes, formatDuration, startTicker } from '../progress';
import { withRetry } from '../retry';
import { streamDatabase, StreamTimeoutError, type StreamProgress, type StreamResult } from '../stream';
import type { DatabaseRun } from './context';
import { checksumsInSnapshot } from './source-snapshot';

export async function streamPhase(run: DatabaseRun): Promise<void> {
  const m = run.migration;
  const { restoreLog, env, signal, runtimeDb, config } = run;
  const budgetSeconds = m.timeouts.dump + m.timeouts.restore;
  restoreLog.info(`streaming with ${m.copy.jobs} COPY worker${m.copy.jobs === 1 ? '' : 's'}; time limit ${formatDuration(budgetSeconds)} `
    + `(timeouts.dump + timeouts.restore; the copy alone at most timeouts.dump, each pg_restore section at most timeouts.restore)`);
  const [streamed, streamSeconds] = await run.timed('stream', () => withRetry(async () => {
    await run.readIdentity('stream');
    await run.ensureDestination();
    await run.mark('restoring', restoreLog);
    const cleanFirst = run.startWriteAttempt();
    return runStream(runtimeDb, cleanFirst ? withCleanRestore(config) : config, {
      env, binDir: run.options.binDir ?? env.PG_BIN, signal, log: restoreLog, timeoutMs: budgetSeconds * 1000,
      progressIntervalMs: run.options.progressIntervalMs,
      onSnapshot: m.verify !== 'checksums' ? undefined : async (snapshot, stop) => {
        run.sourceChecksums = undefined;
        restoreLog.info(`computing the source checksums (verify: checksums) in the stream's snapshot ${snapshot}, alongside the copy`);
        run.sourceChecksums = await checksumsInSnapshot(runtimeDb, config, env, snapshot, stop);
      },
    });
  }, { ...run.retry, phase: 'stream', logger: restoreLog, beforeRetry: run.beforeRetry, timeoutSetting: 'migration.timeouts.dump / migration.timeouts.restore' }));
  run.sourceRowCounts = streamed.sourceRowCounts;
  run.record({ streamSeconds, bytesCopied: streamed.bytes, rowsCopied: streamed.rows });
  restoreLog.ok(`streamed ${streamed.tables} tables, ${streamed.rows} rows, ${formatBytes(streamed.bytes)} in ${formatDuration(streamSeconds)} `
    + `(pre-data ${formatDuration(streamed.seconds.preData)}, copy ${formatDuration(streamed.seconds.copy)}, post-data ${formatDuration(streamed.seconds.postData)}`
    + `${run.writeRuns > 1 ? `, ${run.writeRuns} attempts` : ''}); ANALYZE done by the stream`);
}

/** The config with restore.clean on: a stream retry into a database this run did not create starts clean. */
export function withCleanRestore(config: RuntimeConfig): RuntimeConfig {
  const m = config.migration;
  return { ...config, migration: { ...m, restore: { ...m.restore, clean: true } } };
}

/**
 * One stream attempt under the phase's time limit, with progress lines every interval. Timeouts (the budget,
 * or a limit inside the engine) come out as ToolTimeoutError and interruptions as ToolAbortedError, like a
 * tool's, so retries and failure messages treat both modes alike. Settles only after the engine has closed
 * every session and stopped every child.
 */
export async function runStream(db: RuntimeDatabase, config: RuntimeConfig, opts: {
  env: NodeJS.ProcessEnv; binDir?: string; signal?: AbortSignal; log: Logger; timeoutMs: number; progressIntervalMs?: number;
  onSnapshot?: (snapshot: string, signal: AbortSignal) => Promise<void>;
  /** Online mode: read in the replication slot's exported snapshot. */
  importSnapshot?: string;
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
      importSnapshot: opts.importSnapshot,
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
