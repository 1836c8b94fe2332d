/**
 * The dump phase (dump mode): pg_dump to the dumps volume, every attempt from an empty directory; with
 * verification, in a snapshot of the runner's own whose source side verify reads meanwhile.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { exportSnapshot, releaseSnapshot, tableChecksums, tableRowCounts, type TableChecksum } from '../checks/checksum';
import { connect } from '../postgres/connection';
import { dumpDatabase, type DumpResult, type PhaseRunOptions } from '../dump-restore/pg-dump';
import { classifyError } from '../postgres/errors';
import { ToolAbortedError, ToolTimeoutError } from '../postgres/exec';
import type { DatabasePlan } from '../plan';
import type { DatabasePreflight } from '../checks/preflight/checks';
import { directorySize, formatBytes, formatDuration } from '../report/progress';
import { withRetry } from '../postgres/retry';
import { quoteIdent } from '../postgres/sql';
import type { DatabaseRun } from './context';
import { inSourceSnapshot } from './source-snapshot';

export async function dumpPhase(run: DatabaseRun): Promise<void> {
  const { db } = run;
  const m = run.migration;
  const [dump, dumpSeconds] = await run.timed('dump', () => withRetry(
    async () => {
      await run.readIdentity('dump');
      const dumpOpts = {
        ...run.phaseOptions('dump'), timeoutMs: m.timeouts.dump * 1000, databaseBytes: run.facts?.sourceSizeBytes,
        // The run's progress: the dump is the first half of the database's work, the restore the second.
        onFraction: (f: number) => run.options.runProgress?.update(db.name, f / 2),
      };
      if (!db.dumpInSnapshot) return dumpDatabase(db, dumpOpts);
      const res = await dumpWithSourceFacts(db, run.runtimeDb, run.config, dumpOpts);
      run.sourceChecksums = res.checksums;
      run.sourceRowCounts = res.rowCounts;
      return res;
    },
    {
      ...run.retry, phase: 'dump', logger: run.phaseLog('dump'),
      ...(db.dumpInSnapshot ? { timeoutSetting: `migration.timeouts.dump (pg_dump) or migration.timeouts.verify (source ${m.verify === 'checksums' ? 'checksums' : 'row counts'})` } : {}),
    },
  ));
  run.record({ dumpSeconds, dumpBytes: dump.bytes });
  run.phaseLog('dump').ok(`dumped ${formatBytes(dump.bytes)} in ${formatDuration(dumpSeconds)}`);
}

/**
 * Dump mode with verification: exports a snapshot on the source, runs pg_dump in it (--snapshot) and meanwhile
 * reads the source side of verify in it on a session of its own (row counts for verify: counts, checksums for
 * verify: checksums), so verify compares the destination with exactly what was dumped: writes on the source
 * during the migration are not reported as loss. The snapshot is released when both are done; the source side
 * may take at most timeouts.verify.
 */
async function dumpWithSourceFacts(
  db: DatabasePlan, runtimeDb: RuntimeDatabase, config: RuntimeConfig, opts: PhaseRunOptions & { readonly databaseBytes?: number },
): Promise<DumpResult & { checksums?: Map<string, TableChecksum>; rowCounts?: Map<string, number> }> {
  const m = config.migration;
  const { env, signal, logger } = opts;
  const what = m.verify === 'checksums' ? 'checksums' : 'row counts';
  const holder = await connect(db.source, env, { readOnly: true, connectTimeoutSeconds: m.timeouts.connect, applicationName: 'db-migration snapshot' });
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  const started = Date.now();
  try {
    await holder.query('SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0');
    const snapshot = await exportSnapshot(holder);
    logger.info(`source snapshot ${snapshot} exported: pg_dump runs in it (--snapshot), and the source ${what} (verify: ${m.verify}) are read in it meanwhile`);
    timer = setTimeout(() => { timedOut = true; stop.abort(); }, m.timeouts.verify * 1000);
    const selection = { schemas: m.dump.schemas, excludeSchemas: m.dump.excludeSchemas };
    type Facts = { checksums?: Map<string, TableChecksum>; rowCounts?: Map<string, number> };
    const facts = inSourceSnapshot<Facts>(runtimeDb, config, env, snapshot, stop.signal, `db-migration ${m.verify}`, async (client) => (m.verify === 'checksums'
      ? { checksums: await tableChecksums(client, selection) }
      : { rowCounts: await tableRowCounts(client, selection) }));
    facts.catch(() => undefined);
    let dump: DumpResult;
    try {
      dump = await dumpDatabase(db, { ...opts, snapshot });
    } catch (err) {
      stop.abort();
      await facts.catch(() => undefined);
      throw err;
    }
    let read: Facts;
    try {
      read = await facts;
    } catch (err) {
      if (signal?.aborted) throw new ToolAbortedError(`source ${what}`, [], Date.now() - started);
      if (timedOut) throw new ToolTimeoutError(`source ${what}`, 'dump', m.timeouts.verify * 1000, [], Date.now() - started);
      throw err;
    }
    await releaseSnapshot(holder);
    logger.info(`source ${what} of ${(read.checksums ?? read.rowCounts)!.size} tables taken in snapshot ${snapshot}; snapshot released`);
    return { ...dump, ...read };
  } finally {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
    await holder.end().catch(() => undefined);
  }
}

/**
 * The failures of a dump that deserve a sentence of their own: the dumps volume filled up, or a privilege
 * pre-flight saw was revoked before pg_dump got to the table. Undefined: the general message fits.
 */
export async function dumpFailure(
  cause: unknown, db: DatabasePlan, facts: DatabasePreflight | undefined, config: RuntimeConfig, parallel: number,
): Promise<string | undefined> {
  const { reason } = classifyError(cause);
  const stderr = cause instanceof Error && 'stderrTail' in cause ? (cause as { stderrTail: readonly string[] }).stderrTail.join('\n') : '';
  if (reason === 'out of disk space') {
    const written = await directorySize(db.dumpDir).catch(() => undefined);
    const shared = parallel > 1 ? ` (shared by ${parallel} databases dumped at once: migration.parallelDatabases)` : '';
    return `the dumps volume ${config.paths.dumps} is full (No space left on device)${shared}`
      + `${written !== undefined ? ` after ${formatBytes(written)} of the dump of` : ' while dumping'} `
      + `${facts?.sourceSizeBytes !== undefined ? `a ${formatBytes(facts.sourceSizeBytes)} database` : 'the database'}: `
      + `raise job.storage.dumps (now ${formatBytes(config.storage.dumpsBytes)})`
      + `${config.migration.dump.compression === 0 ? ' or set migration.dump.compression' : ''} and run again`;
  }
  if (reason === 'insufficient privilege') {
    const denied = /permission denied for (table|sequence|schema|function|large object|view|materialized view) ("[^"]+"|\S+)/i.exec(stderr);
    if (!denied) return undefined;
    // pg_dump names the relation bare in the error; the failed statement names it with its schema.
    const query = /Query was: (?:LOCK TABLE|COPY|SELECT .* FROM(?: ONLY)?) ((?:"[^"]+"|[\w$]+)\.(?:"[^"]+"|[\w$]+))/i.exec(stderr);
    const object = query?.[1] ?? denied[2];
    const kind = denied[1].toLowerCase();
    const privilege = kind === 'schema' ? 'USAGE' : kind === 'function' ? 'EXECUTE' : 'SELECT';
    const who = quoteIdent(db.source.username);
    return `permission denied for ${kind} ${object} on the source: the ${privilege} privilege of user ${who} was revoked after pre-flight `
      + `checked it; not retried. Fix: GRANT ${privilege} ON ${kind === 'sequence' ? 'SEQUENCE' : kind === 'schema' ? 'SCHEMA' : kind === 'function' ? 'FUNCTION' : 'TABLE'} `
      + `${object} TO ${who}; and run again`;
  }
  return undefined;
}
