/**
 * Progress lines during long phases, so an operator watching `kubectl logs` sees the migration move and how
 * long it should still take: for the dump the bytes written to the dump directory against the database size,
 * for the restore the items pg_restore finished against the dump's table of contents, for the whole run the
 * databases' sizes. Each line gives the current rate and the time left (eta.ts); JSON lines carry the same
 * figures as numbers.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { estimate, RateWindow, type Estimate } from './eta';
import type { Logger, LogFields } from './log';

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

/** A TABLE DATA entry of the archive: its dump id, "schema.name" and the size of its data file in the dump directory. */
export interface TableDataEntry {
  readonly id: number;
  readonly table: string;
  readonly bytes: number;
}

/** `3343; 0 16386 TABLE DATA public t1 postgres` → id and "public.t1" (names as pg_restore --list prints them). */
export function parseTableDataEntry(line: string): { id: number; table: string } | undefined {
  const m = /^(\d+); \d+ \d+ TABLE DATA (\S+) (\S+) /.exec(line);
  return m ? { id: Number(m[1]), table: `${m[2]}.${m[3]}` } : undefined;
}

const FINISHED_ITEM = /^pg_restore: finished item (\d+) /;
const PROCESSING_DATA = /^pg_restore: processing data for table "(.+)"$/;

/**
 * Counts restored items from pg_restore's verbose stderr, and the table data loaded so far in bytes of the dump's
 * data files: a parallel restore says when each item is finished; a serial one starts one item after the other,
 * so a table's data is done when the next item starts.
 */
export class RestoreProgress {
  private count = 0;
  private bytes = 0;
  private current: TableDataEntry | undefined;
  private readonly byId: Map<number, TableDataEntry>;
  private readonly byTable: Map<string, TableDataEntry>;
  private readonly counted = new Set<number>();

  /** `parallel`: pg_restore runs with --jobs above 1 (it then says when each item is finished). */
  constructor(readonly total: number, readonly tableData: readonly TableDataEntry[] = [], private readonly parallel = false) {
    this.byId = new Map(tableData.map((e) => [e.id, e]));
    this.byTable = new Map(tableData.map((e) => [e.table, e]));
  }

  /** Bytes of all the dump's table data files. */
  get bytesTotal(): number { return this.tableData.reduce((a, e) => a + e.bytes, 0); }

  /** Bytes of the table data files whose restore has finished. */
  get bytesDone(): number { return this.bytes; }

  onStderrLine(line: string): void {
    const finished = FINISHED_ITEM.exec(line);
    if (finished) { this.finish(this.byId.get(Number(finished[1]))); return; }
    if (!RESTORE_ITEM.test(line)) return;
    this.count++;
    if (this.parallel) return;
    // Serial restore: the item before this one is done.
    this.finish(this.current);
    const data = PROCESSING_DATA.exec(line);
    this.current = data ? this.byTable.get(data[1]) : undefined;
  }

  /** pg_restore ended successfully: everything is loaded. */
  complete(): void {
    for (const e of this.tableData) this.finish(e);
  }

  /** Items done so far, never above the total (when the total is known). */
  get done(): number { return this.total > 0 ? Math.min(this.count, this.total) : this.count; }

  private finish(e: TableDataEntry | undefined): void {
    if (!e || this.counted.has(e.id)) return;
    this.counted.add(e.id);
    this.bytes += e.bytes;
  }
}

/** A progress line: its text, and the figures JSON lines carry as fields. */
export interface ProgressLine {
  readonly msg: string;
  readonly fields?: LogFields;
}

export interface Ticker { stop(): void }

/**
 * Logs `render()` every `intervalMs` until stopped (nothing when it renders undefined). A slow render (a big dump
 * directory) never overlaps the next one; a failing render is skipped. The timer does not keep the process alive.
 */
export function startTicker(
  logger: Logger, intervalMs: number,
  render: () => string | ProgressLine | undefined | Promise<string | ProgressLine | undefined>,
): Ticker {
  let busy = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (busy || stopped) return;
    busy = true;
    Promise.resolve()
      .then(render)
      .then((line) => {
        if (stopped || line === undefined) return;
        if (typeof line === 'string') logger.info(line);
        // The text already says it; the fields are for JSON lines.
        else logger.info(line.msg, logger.format === 'json' ? line.fields : undefined);
      })
      .catch(() => undefined)
      .finally(() => { busy = false; });
  }, intervalMs);
  timer.unref();
  return { stop() { stopped = true; clearInterval(timer); } };
}

/** "48.2 MiB/s", "3.5 items/s", or that there is no rate yet. */
export function formatRate(perSecond: number | undefined, unit: 'bytes' | 'items'): string {
  if (perSecond === undefined) return 'rate not measured yet';
  return unit === 'bytes' ? `${formatBytes(Math.round(perSecond))}/s` : `${perSecond.toFixed(1)} items/s`;
}

/** "about 47s left", or why the time left is not known. `about` words the estimate ("up to about" for a bound). */
export function formatTimeLeft(e: Estimate, about = 'about'): string {
  if (e.etaSeconds !== undefined) return `${about} ${formatDuration(e.etaSeconds)} left`;
  if (e.total !== undefined && e.perSecond !== undefined && e.done >= e.total) return 'time left unknown (past the estimate)';
  return 'time left unknown';
}

/** The estimate as JSON fields, numbers or null: `<unit>Done`, `<unit>Total`, `<unit>PerSecond`, percent, etaSeconds. */
export function estimateFields(e: Estimate, unit: 'bytes' | 'items'): LogFields {
  const rate = e.perSecond === undefined ? null : unit === 'bytes' ? Math.round(e.perSecond) : Math.round(e.perSecond * 10) / 10;
  return {
    [`${unit}Done`]: e.done, [`${unit}Total`]: e.total ?? null, [`${unit}PerSecond`]: rate,
    percent: e.percent ?? null, etaSeconds: e.etaSeconds ?? null,
  };
}

const seconds = (s: number) => Math.round(s * 10) / 10;

/**
 * `dumping: 1.2 GiB written of a 3.4 GiB database (35%; compressed dumps stay below 100%), 48.2 MiB/s, up to about
 * 47s left, 1m05s elapsed`. A dump holds no indexes and may be compressed, so it stays below the database's size:
 * the time left is an upper bound.
 */
export function dumpProgressLine(written: number, databaseBytes: number | undefined, perSecond: number | undefined, elapsedSeconds: number): ProgressLine {
  const e = estimate(written, databaseBytes, perSecond);
  const of = e.total !== undefined ? ` of a ${formatBytes(databaseBytes!)} database (${e.percent}%; compressed dumps stay below 100%)` : '';
  return {
    msg: `dumping: ${formatBytes(written)} written${of}, ${formatRate(e.perSecond, 'bytes')}, ${formatTimeLeft(e, 'up to about')}, `
      + `${formatDuration(elapsedSeconds)} elapsed`,
    fields: { ...estimateFields(e, 'bytes'), elapsedSeconds: seconds(elapsedSeconds) },
  };
}

/**
 * `restoring: 1.2 GiB of 3.4 GiB table data (35%), 48.2 MiB/s, about 47s left; 120/340 items, 1m05s elapsed`: the
 * estimate rests on the dump's data files (what loading costs); once every table is loaded, the indexes and
 * constraints remain, counted in items. Without data sizes (an archive other than a directory), items only.
 */
export function restoreProgressLine(
  done: number, total: number, perSecond: number | undefined, elapsedSeconds: number,
  data?: { readonly done: number; readonly total: number; readonly perSecond: number | undefined },
): ProgressLine {
  const items = `${done}/${total > 0 ? total : '?'} items`;
  if (data && data.total > 0 && data.done < data.total) {
    const e = estimate(data.done, data.total, data.perSecond);
    return {
      msg: `restoring: ${formatBytes(data.done)} of ${formatBytes(data.total)} table data (${e.percent}%), ${formatRate(e.perSecond, 'bytes')}, `
        + `${formatTimeLeft(e)} for the data; ${items}, ${formatDuration(elapsedSeconds)} elapsed`,
      fields: { ...estimateFields(e, 'bytes'), itemsDone: done, itemsTotal: total > 0 ? total : null, elapsedSeconds: seconds(elapsedSeconds) },
    };
  }
  const e = estimate(done, total, perSecond);
  const pct = e.percent !== undefined ? ` (${e.percent}%)` : '';
  const loaded = data && data.total > 0 ? `table data loaded (${formatBytes(data.total)}); indexes and constraints: ` : '';
  return {
    msg: `restoring: ${loaded}${items}${pct}, ${formatRate(e.perSecond, 'items')}, ${formatTimeLeft(e)}, `
      + `${formatDuration(elapsedSeconds)} elapsed`,
    fields: {
      ...estimateFields(e, 'items'), ...(data && data.total > 0 ? { bytesDone: data.done, bytesTotal: data.total } : {}),
      elapsedSeconds: seconds(elapsedSeconds),
    },
  };
}

/** Ticker for a running dump: measures the dump directory each tick. `onFraction` gets the share written (0..1). */
export function startDumpProgress(opts: {
  logger: Logger; dumpDir: string; databaseBytes?: number; intervalMs?: number; onFraction?: (fraction: number) => void;
}): Ticker {
  const started = Date.now();
  const rate = new RateWindow();
  rate.add(0, started);
  return startTicker(opts.logger, opts.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, async () => {
    const written = await directorySize(opts.dumpDir);
    const now = Date.now();
    rate.add(written, now);
    if (opts.databaseBytes) opts.onFraction?.(Math.min(1, written / opts.databaseBytes));
    return dumpProgressLine(written, opts.databaseBytes, rate.perSecond(), (now - started) / 1000);
  });
}

/** Ticker for a running restore, fed by the caller with pg_restore's stderr lines. `onFraction` gets the share of items done. */
export function startRestoreProgress(opts: {
  logger: Logger; progress: RestoreProgress; intervalMs?: number; onFraction?: (fraction: number) => void;
}): Ticker {
  const started = Date.now();
  const rate = new RateWindow();
  rate.add(0, started);
  const bytes = new RateWindow();
  bytes.add(0, started);
  return startTicker(opts.logger, opts.intervalMs ?? DEFAULT_PROGRESS_INTERVAL_MS, () => {
    const now = Date.now();
    const p = opts.progress;
    rate.add(p.done, now);
    bytes.add(p.bytesDone, now);
    const data = { done: p.bytesDone, total: p.bytesTotal, perSecond: bytes.perSecond() };
    // The run's share: the data by bytes when known (what takes the time), else the items.
    if (data.total > 0) opts.onFraction?.(Math.min(1, data.done / data.total));
    else if (p.total > 0) opts.onFraction?.(Math.min(1, p.done / p.total));
    return restoreProgressLine(p.done, p.total, rate.perSecond(), (now - started) / 1000, data);
  });
}

/**
 * The whole run's progress across databases: each database weighs its size, and reports the share of its work
 * done (its phases say how: the copy's bytes, the dump's bytes then the restore's items); a finished database
 * (migrated or not) counts in full.
 */
export class RunProgress {
  private readonly databases = new Map<string, { bytes: number; fraction: number; finished: boolean }>();
  private readonly rate = new RateWindow();
  private readonly started: number;

  constructor(databases: readonly { readonly name: string; readonly bytes?: number }[], now = Date.now()) {
    for (const d of databases) this.databases.set(d.name, { bytes: d.bytes ?? 0, fraction: 0, finished: false });
    this.started = now;
    this.rate.add(0, now);
  }

  /** The share (0..1) of `name`'s work done so far. */
  update(name: string, fraction: number): void {
    const d = this.databases.get(name);
    if (d && !d.finished) d.fraction = Math.max(0, Math.min(1, fraction));
  }

  /** `name` is done with, whatever its outcome. */
  finish(name: string): void {
    const d = this.databases.get(name);
    if (d) { d.finished = true; d.fraction = 1; }
  }

  /**
   * `3/5 databases done; 1.2 GiB of about 3.4 GiB (35%), 48.2 MiB/s, about 47s left, 5m00s elapsed`, or
   * undefined when at most one database is left (its own lines say it all).
   */
  line(now = Date.now()): ProgressLine | undefined {
    const all = [...this.databases.values()];
    const done = all.filter((d) => d.finished).length;
    const bytesTotal = all.reduce((a, d) => a + d.bytes, 0);
    const bytesDone = Math.round(all.reduce((a, d) => a + d.bytes * d.fraction, 0));
    this.rate.add(bytesDone, now);
    if (all.length - done <= 1) return undefined;
    const e = estimate(bytesDone, bytesTotal, this.rate.perSecond());
    const elapsedSeconds = (now - this.started) / 1000;
    const bytes = e.total === undefined ? 'sizes unknown'
      : `${formatBytes(bytesDone)} of about ${formatBytes(e.total)} (${e.percent}%), ${formatRate(e.perSecond, 'bytes')}, ${formatTimeLeft(e)}`;
    return {
      msg: `${done}/${all.length} databases done; ${bytes}, ${formatDuration(elapsedSeconds)} elapsed`,
      fields: { databasesDone: done, databasesTotal: all.length, ...estimateFields(e, 'bytes'), elapsedSeconds: seconds(elapsedSeconds) },
    };
  }
}
