/**
 * The public shapes of the stream engine: what `streamDatabase` takes, reports while it runs, and returns.
 */

export type StreamPhase = 'pre-data' | 'copy' | 'post-data' | 'sequences' | 'analyze';

/** A snapshot of how far the run is; sent at each phase start, after each table and during long copies. */
export interface StreamProgress {
  readonly phase: StreamPhase;
  readonly tablesDone: number;
  readonly tablesTotal: number;
  /** COPY payload bytes received from the source so far. */
  readonly bytesCopied: number;
  /**
   * The bytes the copy is expected to move: the copied tables' on-disk sizes once the catalog is read (an
   * estimate: COPY's payload is not the on-disk size, and large objects' size is not known). @default 0 - not known yet
   */
  readonly bytesExpected: number;
  /** Rows of finished tables (COPY FROM's row count). */
  readonly rowsCopied: number;
}

export interface StreamOptions {
  /** The runner's environment: holds the password variables the runtime config names. */
  readonly env: NodeJS.ProcessEnv;
  /** Directory of pg_dump / pg_restore. @default - $PG_BIN from `env`, else PATH */
  readonly binDir?: string;
  /** Aborting stops every worker and child process and closes every session. */
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: StreamProgress) => void;
  readonly log?: (level: 'info' | 'warn', msg: string) => void;
  /**
   * Called once the source snapshot is exported and the copied tables are locked, with the snapshot id and a
   * signal that fires when the stream stops. It runs alongside the copy (e.g. source checksums in another
   * session that imports the snapshot); the snapshot is released only after its promise settles, and a
   * rejection fails the stream.
   */
  readonly onSnapshot?: (snapshot: string, signal: AbortSignal) => Promise<void>;
  /**
   * Read in this exported snapshot instead of a new one (online mode: the replication slot's, so replication
   * starts exactly where the copy ends). It must stay importable until the pre-data phase has begun.
   * @default - a new snapshot
   */
  readonly importSnapshot?: string;
}

export interface StreamResult {
  /** Tables whose data was copied (leaf tables; partitioned parents hold no rows). */
  readonly tables: number;
  readonly rows: number;
  /** COPY payload bytes (binary or text format, see `copy-format.ts`). */
  readonly bytes: number;
  /** The exported source snapshot every reader used. */
  readonly snapshot: string;
  /**
   * Exact row count of each copied table in that snapshot (COPY TO's command tag), by quoted "schema"."name";
   * tables copied through an extension's filter are left out (the filter selects part of the table).
   */
  readonly sourceRowCounts: ReadonlyMap<string, number>;
  readonly seconds: { readonly preData: number; readonly copy: number; readonly postData: number };
}

/** How a table's rows cross the wire: COPY's text or binary format. */
export type CopyFormat = 'binary' | 'text';
