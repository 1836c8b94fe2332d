/**
 * The restore phase: make sure the destination database exists (creating it when pre-flight allowed it),
 * pg_restore the dump into it, then ANALYZE so the planner has statistics from the first query on.
 *
 * A retried restore starts clean, and only ever removes what this run put there: a database this run
 * created is dropped and created again; a destination that pre-flight found empty is restored with
 * --clean --if-exists (which drops exactly the dump's objects). A destination that held data before the
 * run is never touched beyond what restore.clean asked for.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect, connectFirstAvailable, MAINTENANCE_DATABASES, sqlstate } from '../postgres/connection';
import { runTool, withDeadline } from '../postgres/exec';
import type { Logger } from '../report/log';
import type { PhaseRunOptions } from './pg-dump';
import { commandEnv, formatCommand, type DatabasePlan } from '../plan';
import { analyzeTables, analyzeTargets } from './analyze';
import { readDestinationState, writeMarker, type MigrationMarker } from '../checks/progress-marker';
import { countTocEntries, parseTableDataEntry, RestoreProgress, startRestoreProgress, type TableDataEntry } from '../report/progress';

/** Maintenance databases tried, in order, for CREATE / DROP DATABASE. */

export interface DestinationOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly connectTimeoutSeconds: number;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  /** Time allowed for the whole check-and-create. */
  readonly timeoutMs?: number;
}

function connectMaintenance(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number): Promise<Client> {
  return connectFirstAvailable(ep, env, MAINTENANCE_DATABASES, { readOnly: false, connectTimeoutSeconds });
}

async function closeOnAbort<T>(client: Client, signal: AbortSignal, work: () => Promise<T>): Promise<T> {
  const onAbort = () => { client.end().catch(() => undefined); };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await work();
  } finally {
    signal.removeEventListener('abort', onAbort);
    await client.end().catch(() => undefined);
  }
}

/** Whether the destination database exists (by connecting to it). */
export async function destinationExists(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number): Promise<boolean> {
  try {
    const client = await connect(ep, env, { readOnly: false, connectTimeoutSeconds });
    await client.end().catch(() => undefined);
    return true;
  } catch (err) {
    if (sqlstate(err) === '3D000') return false;
    throw err;
  }
}

/**
 * Creates the destination database from template0 (no extra objects a template1 may carry) when it does
 * not exist. Returns whether this call created it.
 */
export async function ensureDestinationDatabase(db: DatabasePlan, opts: DestinationOptions & { readonly mayCreate: boolean }): Promise<{ created: boolean }> {
  const ep = db.destination;
  return withDeadline('CREATE DATABASE', 'restore', opts, async (signal) => {
    if (await destinationExists(ep, opts.env, opts.connectTimeoutSeconds)) return { created: false };
    if (!opts.mayCreate) {
      throw new Error(`database "${ep.database}" does not exist on the destination and pre-flight found that ${ep.username} may not create it: create it first`);
    }
    const client = await connectMaintenance(ep, opts.env, opts.connectTimeoutSeconds);
    return closeOnAbort(client, signal, async () => {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(ep.database)} TEMPLATE template0`);
      opts.logger.info(`created database "${ep.database}" on the destination`);
      return { created: true };
    });
  });
}

/**
 * Drops and creates again a destination database the runner created (the clean start of a retried restore,
 * or of a database an earlier attempt left half-restored).
 */
export async function recreateDestinationDatabase(
  db: DatabasePlan, opts: DestinationOptions, why = 'created by this run) for a clean retry',
): Promise<void> {
  const ep = db.destination;
  await withDeadline('DROP DATABASE', 'restore', opts, async (signal) => {
    const client = await connectMaintenance(ep, opts.env, opts.connectTimeoutSeconds);
    await closeOnAbort(client, signal, async () => {
      const name = client.escapeIdentifier(ep.database);
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } catch (err) {
        if (sqlstate(err) !== '42601') throw err; // WITH (FORCE) needs PostgreSQL 13
        await client.query(`DROP DATABASE IF EXISTS ${name}`);
      }
      await client.query(`CREATE DATABASE ${name} TEMPLATE template0`);
    });
  });
  opts.logger.info(`dropped and re-created database "${ep.database}" (${why}`);
}

/**
 * Records the progress marker on the destination database (see checks/progress-marker.ts). Returns false, without writing,
 * when the user may not (not the owner) or the database has a comment that is not ours.
 */
export async function recordMarker(db: DatabasePlan, marker: MigrationMarker, opts: DestinationOptions): Promise<boolean> {
  const ep = db.destination;
  return withDeadline('COMMENT ON DATABASE', 'restore', opts, async (signal) => {
    const client = await connect(ep, opts.env, { readOnly: false, connectTimeoutSeconds: opts.connectTimeoutSeconds });
    return closeOnAbort(client, signal, async () => {
      const state = await readDestinationState(client, ep.database);
      if (!state.canMark || state.foreignComment !== undefined) return false;
      await writeMarker(client, ep.database, marker);
      return true;
    });
  });
}

export interface RestoreResult {
  readonly seconds: number;
  /** Items pg_restore reported restoring. */
  readonly items: number;
  /** Entries of the dump's table of contents. */
  readonly totalItems: number;
}

/**
 * pg_restore of the dump. `cleanFirst` runs the plan's retry variant (--clean --if-exists). The list and
 * the restore share the phase's time limit.
 */
export async function restoreDatabase(db: DatabasePlan, opts: PhaseRunOptions & { readonly cleanFirst?: boolean }): Promise<RestoreResult> {
  const { logger } = opts;
  const started = Date.now();
  let totalItems = 0;
  const dataEntries: Array<{ id: number; table: string }> = [];
  await runTool({
    cmd: db.list.cmd,
    args: db.list.args,
    env: commandEnv(db.list, opts.env, opts.passwordVars),
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    phase: 'restore',
    secrets: logger.secrets,
    onStdoutLine: (line) => { // counted as it streams, not kept
      totalItems += countTocEntries([line]);
      const data = parseTableDataEntry(line);
      if (data) dataEntries.push(data);
    },
  });

  const cmd = opts.cleanFirst ? db.restoreRetry : db.restore;
  logger.debug(`running ${formatCommand(cmd)}`);
  const parallel = cmd.args.some((a) => /^--jobs=([2-9]|\d{2,})/.test(a));
  const progress = new RestoreProgress(totalItems, await dataFileSizes(db.dumpDir, dataEntries), parallel);
  const ticker = startRestoreProgress({ logger, progress, intervalMs: opts.progressIntervalMs, onFraction: opts.onFraction });
  try {
    await runTool({
      cmd: cmd.cmd,
      args: cmd.args,
      env: commandEnv(cmd, opts.env, opts.passwordVars),
      timeoutMs: Math.max(1, opts.timeoutMs - (Date.now() - started)),
      signal: opts.signal,
      phase: 'restore',
      secrets: logger.secrets,
      onStderrLine: (line) => { progress.onStderrLine(line); logger.debug(line); },
      onStdoutLine: (line) => logger.debug(line),
    });
    progress.complete();
  } finally {
    ticker.stop();
  }
  return { seconds: (Date.now() - started) / 1000, items: progress.done, totalItems };
}

/** The size of each TABLE DATA entry's file in a directory dump (`<id>.dat`, compressed `<id>.dat.gz` and so on). */
async function dataFileSizes(dumpDir: string, entries: readonly { id: number; table: string }[]): Promise<TableDataEntry[]> {
  const files = await readdir(dumpDir).catch(() => [] as string[]);
  const byId = new Map<number, string>();
  for (const f of files) {
    const m = /^(\d+)\.dat(\.\w+)?$/.exec(f);
    if (m) byId.set(Number(m[1]), f);
  }
  const out: TableDataEntry[] = [];
  for (const e of entries) {
    const f = byId.get(e.id);
    if (f) out.push({ ...e, bytes: (await stat(join(dumpDir, f))).size });
  }
  return out;
}

/**
 * ANALYZE of the whole destination database, `jobs` tables at a time (analyze.ts), bounded by statement_timeout
 * and the phase deadline.
 */
export async function analyzeDatabase(
  db: DatabasePlan, opts: DestinationOptions & { readonly timeoutMs: number; readonly jobs: number },
): Promise<{ seconds: number; tables: number }> {
  const started = Date.now();
  let tables = 0;
  await withDeadline('ANALYZE', 'analyze', opts, async (signal) => {
    const sessions: Client[] = [];
    const stop = () => { for (const c of sessions) c.end().catch(() => undefined); };
    signal.addEventListener('abort', stop, { once: true });
    try {
      const open = async () => {
        const c = await connect(db.destination, opts.env, { readOnly: false, connectTimeoutSeconds: opts.connectTimeoutSeconds });
        sessions.push(c);
        if (signal.aborted) stop();
        // The server stops on its own at the deadline even if this process cannot tell it to.
        await c.query(`SET statement_timeout = ${Math.max(1, Math.round(opts.timeoutMs))}`);
        return c;
      };
      const first = await open();
      const targets = await analyzeTargets(first);
      tables = targets.tables.length + targets.partitionedParents.length;
      const more = await Promise.all(Array.from({ length: Math.max(0, Math.min(opts.jobs, targets.tables.length) - 1) }, open));
      await analyzeTables([first, ...more], targets);
    } finally {
      signal.removeEventListener('abort', stop);
      await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
    }
  });
  return { seconds: (Date.now() - started) / 1000, tables };
}
