/**
 * The stream phase (stream mode): schema, COPY, post-data, sequences and ANALYZE source to destination by the
 * stream engine (../stream); nothing on the dumps volume.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { ToolAbortedError, ToolTimeoutError } from '../postgres/exec';
import { estimate, RateWindow } from '../report/eta';
import type { Logger, LogFields } from '../report/log';
import {
  DEFAULT_PROGRESS_INTERVAL_MS, estimateFields, formatBytes, formatDuration, formatRate, formatTimeLeft, startTicker, type ProgressLine,
} from '../report/progress';
import { withRetry } from '../postgres/retry';
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
      onFraction: (f) => run.options.runProgress?.update(run.db.name, f),
      onSnapshot: m.verify !== 'checksums' ? undefined : async (snapshot, stop) => {
        run.sourceChecksums = undefined;
        restoreLog.info(`computing the source checksums (verify: checksums) in the stream's snapshot ${snapshot}, alongside the copy`);
        run.sourceChecksums = await checksumsInSnapshot(runtimeDb, config, env, snapshot, stop);
      },
    });
  }, { ...run.retry, phase: 'stream', logger: restoreLog, beforeRetry: run.beforeRetry, timeoutSetting: 'migration.timeouts.dump / migration.timeouts.restore' }));
  run.sourceRowCounts = streamed.sourceRowCounts;
  const bytesPerSecond = streamed.seconds.copy > 0 ? Math.round(streamed.bytes / streamed.seconds.copy) : undefined;
  run.record({ streamSeconds, bytesCopied: streamed.bytes, rowsCopied: streamed.rows, bytesPerSecond });
  restoreLog.ok(`streamed ${streamed.tables} tables, ${streamed.rows} rows, ${formatBytes(streamed.bytes)} in ${formatDuration(streamSeconds)} `
    + `(pre-data ${formatDuration(streamed.seconds.preData)}, copy ${formatDuration(streamed.seconds.copy)}`
    + `${bytesPerSecond !== undefined ? ` at ${formatRate(bytesPerSecond, 'bytes')}` : ''}, post-data ${formatDuration(streamed.seconds.postData)}`
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
  /** Told the share (0..1) of the copy done (the run's progress). @default - not told */
  onFraction?: (fraction: number) => void;
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
  // The copy's rate: sampled at each report of the engine (every second while bytes flow).
  const rate = new RateWindow();
  const ticker = startTicker(log, opts.progressIntervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, () => {
    const now = Date.now();
    const copying = latest?.phase === 'copy';
    // No report for two seconds: no bytes flowed meanwhile, and the rate must show it.
    if (copying && now - (rate.lastSampleAt ?? now) > 2000) rate.add(latest!.bytesCopied, now);
    return streamProgressLine(latest, copying ? rate.perSecond() : undefined, (now - started) / 1000);
  });
  try {
    return await streamDatabase(db, config, {
      env: opts.env,
      binDir: opts.binDir || undefined,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase !== latest?.phase) {
          log.info(`${p.phase}${p.phase === 'copy' ? ` (${p.tablesTotal} tables${p.bytesExpected > 0 ? `, about ${formatBytes(p.bytesExpected)}` : ''})` : ''}`);
          if (p.phase === 'copy') rate.reset();
        }
        latest = p;
        if (p.phase === 'copy') {
          rate.add(p.bytesCopied);
          if (p.bytesExpected > 0) opts.onFraction?.(Math.min(1, p.bytesCopied / p.bytesExpected));
        } else if (p.phase !== 'pre-data') opts.onFraction?.(1);
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

/**
 * `streaming (copy): 1.2 GiB of about 3.4 GiB (35%), 48.2 MiB/s, about 47s left; 12/40 tables, 52000 rows copied,
 * 1m05s elapsed`. The total is the tables' on-disk size (COPY's payload differs from it); the rate and the time
 * left are the copy's, so the other phases give what was copied.
 */
export function streamProgressLine(p: StreamProgress | undefined, perSecond: number | undefined, elapsedSeconds: number): ProgressLine {
  const elapsed = `${formatDuration(elapsedSeconds)} elapsed`;
  const base: LogFields = { elapsedSeconds: Math.round(elapsedSeconds * 10) / 10 };
  if (!p) {
    return { msg: `streaming: starting, ${elapsed}`, fields: { ...estimateFields(estimate(0, undefined, undefined), 'bytes'), tablesDone: 0, tablesTotal: null, rowsDone: 0, ...base } };
  }
  const counts = `${p.tablesDone}/${p.tablesTotal} tables, ${p.rowsCopied} rows copied`;
  const tables = { tablesDone: p.tablesDone, tablesTotal: p.tablesTotal, rowsDone: p.rowsCopied };
  if (p.phase === 'copy' || p.phase === 'pre-data') {
    const e = estimate(p.bytesCopied, p.bytesExpected, perSecond);
    const of = e.total !== undefined ? ` of about ${formatBytes(e.total)} (${e.percent}%)` : '';
    const pace = p.phase === 'copy' ? `, ${formatRate(e.perSecond, 'bytes')}, ${formatTimeLeft(e)}` : '';
    return { msg: `streaming (${p.phase}): ${formatBytes(p.bytesCopied)}${of}${pace}; ${counts}, ${elapsed}`, fields: { ...estimateFields(e, 'bytes'), ...tables, ...base } };
  }
  // After the copy: every byte is copied, nothing left to estimate.
  return {
    msg: `streaming (${p.phase}): ${formatBytes(p.bytesCopied)} copied; ${counts}, ${elapsed}`,
    fields: { bytesDone: p.bytesCopied, bytesTotal: p.bytesCopied, bytesPerSecond: null, percent: 100, etaSeconds: null, ...tables, ...base },
  };
}
