/**
 * Stream mode for one database, in phases (like pgcopydb):
 *
 *   pre-data   export a snapshot on the source; pg_dump the schema sections in it to a small archive in the
 *              tmp dir; list what it holds; lock the tables to copy; pg_restore its pre-data section.
 *   copy       copy.jobs workers, each with a source session on the snapshot and a destination session,
 *              drain a queue of tables (largest first) with COPY TO STDOUT relayed into COPY FROM STDIN;
 *              as each table is loaded, its indexes and key constraints are restored (post-data.ts).
 *   post-data  pg_restore the rest of the archive's post-data section (foreign keys, triggers, policies,
 *              matview data, what was not built early) with restore.jobs, once every table is loaded.
 *   sequences  setval to the snapshot's values.
 *   analyze    ANALYZE the copied tables in parallel, then the partitioned parents.
 *
 * Nothing is written to the dumps volume, and nothing to the source (every source session is read only).
 * On failure or abort every session is dropped and every child stopped before the promise settles.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { analyzeTables } from '../dump-restore/analyze';
import { readSourceCatalog, type SourceCatalog, type TableToCopy } from './table-catalog';
import { dropForeignKeysReferencing } from './clean';
import { chooseFormat, describeChoice } from './copy-format';
import type { CopyFormat } from './stream-types';
import { copyTable, qualifiedName } from './copy-table';
import { StreamAbortedError, StreamTimeoutError } from './stream-errors';
import { copyLargeObjects } from './large-objects';
import { planSplits, type TablePart } from './split';
import { quantityValue } from '../../spec/formats';
import { PostDataScheduler } from './post-data';
import { ProgressTracker } from './copy-progress';
import { setSequences } from './set-sequences';
import { closeClient, destroyClient, openSnapshotReader, openWriter, type SessionOptions } from './snapshot-sessions';
import { SourceSnapshot } from './snapshot';
import { parseArchiveList } from './toc';
import { dumpSchemaArchive, listArchive, restoreSection, type ToolContext } from './schema-archive';
import type { StreamOptions, StreamResult } from './stream-types';
import { drainQueue } from '../dump-restore/work-queue';

type CopyItem = { kind: 'table'; table: TableToCopy } | { kind: 'part'; part: TablePart } | { kind: 'large-objects'; oids: readonly number[] };

interface Worker {
  readonly reader: Client;
  readonly writer: Client;
}

export async function streamDatabase(db: RuntimeDatabase, config: RuntimeConfig, opts: StreamOptions): Promise<StreamResult> {
  const m = config.migration;
  const log = opts.log ?? (() => undefined);
  const progress = new ProgressTracker(opts.onProgress);
  if (opts.signal?.aborted) throw new StreamAbortedError(db.name);

  // One controller stops everything: the caller's signal, a phase timeout or the first failing worker.
  const controller = new AbortController();
  const onCallerAbort = () => controller.abort(new StreamAbortedError(db.name));
  opts.signal?.addEventListener('abort', onCallerAbort, { once: true });
  const sessions = new Set<Client>();
  let snapshot: SourceSnapshot | undefined;
  controller.signal.addEventListener('abort', () => {
    // Dropping the sockets makes every pending query and COPY fail at once, and the servers roll back.
    for (const c of sessions) destroyClient(c);
    void snapshot?.destroy();
  }, { once: true });

  const track = async (open: Promise<Client>): Promise<Client> => {
    const c = await open;
    sessions.add(c);
    if (controller.signal.aborted) destroyClient(c);
    return c;
  };
  const release = async (c: Client) => {
    sessions.delete(c);
    await closeClient(c);
  };
  const sessionOpts: SessionOptions = { env: opts.env, connectTimeoutSeconds: m.timeouts.connect };
  const tools: ToolContext = {
    config, env: opts.env, binDir: opts.binDir ?? (opts.env.PG_BIN || undefined), signal: controller.signal, log,
  };
  const archive = join(config.paths.tmp, `stream-${db.name}-${process.pid}-${Date.now()}.schema.dump`);
  const clock = stopwatch();
  const sourceRowCounts = new Map<string, number>();
  let hook: Promise<void> | undefined;
  let hookError: { err: unknown } | undefined;
  let postData: PostDataScheduler | undefined;

  try {
    // pre-data
    progress.enter('pre-data');
    snapshot = await SourceSnapshot.open(db.source, opts.env, m.timeouts.connect, opts.importSnapshot);
    if (controller.signal.aborted) await snapshot.destroy();
    log('info', opts.importSnapshot ? `source snapshot ${snapshot.id} exported (the replication slot's ${opts.importSnapshot})` : `source snapshot ${snapshot.id} exported`);
    await mkdir(config.paths.tmp, { recursive: true });
    await dumpSchemaArchive(tools, db.source, snapshot.id, archive);
    const toc = parseArchiveList(await listArchive(tools, archive));
    const catalog = await readSourceCatalog(snapshot.client, toc, { serverVersionNum: snapshot.serverVersionNum, dumpExtraArgs: m.dump.extraArgs });
    await snapshot.lockTables(catalog.tables, m.dump.lockWaitTimeoutSeconds);
    progress.tablesTotal = catalog.tables.length;
    progress.bytesExpected = sum(catalog.tables.map((t) => t.bytes));
    // The caller's work in the snapshot (e.g. source checksums) runs alongside the copy; the snapshot is held
    // until it settles, and its failure stops the stream.
    if (opts.onSnapshot) {
      hook = opts.onSnapshot(snapshot.id, controller.signal);
      hook.catch((err: unknown) => {
        if (controller.signal.aborted) return; // stopped for another reason, which explains it better
        hookError = { err };
        controller.abort(err);
      });
    }
    log('info', `${catalog.tables.length} tables (${formatMiB(sum(catalog.tables.map((t) => t.bytes)))} on disk), ${catalog.sequences.length} sequences, ${catalog.largeObjectOids.length} large objects to copy`);

    const control = await track(openWriter(db.destination, sessionOpts));
    const destinationVersionNum = Number((await control.query<{ v: string }>("SELECT pg_catalog.current_setting('server_version_num') AS v")).rows[0].v);
    if (m.restore.clean) {
      const dropped = await dropForeignKeysReferencing(control, [...catalog.tables, ...catalog.partitionedParents]);
      if (dropped > 0) log('info', `clean: dropped ${dropped} foreign keys on the destination that reference tables being replaced`);
    }
    await restoreSection(tools, db.destination, archive, 'pre-data');
    const preData = clock.lap();
    postData = new PostDataScheduler({
      tools, destination: db.destination, archive, entryLines: toc.entryLines, tableLevel: catalog.tableLevelPostData,
      jobs: m.restore.jobs, onError: (err) => { if (!controller.signal.aborted) controller.abort(err); },
    });

    // copy
    progress.enter('copy');
    const split = m.copy.splitTablesLargerThan === undefined ? undefined
      : await planSplits(snapshot.client, catalog.tables, quantityValue(m.copy.splitTablesLargerThan), snapshot.serverVersionNum);
    for (const note of split?.notes ?? []) log('info', note);
    // A split table is emptied once, before any of its parts (which append).
    for (const oid of split?.parts.keys() ?? []) await control.query(`TRUNCATE ONLY ${qualifiedName(catalog.tables.find((t) => t.oid === oid)!)}`);
    const items: CopyItem[] = [
      // Large objects first: their size is unknown (pg_largeobject is not readable without superuser).
      ...(catalog.largeObjectOids.length ? [{ kind: 'large-objects' as const, oids: catalog.largeObjectOids }] : []),
      ...catalog.tables.flatMap((table): CopyItem[] => split?.parts.get(table.oid)?.map((part) => ({ kind: 'part' as const, part }))
        ?? [{ kind: 'table' as const, table }])
        .sort((a, b) => itemBytes(b) - itemBytes(a)),
    ];
    const partsLeft = new Map([...split?.parts ?? []].map(([oid, ps]) => [oid, { left: ps.length, rows: 0, sourceRows: 0, bytes: 0, started: Date.now() }]));
    const workerCount = Math.max(1, Math.min(m.copy.jobs, items.length));
    const writers = [control, ...await Promise.all(Array.from({ length: workerCount - 1 }, () => track(openWriter(db.destination, sessionOpts))))];
    const readers = await Promise.all(Array.from({ length: workerCount }, () => track(openSnapshotReader(db.source, snapshot!.id, sessionOpts))));
    const workers: Worker[] = readers.map((reader, i) => ({ reader, writer: writers[i] }));
    // Each table's COPY format: measured on a sample for the large ones (copy-format.ts), in the snapshot.
    const formats = new Map<number, CopyFormat>();
    for (const t of catalog.tables) {
      const choice = await chooseFormat(snapshot.client, t, snapshot.serverVersionNum, destinationVersionNum);
      formats.set(t.oid, choice.format);
      if (choice.sample) log('info', `COPY format of ${qualifiedName(t)}: ${describeChoice(choice)}`);
    }
    const binaryTables = [...formats.values()].filter((f) => f === 'binary').length;
    log('info', `copying with ${workerCount} workers; ${binaryTables} tables in binary format, ${catalog.tables.length - binaryTables} in text`);

    await withTimeout(controller, new StreamTimeoutError(db.name, 'copy', m.timeouts.dump), m.timeouts.dump, () =>
      drainQueue(items, { workers, controller }, async (item, w, signal) => {
        if (item.kind === 'large-objects') {
          const bytes = await copyLargeObjects(w.reader, w.writer, item.oids, { signal, onBytes: (n) => progress.addBytes(n) });
          log('info', `copied ${item.oids.length} large objects (${formatMiB(bytes)})`);
          return;
        }
        const t = item.kind === 'part' ? item.part.table : item.table;
        const format = formats.get(t.oid)!;
        const started = Date.now();
        const res = await copyTable(w.reader, w.writer, t, {
          format, signal, onBytes: (n) => progress.addBytes(n), ...(item.kind === 'part' ? { partWhere: item.part.where } : {}),
        });
        let done = res;
        if (item.kind === 'part') {
          // The table is loaded when its last part is: only then its indexes, its row count and its progress.
          const acc = partsLeft.get(t.oid)!;
          acc.left--;
          acc.rows += res.rows; acc.sourceRows += res.sourceRows; acc.bytes += res.bytes;
          log('info', `copied part ${item.part.index}/${item.part.count} of ${qualifiedName(t)}: ${res.rows} rows, ${formatMiB(res.bytes)} ${format}`);
          if (acc.left > 0) return;
          done = acc;
        }
        progress.tableDone(done.rows);
        if (t.extensionFilter === undefined) sourceRowCounts.set(qualifiedName(t), done.sourceRows);
        postData!.tableLoaded(t.oid);
        const startedAt = item.kind === 'part' ? partsLeft.get(t.oid)!.started : started;
        log('info', `copied ${qualifiedName(t)}: ${done.rows} rows, ${formatMiB(done.bytes)} ${format} in ${((Date.now() - startedAt) / 1000).toFixed(1)}s`);
      }));
    // The readers' transactions and the snapshot are no longer needed: release the source (locks, xmin).
    await Promise.all(readers.map(async (r) => { await r.query('COMMIT'); await release(r); }));
    if (hook) await hook;
    await snapshot.close();
    const copy = clock.lap();

    // post-data: what the early builds have not done
    progress.enter('post-data');
    const early = await postData.finish();
    if (early.earlyEntries > 0) log('info', `${early.earlyEntries} indexes and constraints of ${early.earlyTables} tables were built while the copy ran`);
    const postDataSeconds = clock.lap();

    progress.enter('sequences');
    await setSequences(control, catalog.sequences);

    progress.enter('analyze');
    await analyze(catalog, writers, controller);

    return {
      tables: catalog.tables.length,
      rows: progress.rowsCopied,
      bytes: progress.bytesCopied,
      snapshot: snapshot.id,
      sourceRowCounts,
      seconds: { preData, copy, postData: postDataSeconds },
    };
  } catch (err) {
    const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
    if (!controller.signal.aborted) controller.abort(err);
    // A stop we caused explains the failure better than the broken sockets and killed tools it left behind.
    if (reason instanceof StreamAbortedError || reason instanceof StreamTimeoutError) throw reason;
    // The snapshot hook's own failure, not the broken sockets it left behind.
    if (hookError) throw hookError.err;
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onCallerAbort);
    await Promise.all([...sessions].map(release));
    await snapshot?.destroy();
    // Never leave the caller's snapshot work running (it was told to stop by the controller's signal).
    if (hook) await hook.catch(() => undefined);
    await postData?.settle();
    await rm(archive, { force: true });
  }
}

/** The copied tables (largest first, as the catalog orders them), then the partitioned parents. */
async function analyze(catalog: SourceCatalog, writers: readonly Client[], controller: AbortController): Promise<void> {
  await analyzeTables(writers, { tables: catalog.tables.map(qualifiedName), partitionedParents: catalog.partitionedParents.map(qualifiedName) }, controller);
}

/** Runs `fn`; after `seconds` aborts the controller with `timeoutError`. */
async function withTimeout<T>(controller: AbortController, timeoutError: Error, seconds: number, fn: () => Promise<T>): Promise<T> {
  const timer = setTimeout(() => controller.abort(timeoutError), seconds * 1000);
  try {
    return await fn();
  } finally {
    clearTimeout(timer);
  }
}

function stopwatch(): { lap(): number } {
  let last = process.hrtime.bigint();
  return {
    lap() {
      const now = process.hrtime.bigint();
      const s = Number(now - last) / 1e9;
      last = now;
      return Math.round(s * 1000) / 1000;
    },
  };
}

function itemBytes(item: CopyItem): number {
  return item.kind === 'part' ? item.part.bytes : item.kind === 'table' ? item.table.bytes : Infinity;
}

function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}

function formatMiB(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
