/**
 * Post-data while the copy runs (as pgcopydb does): a table's indexes and its primary key, unique and exclusion
 * constraints are restored as soon as that table is loaded, by `pg_restore --use-list` on the schema archive
 * with just those entries, so index builds overlap the copy of the tables still streaming. Tables loaded
 * while a build runs are taken together by the next one (one pg_restore at a time, with restore.jobs jobs).
 * What needs every table (foreign keys, triggers, index attachments, policies, comments, matview data) and
 * anything not built early is restored by `finish`, in one parallel pg_restore of the rest of the section.
 */
import { rm, writeFile } from 'node:fs/promises';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { restoreSection, type ToolContext } from './schema-archive';

export interface PostDataOptions {
  readonly tools: ToolContext;
  readonly destination: ResolvedEndpoint;
  /** The schema archive (custom format). */
  readonly archive: string;
  /** Every entry line of the archive's listing. */
  readonly entryLines: readonly string[];
  /** By table OID, the listing lines that may be restored once that table is loaded. */
  readonly tableLevel: ReadonlyMap<number, readonly string[]>;
  /** Parallel jobs for each pg_restore. */
  readonly jobs: number;
  /** A failed early build: the stream stops (the same error is thrown by `finish`). */
  readonly onError: (err: unknown) => void;
}

export class PostDataScheduler {
  private readonly pending: string[] = [];
  private pendingTables = 0;
  private readonly done = new Set<string>();
  private running: Promise<void> | undefined;
  private failure: { err: unknown } | undefined;
  private closing = false;
  private readonly listFiles: string[] = [];
  private batches = 0;
  private tablesEarly = 0;

  constructor(private readonly opts: PostDataOptions) {}

  /** The table's rows are committed: its table-level entries may be restored now. */
  tableLoaded(tableOid: number): void {
    const lines = this.opts.tableLevel.get(tableOid);
    if (!lines?.length || this.failure) return;
    this.pending.push(...lines);
    this.pendingTables++;
    this.kick();
  }

  /** Waits for the early builds, then restores the rest of the post-data section. */
  async finish(): Promise<{ earlyEntries: number; earlyTables: number }> {
    this.closing = true;
    while (this.running) await this.running;
    if (this.failure) throw this.failure.err;
    // Everything not built early, including what was still waiting for its turn, goes to the last pg_restore.
    const rest = this.opts.entryLines.filter((l) => !this.done.has(l));
    await this.restore(rest, 'rest', this.opts.jobs);
    return { earlyEntries: this.done.size, earlyTables: this.tablesEarly };
  }

  /** Waits until no early build runs (after a failure or an abort), and removes the list files. */
  async settle(): Promise<void> {
    this.closing = true;
    while (this.running) await this.running;
    await Promise.all(this.listFiles.map((f) => rm(f, { force: true })));
  }

  private kick(): void {
    if (this.closing || this.running || this.pending.length === 0) return;
    const batch = this.pending.splice(0);
    const tables = this.pendingTables;
    this.pendingTables = 0;
    this.running = (async () => {
      try {
        await this.restore(batch, `early-${++this.batches}`, Math.min(this.opts.jobs, batch.length));
        for (const l of batch) this.done.add(l);
        this.tablesEarly += tables;
      } catch (err) {
        this.failure ??= { err };
        this.opts.onError(err);
      } finally {
        this.running = undefined;
      }
      if (!this.failure) this.kick();
    })();
  }

  private async restore(lines: readonly string[], label: string, jobs: number): Promise<void> {
    const listFile = `${this.opts.archive}.${label}.list`;
    this.listFiles.push(listFile);
    await writeFile(listFile, `${lines.join('\n')}\n`, { mode: 0o600 });
    await restoreSection(this.opts.tools, this.opts.destination, this.opts.archive, 'post-data', { listFile, jobs: Math.max(1, jobs) });
  }
}
