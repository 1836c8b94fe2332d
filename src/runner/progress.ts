/**
 * Progress lines during long phases, so an operator watching `kubectl logs` sees the migration move: for
 * the dump the bytes written to the dump directory against the database size, for the restore the items
 * pg_restore finished against the dump's table of contents.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from './log';

/** @default interval of progress lines: 30 seconds */
export const DEFAULT_PROGRESS_INTERVAL_MS = 30_000;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** 75 → "1m15s", 3700 → "1h01m40s". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** Total size of the regular files under `dir` (0 when it does not exist yet). */
export async function directorySize(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await directorySize(p);
    else if (e.isFile()) {
      try { total += (await stat(p)).size; } catch { /* removed meanwhile */ }
    }
  }
  return total;
}

/** Entries of `pg_restore --list` output: every line that is not a comment or blank. */
export function countTocEntries(listLines: Iterable<string>): number {
  let n = 0;
  for (const l of listLines) if (l.trim() !== '' && !l.startsWith(';')) n++;
  return n;
}

/**
 * `pg_restore --verbose` prints one of these per TOC item it restores, serial or parallel
 * ("creating TABLE", "processing data for table", "executing SEQUENCE SET", ...).
 */
const RESTORE_ITEM = /^pg_restore: (creating|processing data for table|executing|restoring|setting owner and privileges for) /;

/** Counts restored items from pg_restore's verbose stderr. */
export class RestoreProgress {
  private count = 0;
  constructor(readonly total: number) {}
  onStderrLine(line: string): void { if (RESTORE_ITEM.test(line)) this.count++; }
  /** Items done so far, never above the total (when the total is known). */
  get done(): number { return this.total > 0 ? Math.min(this.count, this.total) : this.count; }
}

export interface Ticker { stop(): void }

/**
 * Logs `render()` every `intervalMs` until stopped. A slow render (a big dump directory) never overlaps the
 * next one; a failing render is skipped. The timer does not keep the process alive.
 */
export function startTicker(logger: Logger, intervalMs: number, render: () => string | Promise<string>): Ticker {
  let busy = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (busy || stopped) return;
    busy = true;
    Promise.resolve()
      .then(render)
      .then((msg) => { if (!stopped) logger.info(msg); })
      .catch(() => undefined)
      .finally(() => { busy = false; });
  }, intervalMs);
  timer.unref();
  return { stop() { stopped = true; clearInterval(timer); } };
}

export function dumpProgressMessage(written: number, databaseBytes: number | undefined, elapsedSeconds: number): string {
  const of = databaseBytes && databaseBytes > 0
    ? ` of a ${formatBytes(databaseBytes)} database (${Math.min(100, Math.round((written / databaseBytes) * 100))}%, compressed dumps stay below 100%)`
    : '';
  return `dumping: ${formatBytes(written)} written${of}, ${formatDuration(elapsedSeconds)} elapsed`;
}

export function restoreProgressMessage(done: number, total: number, elapsedSeconds: number): string {
  const pct = total > 0 ? ` (${Math.round((done / total) * 100)}%)` : '';
  return `restoring: ${done}/${total > 0 ? total : '?'} items${pct}, ${formatDuration(elapsedSeconds)} elapsed`;
}

/** Ticker for a running dump: measures the dump directory each tick. */
export function startDumpProgress(opts: {
  logger: Logger; dumpDir: string; databaseBytes?: number; intervalMs?: number;
}): Ticker {
  const started = Date.now();
  return startTicker(opts.logger, opts.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, async () =>
    dumpProgressMessage(await directorySize(opts.dumpDir), opts.databaseBytes, (Date.now() - started) / 1000));
}

/** Ticker for a running restore, fed by the caller with pg_restore's stderr lines. */
export function startRestoreProgress(opts: {
  logger: Logger; progress: RestoreProgress; intervalMs?: number;
}): Ticker {
  const started = Date.now();
  return startTicker(opts.logger, opts.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, () =>
    restoreProgressMessage(opts.progress.done, opts.progress.total, (Date.now() - started) / 1000));
}
