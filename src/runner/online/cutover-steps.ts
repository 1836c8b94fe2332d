/**
 * One database's cutover, as `migration.online` declares it:
 * 1. full verification (counts or checksums) at consistent points while replication runs (consistent-point.ts);
 * 2. the fence (fence.ts), then wait until the destination has applied everything committed before it;
 * 3. sequences, large objects and the unpublished tables copied (cutover-sync.ts);
 * 4. inside the pause only what can still differ: sequences and the object inventory (DDL run on the source
 *    during replication shows here), and with fence: none, that the source really stopped changing;
 * 5. the caller's `finish` (drop the replication objects, mark the destination verified); the write pause is
 *    measured from the fence to the end of `finish`.
 * A failure lifts the fence and leaves the replication objects in place for another attempt.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { compareChecksums, tableChecksums } from '../checks/checksum';
import { connect, endQuietly } from '../postgres/connection';
import { displayName, qualifiedName } from '../postgres/sql';
import { verifyDatabase } from '../checks/verification';
import { ConsistentReader } from './consistent-point';
import { fence as setFence, liftFence } from './fence';
import { rowsWritten, waitApplied } from './lag';
import { syncAtCutover, type SyncResult } from './cutover-sync';
import type { OnlineLog } from './online-log';
import type { SourceTable } from './tables';

export interface CutoverInput {
  readonly db: RuntimeDatabase;
  readonly config: RuntimeConfig;
  readonly env: NodeJS.ProcessEnv;
  /** The replication objects' name (slot, publication, subscription). */
  readonly name: string;
  readonly replicated: readonly SourceTable[];
  readonly atCutover: readonly SourceTable[];
  /** The runner's read-write source session (reads the slot, sets the fence). */
  readonly admin: Client;
  readonly log: OnlineLog;
  readonly signal: AbortSignal;
  /** Runs inside the pause once everything is verified: drop the replication objects, mark the destination. */
  readonly finish: () => Promise<void>;
}

export interface CutoverResult {
  /** Fence to verified, seconds. */
  readonly pauseSeconds: number;
  /** The full verification before the fence, seconds, and the longest a table's writers waited for it. */
  readonly verifySeconds: number;
  readonly writersWaitedMs: number;
  readonly rowsVerified: number;
  readonly tablesChecksummed: number;
  readonly sync: SyncResult;
  readonly objectsVerified: number;
}

export class CutoverFailed extends Error {
  constructor(message: string, readonly differences: readonly string[] = []) {
    super(message);
  }
}

export async function cutoverDatabase(input: CutoverInput): Promise<CutoverResult> {
  const { db, config, log } = input;
  const m = config.migration;
  const verifyStarted = Date.now();
  const before = await verifyAtConsistentPoints(input);
  const verifySeconds = (Date.now() - verifyStarted) / 1000;
  if (m.verify !== 'none') {
    log('ok', `verified before the fence (${m.verify}): ${input.replicated.length} tables, ${before.rows} rows match at consistent points `
      + `(writers of a table waited at most ${before.writersWaitedMs} ms), in ${verifySeconds.toFixed(1)}s`);
  }

  const fenceStarted = Date.now();
  let fenced = false;
  try {
    const f = await setFence(input.admin, db.source.database, m.online.fence);
    fenced = m.online.fence === 'readOnly';
    log('info', m.online.fence === 'readOnly'
      ? `fence: database ${db.source.database} on the source is read-only for new transactions; ${f.ended} session(s) ended; fence LSN ${f.lsn}`
      : `fence: none (the writers are stopped by the operator); source LSN ${f.lsn}`);
    const waited = await waitApplied(input.admin, input.name, f.lsn, m.online.cutoverTimeoutSeconds * 1000, input.signal);
    log('info', `the destination has applied everything committed before the fence (waited ${waited} ms)`);
    const rowsAtFence = m.online.fence === 'none' ? await quietRows(input) : undefined;

    const sync = await syncAtCutover(db, config, input.env, input.atCutover, input.signal);
    log('info', `copied inside the pause: ${sync.sequences} sequences set, large objects ${sync.largeObjects.copied} copied / `
      + `${sync.largeObjects.removed} removed / ${sync.largeObjects.unchanged} unchanged, ${sync.tables} unpublished tables (${sync.rows} rows), ${sync.matviews} materialized views refreshed`);

    const v = await verifyDatabase(db, config, input.env, { skipTableData: true, signal: input.signal });
    const differences = v.differences.map((d) => d.message);
    if (rowsAtFence !== undefined) {
      const after = await quietRows(input);
      if (after !== rowsAtFence) differences.push(`the source kept changing after the cutover began (fence: none): ${after - rowsAtFence} more rows were replicated`);
    }
    if (differences.length > 0) {
      throw new CutoverFailed(`verification inside the pause found ${differences.length} difference${differences.length === 1 ? '' : 's'}: `
        + `${differences.slice(0, 3).join('; ')}`, differences);
    }
    log('ok', `verified inside the pause: ${v.sequences} sequences and ${v.objects} inventory objects match`);
    await input.finish();
    const pauseSeconds = (Date.now() - fenceStarted) / 1000;
    return {
      pauseSeconds, verifySeconds, writersWaitedMs: before.writersWaitedMs, rowsVerified: before.rows,
      tablesChecksummed: before.checksummed, sync, objectsVerified: v.objects,
    };
  } catch (err) {
    if (fenced) {
      await liftFence(input.admin, db.source.database).then(
        () => log('warn', `fence lifted: database ${db.source.database} on the source accepts writes again`),
        (e: Error) => log('error', `cannot lift the fence (${e.message}): run ALTER DATABASE ... RESET default_transaction_read_only on the source`),
      );
    }
    throw err;
  }
}

/** Table contents, table by table, each at a consistent point of both sides. */
async function verifyAtConsistentPoints(input: CutoverInput): Promise<{ rows: number; checksummed: number; writersWaitedMs: number }> {
  const m = input.config.migration;
  if (m.verify === 'none' || input.replicated.length === 0) return { rows: 0, checksummed: 0, writersWaitedMs: 0 };
  const reader = await ConsistentReader.open(input.admin, input.name, input.db.source, input.db.destination, {
    env: input.env, connectTimeoutSeconds: m.timeouts.connect, signal: input.signal,
  });
  const differences: string[] = [];
  let rows = 0;
  try {
    for (const t of input.replicated) {
      const ref = [{ schema: t.schema, name: t.name }];
      const found = await reader.atPoint(t, async (s, d) => {
        if (m.verify === 'checksums') {
          const [a, b] = await Promise.all([tableChecksums(s, ref), tableChecksums(d, ref)]);
          return { rows: a.get(qualifiedName(t.schema, t.name))?.rows ?? 0, diffs: compareChecksums(a, b).map((x) => x.message) };
        }
        const sql = `SELECT count(*)::text AS n FROM ONLY ${qualifiedName(t.schema, t.name)}`;
        const [a, b] = await Promise.all([s.query<{ n: string }>(sql), d.query<{ n: string }>(sql)]);
        const [ns, nd] = [Number(a.rows[0].n), Number(b.rows[0].n)];
        return { rows: ns, diffs: ns === nd ? [] : [`table ${displayName(t.schema, t.name)}: ${ns} rows in the source, ${nd} in the destination`] };
      });
      rows += found.rows;
      differences.push(...found.diffs);
    }
  } finally {
    await reader.close();
  }
  if (differences.length > 0) {
    throw new CutoverFailed(`verification before the fence found ${differences.length} difference${differences.length === 1 ? '' : 's'}: `
      + `${differences.slice(0, 3).join('; ')}`, differences);
  }
  return { rows, checksummed: m.verify === 'checksums' ? input.replicated.length : 0, writersWaitedMs: reader.maxWritersWaitedMs };
}

/**
 * fence: none: rows the apply worker has written to the published tables on the destination, read once the
 * destination has applied everything the source has written so far and the statistics have been flushed
 * (the apply worker reports them at most once a second).
 */
async function quietRows(input: CutoverInput): Promise<number> {
  const now = await input.admin.query<{ lsn: string }>('SELECT pg_catalog.pg_current_wal_insert_lsn()::text AS lsn');
  await waitApplied(input.admin, input.name, now.rows[0].lsn, input.config.migration.online.cutoverTimeoutSeconds * 1000, input.signal);
  await new Promise((r) => setTimeout(r, 1100));
  const dst = await connect(input.db.destination, input.env, { readOnly: true, connectTimeoutSeconds: input.config.migration.timeouts.connect });
  try {
    return await rowsWritten(dst, input.replicated);
  } finally {
    await endQuietly(dst);
  }
}
