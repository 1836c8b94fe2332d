/**
 * The run summary, built from what each database's phases recorded: a table for people at the end of the
 * log, `summary.json` next to `migration.log`, and a compact copy in the termination log (Kubernetes shows
 * at most 4096 bytes of it in the pod status).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { redact } from './log';
import type { FaultRecord } from '../online/faults';
import { formatBytes, formatDuration } from './progress';

export type DatabaseStatus = 'migrated' | 'failed' | 'skipped' | 'interrupted' | 'dry-run' | 'planned';
export type Phase = 'plan' | 'preflight' | 'dump' | 'roles' | 'restore' | 'stream' | 'replicate' | 'cutover' | 'analyze' | 'verify' | 'settings' | 'cleanup';

export interface DatabaseResult {
  name: string;
  status: DatabaseStatus;
  /** Where it failed or was interrupted. */
  phase?: Phase;
  error?: string;
  /** Why a database was skipped although enabled (e.g. an earlier attempt already migrated and verified it). */
  reason?: string;
  sizeBytes?: number;
  dumpBytes?: number;
  dumpSeconds?: number;
  restoreSeconds?: number;
  analyzeSeconds?: number;
  verifySeconds?: number;
  /** Stream mode: seconds of the stream (schema, COPY, post-data, sequences, ANALYZE), and what it copied. */
  streamSeconds?: number;
  /** Stream mode: COPY payload bytes received from the source. */
  bytesCopied?: number;
  /** Stream mode: rows copied. */
  rowsCopied?: number;
  /**
   * Average rate of the moving phases, bytes per second: stream mode the COPY bytes over the copy's seconds; dump
   * mode the dump's bytes over the dump's and the restore's seconds (filled in by finishSummary). @default - not known
   */
  bytesPerSecond?: number;
  rowsVerified?: number;
  /** Objects of the source's inventory (tables, columns, indexes, constraints, ...) compared by verify. */
  objectsVerified?: number;
  /** Tables whose content checksum was compared (verify: checksums). */
  tablesChecksummed?: number;
  /** migration.roles: roles this run created on the destination for this database. */
  rolesCreated?: string[];
  tables?: number;
  /** Verification differences, when verify found any. */
  differences?: string[];
  /** Online mode: seconds from the end of the initial copy until replication had caught up (ready to cut over). */
  catchUpSeconds?: number;
  /** Online mode: the write pause, fence to verified, in seconds. */
  writePauseSeconds?: number;
  /** Online mode with fence: readOnly: the SQL that makes the source database writable again. */
  undoFenceSql?: string;
  /** Online mode: the replication fault that failed the database (its kind and facts; the error says what to do). @default - none */
  fault?: FaultRecord;
}

export interface RunTotals {
  databases: number;
  migrated: number;
  failed: number;
  interrupted: number;
  skipped: number;
  sizeBytes: number;
  rowsVerified: number;
}

export interface RunSummary {
  name: string;
  dryRun: boolean;
  /** True only when every enabled database migrated and verified (or, in a dry run, passed pre-flight). */
  ok: boolean;
  interrupted: boolean;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  databases: DatabaseResult[];
  totals: RunTotals;
  /** Online mode: the longest write pause of any database (they are cut over in parallel), seconds. */
  writePauseSeconds?: number;
}

/** Kubernetes truncates the termination message to this many bytes. */
export const TERMINATION_LOG_LIMIT = 4096;

export function computeTotals(databases: readonly DatabaseResult[]): RunTotals {
  const count = (s: DatabaseStatus) => databases.filter((d) => d.status === s).length;
  return {
    databases: databases.length,
    migrated: count('migrated'),
    failed: count('failed'),
    interrupted: count('interrupted'),
    skipped: count('skipped'),
    sizeBytes: databases.reduce((a, d) => a + (d.sizeBytes ?? 0), 0),
    rowsVerified: databases.reduce((a, d) => a + (d.rowsVerified ?? 0), 0),
  };
}

/** Completes a summary from its per-database results. */
export function finishSummary(
  base: { name: string; dryRun: boolean; startedAt: Date; finishedAt?: Date },
  databases: DatabaseResult[],
): RunSummary {
  const finished = base.finishedAt ?? new Date();
  const interrupted = databases.some((d) => d.status === 'interrupted');
  const enabled = databases.filter((d) => d.status !== 'skipped');
  const wanted: DatabaseStatus = base.dryRun ? 'dry-run' : 'migrated';
  const pauses = databases.flatMap((d) => (d.writePauseSeconds === undefined ? [] : [d.writePauseSeconds]));
  return {
    name: base.name,
    dryRun: base.dryRun,
    ok: !interrupted && enabled.every((d) => d.status === wanted),
    interrupted,
    startedAt: base.startedAt.toISOString(),
    finishedAt: finished.toISOString(),
    durationSeconds: Math.round((finished.getTime() - base.startedAt.getTime()) / 100) / 10,
    databases: databases.map(withAverageRate),
    totals: computeTotals(databases),
    ...(pauses.length ? { writePauseSeconds: Math.max(...pauses) } : {}),
  };
}

const secs = (s: number | undefined) => (s === undefined ? '-' : formatDuration(s));

/** Dump mode's average rate: the dump's bytes through the dumps volume, over the dump's and the restore's time. */
function withAverageRate(d: DatabaseResult): DatabaseResult {
  if (d.bytesPerSecond !== undefined || d.dumpBytes === undefined || d.dumpSeconds === undefined || d.restoreSeconds === undefined) return d;
  const seconds = d.dumpSeconds + d.restoreSeconds;
  return seconds > 0 ? { ...d, bytesPerSecond: Math.round(d.dumpBytes / seconds) } : d;
}

/** A fixed-width table, one row per database, then the totals. */
export function formatSummaryTable(s: RunSummary): string {
  // Stream columns only when a database streamed: a dump-mode table stays as it was.
  const streamed = s.databases.some((d) => d.streamSeconds !== undefined || d.bytesCopied !== undefined);
  const online = s.databases.some((d) => d.writePauseSeconds !== undefined || d.catchUpSeconds !== undefined);
  const rated = s.databases.some((d) => d.bytesPerSecond !== undefined);
  const header = ['database', 'status', 'phase', 'size', 'dump', 'restore', ...(streamed ? ['stream', 'copied'] : []),
    ...(online ? ['catch-up', 'write pause'] : []), 'verify', 'tables', 'rows verified', ...(rated ? ['rate'] : [])];
  const rows = s.databases.map((d) => [
    d.name,
    d.status,
    d.phase ?? '-',
    d.sizeBytes === undefined ? '-' : formatBytes(d.sizeBytes),
    secs(d.dumpSeconds),
    secs(d.restoreSeconds),
    ...(streamed ? [secs(d.streamSeconds), d.bytesCopied === undefined ? '-' : formatBytes(d.bytesCopied)] : []),
    ...(online ? [secs(d.catchUpSeconds), d.writePauseSeconds === undefined ? '-' : `${d.writePauseSeconds.toFixed(2)}s`] : []),
    secs(d.verifySeconds),
    d.tables === undefined ? '-' : String(d.tables),
    d.rowsVerified === undefined ? '-' : String(d.rowsVerified),
    ...(rated ? [d.bytesPerSecond === undefined ? '-' : `${formatBytes(d.bytesPerSecond)}/s`] : []),
  ]);
  const width = header.map((h, i) => Math.max([...h].length, ...rows.map((r) => [...r[i]].length)));
  const line = (cells: string[]) => cells.map((c, i) => c + ' '.repeat(width[i] - [...c].length)).join('  ').trimEnd();
  const t = s.totals;
  const verdict = s.interrupted ? 'INTERRUPTED' : s.ok ? (s.dryRun ? 'DRY RUN OK' : 'SUCCEEDED') : 'FAILED';
  const out = [
    line(header),
    line(width.map((w) => '-'.repeat(w))),
    ...rows.map(line),
    '',
    s.dryRun
      ? `${verdict}: ${s.databases.filter((d) => d.status === 'dry-run').length}/${t.databases - t.skipped} ready, ${t.failed} failed, ${t.skipped} skipped; `
        + `${formatBytes(t.sizeBytes)} to move; nothing was changed, ${formatDuration(s.durationSeconds)}`
      : `${verdict}: ${t.migrated}/${t.databases - t.skipped} migrated, ${t.failed} failed, ${t.interrupted} interrupted, ${t.skipped} skipped; `
        + `${formatBytes(t.sizeBytes)}, ${t.rowsVerified} rows verified, ${formatDuration(s.durationSeconds)}`,
  ];
  if (s.writePauseSeconds !== undefined) out.push(`write pause (fence to verified, databases in parallel): ${s.writePauseSeconds.toFixed(2)}s`);
  for (const d of s.databases) {
    if (d.error) out.push(`${d.name} (${d.phase ?? '-'}): ${d.error}`);
    else if (d.reason) out.push(`${d.name} (${d.status}): ${d.reason}`);
  }
  const undo = s.databases.filter((d) => d.undoFenceSql);
  if (undo.length) {
    out.push('The sources stay read-only (the cutover\'s fence). To make one writable again, run on its server:');
    for (const d of undo) out.push(`  ${d.name}: ${d.undoFenceSql}`);
  }
  return out.join('\n');
}

/**
 * A compact JSON summary that fits `limit` bytes: per database name, status, phase and error; errors are
 * shortened (then dropped) until it fits.
 */
export function compactSummary(s: RunSummary, limit = TERMINATION_LOG_LIMIT): string {
  const build = (errLen: number, maxDbs: number) => JSON.stringify({
    ok: s.ok,
    dryRun: s.dryRun || undefined,
    interrupted: s.interrupted || undefined,
    totals: s.totals,
    seconds: s.durationSeconds,
    ...(s.writePauseSeconds !== undefined ? { writePauseSeconds: s.writePauseSeconds } : {}),
    databases: s.databases.slice(0, maxDbs).map((d) => ({
      name: d.name,
      status: d.status,
      ...(d.writePauseSeconds !== undefined ? { writePauseSeconds: d.writePauseSeconds } : {}),
      ...(d.phase ? { phase: d.phase } : {}),
      ...(d.fault ? { fault: d.fault.kind } : {}),
      ...(d.error && errLen > 0 ? { error: d.error.length > errLen ? `${d.error.slice(0, errLen - 3)}...` : d.error } : {}),
      ...(d.reason && errLen > 0 ? { reason: d.reason.length > errLen ? `${d.reason.slice(0, errLen - 3)}...` : d.reason } : {}),
    })),
    ...(maxDbs < s.databases.length ? { more: s.databases.length - maxDbs } : {}),
  });
  for (const errLen of [2000, 500, 200, 80, 0]) {
    const text = build(errLen, s.databases.length);
    if (Buffer.byteLength(text) <= limit) return text;
  }
  for (let n = s.databases.length - 1; n >= 0; n--) {
    const text = build(0, n);
    if (Buffer.byteLength(text) <= limit) return text;
  }
  return JSON.stringify({ ok: s.ok, totals: s.totals }).slice(0, limit);
}

export interface SummaryFiles {
  readonly summaryFile?: string;
  readonly terminationLog?: string;
  /** Files that could not be written, with why. */
  readonly failures: readonly string[];
}

/**
 * Writes `<logsDir>/summary.json` and, when given, the compact summary to the termination log. Failures
 * are reported, not thrown (a workstation has no /dev/termination-log). Secrets are redacted in both.
 */
export function writeSummaryFiles(
  s: RunSummary, paths: { logs: string; terminationLog?: string }, secrets: readonly string[] = [],
): SummaryFiles {
  const failures: string[] = [];
  let summaryFile: string | undefined;
  let terminationLog: string | undefined;
  try {
    mkdirSync(paths.logs, { recursive: true });
    const file = join(paths.logs, 'summary.json');
    writeFileSync(file, redact(JSON.stringify(s, null, 2), secrets) + '\n', { mode: 0o644 });
    summaryFile = file;
  } catch (err) {
    failures.push(`${join(paths.logs, 'summary.json')}: ${(err as Error).message}`);
  }
  if (paths.terminationLog) {
    try {
      let text = redact(compactSummary(s), secrets);
      if (Buffer.byteLength(text) > TERMINATION_LOG_LIMIT) text = compactSummary({ ...s, databases: [] });
      writeFileSync(paths.terminationLog, text);
      terminationLog = paths.terminationLog;
    } catch (err) {
      failures.push(`${paths.terminationLog}: ${(err as Error).message}`);
    }
  }
  return { summaryFile, terminationLog, failures };
}
