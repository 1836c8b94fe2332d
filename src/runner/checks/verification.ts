/**
 * Folder checks/: what is found out rather than moved: pre-flight (preflight/), verification (this file) with the
 * schema inventory (inventory/), checksums, sequence positions, the schemas a dump covers and the progress marker
 * on the destination. Read only on the source. Imports postgres/, report/, and globals/ and online/ for their
 * pre-flight checks; imported by phases/, the engines and migrate.ts.
 *
 * Verification after the restore, source against destination, in the schemas the dump covers:
 * - `counts`: exact row counts of every table (leaf partitions counted, partitioned parents not, so no row is
 *   counted twice) and materialized view, the state of every sequence, and the object inventory (tables,
 *   columns, indexes, constraints, triggers, functions, types, policies; privileges unless noAcl; owners unless
 *   noOwner);
 * - `checksums`: all of that, plus an order-independent content checksum of every table. The source side may
 *   be given, computed by the caller in the snapshot the dump used, so that writes on the source since the
 *   dump are not reported as loss.
 * Both sides are connected read only; counts run in parallel on a few connections per side, largest first.
 */
import { connect as netConnect } from 'node:net';
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { compareChecksums, tableChecksums, type TableChecksum } from './checksum';
import { connect, describeEndpoint } from '../postgres/connection';
import { ToolAbortedError } from '../postgres/exec';
import { compareInventories, readInventory } from './inventory/inventory';
import { printedByDestination } from './inventory/version-rules';
import { schemaMatcher } from './dumped-schemas';
import { displayName, qualifiedName } from '../postgres/sql';

export interface VerifyDifference {
  readonly schema: string;
  /** Object name (table, materialized view, sequence, view). */
  readonly object: string;
  /** rows, sequence: from counting; inventory: an object is missing, extra or different; checksum: table content differs. */
  readonly kind: 'rows' | 'sequence' | 'inventory' | 'checksum';
  /** Row count, sequence state ("10700 (is_called true)"), "populated"/"not populated", "present", or a definition. */
  readonly source: number | string;
  /** Same, or "missing". */
  readonly destination: number | string;
  readonly message: string;
}

export interface VerifyResult {
  /** No difference. */
  readonly ok: boolean;
  /** Tables and materialized views compared. */
  readonly tables: number;
  /** Rows counted on the source in the tables whose counts matched. */
  readonly rowsVerified: number;
  /** Sequences compared. */
  readonly sequences: number;
  /** Objects in the source inventory that were compared. */
  readonly objects: number;
  /** Tables whose content checksum was compared (verify: checksums). */
  readonly checksummed: number;
  readonly differences: VerifyDifference[];
}

export interface VerifyOptions {
  /** Connections per side for counting. @default 4 */
  readonly concurrency?: number;
  /**
   * Source checksums taken in the dump's snapshot (verify: checksums).
   * @default - computed now on the live source: writes since the dump then show as differences
   */
  readonly sourceChecksums?: ReadonlyMap<string, TableChecksum>;
  /**
   * Exact source row counts taken in the copy's snapshot, by quoted "schema"."name" (stream mode: COPY TO's
   * command tags; dump mode: counted in pg_dump's snapshot while it ran). Those tables are then counted on the
   * destination only.
   * @default - counted now on the live source
   */
  readonly sourceRowCounts?: ReadonlyMap<string, number>;
  /**
   * Compare sequences and the object inventory only, no table contents (online mode's check inside the write
   * pause: the contents were verified at a consistent point before it).
   * @default false
   */
  readonly skipTableData?: boolean;
  /**
   * Aborting cancels the running queries on both servers (a cancel request, as psql's Ctrl-C sends) and ends
   * every session, so no count waiting on a lock stays behind on a server; the call then fails with a
   * ToolAbortedError once the sessions are gone.
   */
  readonly signal?: AbortSignal;
}

type Kind = 'r' | 'p' | 'v' | 'm' | 'S';

interface Relation {
  readonly schema: string;
  readonly name: string;
  readonly kind: Kind;
  readonly populated: boolean;
  /** Planner estimate, only to order the work. */
  readonly estimate: number;
}

const KIND_NOUN: Record<Kind, string> = {
  r: 'table', p: 'partitioned table', v: 'view', m: 'materialized view', S: 'sequence',
};

export async function verifyDatabase(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, opts: VerifyOptions = {},
): Promise<VerifyResult> {
  const timeoutSeconds = config.migration.timeouts.verify;
  const connectOpts = { readOnly: true, connectTimeoutSeconds: config.migration.timeouts.connect, applicationName: 'db-migration verify' };
  const clients: Array<{ client: Client; side: 'source' | 'destination' }> = [];
  let stopping: Promise<unknown> | undefined;
  // Cancel what runs, then drop the sessions: a backend waiting on a lock does not notice a closed socket.
  const stop = () => {
    stopping ??= Promise.all(clients.map(async (c) => {
      await cancelRunningQuery(c.client, db[c.side]);
      await c.client.end().catch(() => undefined);
    }));
  };
  const open = async (side: 'source' | 'destination') => {
    const c = await connect(db[side], env, connectOpts);
    clients.push({ client: c, side });
    if (stopping) {
      await c.end().catch(() => undefined);
      throw new Error('verification stopped');
    }
    // PostgreSQL 14 and later also notice a vanished client during a long query (ignored where unknown).
    await c.query('SET client_connection_check_interval = 2000').catch(() => undefined);
    // A count is one scan: compiling it costs more than it saves (0.25 s of 0.7 s on 5 million rows).
    await c.query('SET jit = off');
    return c;
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, timeoutSeconds * 1000);
  const started = Date.now();
  const onAbort = () => stop();
  if (opts.signal?.aborted) stop();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const [src, dst] = await Promise.all([open('source'), open('destination')]);
    const matches = schemaMatcher(config.migration.dump);
    const schemas = (await src.query<{ name: string }>(`SELECT nspname AS name FROM pg_namespace ORDER BY 1`)).rows
      .map((r) => r.name).filter(matches);
    const [srcRels, dstRels] = await Promise.all([listRelations(src, schemas), listRelations(dst, schemas)]);
    const dstByName = new Map(dstRels.map((r) => [`${r.schema}.${r.name}`, r]));

    const differences: VerifyDifference[] = [];
    const tasks: Array<(s: Client, d: Client) => Promise<void>> = [];
    let tables = 0;
    let sequences = 0;
    let rowsVerified = 0;

    for (const rel of srcRels) {
      const other = dstByName.get(`${rel.schema}.${rel.name}`);
      const label = `${KIND_NOUN[rel.kind]} ${displayName(rel.schema, rel.name)}`;
      // A missing object, or a materialized view populated on one side only, is reported by the inventory.
      if (!other || other.kind !== rel.kind) continue;
      const q = qualifiedName(rel.schema, rel.name);
      if (rel.kind === 'r' || rel.kind === 'm') {
        tables++;
        if (opts.skipTableData) continue;
        // An unpopulated materialized view cannot be read; whether it holds data is compared by the inventory.
        if (rel.kind === 'm' && (!rel.populated || !other.populated)) continue;
        const sql = `SELECT count(*)::text AS n FROM ${rel.kind === 'r' ? 'ONLY ' : ''}${q}`;
        // Counts taken in the copy's snapshot (the stream's COPY TO tags, counts or checksums read in pg_dump's):
        // rows written to the source since are not reported as differences, and the source is not read again.
        const snapshotRows = rel.kind === 'r' ? opts.sourceRowCounts?.get(q) ?? opts.sourceChecksums?.get(q)?.rows : undefined;
        tasks.push(async (s, d) => {
          const [a, b] = await Promise.all([
            snapshotRows !== undefined ? Promise.resolve({ rows: [{ n: String(snapshotRows) }] }) : s.query<{ n: string }>(sql),
            d.query<{ n: string }>(sql),
          ]);
          const [ns, nd] = [Number(a.rows[0].n), Number(b.rows[0].n)];
          if (ns === nd) {
            rowsVerified += ns;
          } else {
            differences.push({
              schema: rel.schema, object: rel.name, kind: 'rows', source: ns, destination: nd,
              message: `${label}: ${ns} rows in the source, ${nd} in the destination (${nd > ns ? '+' : ''}${nd - ns})`,
            });
          }
        });
      } else if (rel.kind === 'S') {
        sequences++;
        const sql = `SELECT last_value::text AS last_value, is_called FROM ${q}`;
        tasks.push(async (s, d) => {
          const [a, b] = await Promise.all([
            s.query<{ last_value: string; is_called: boolean }>(sql), d.query<{ last_value: string; is_called: boolean }>(sql),
          ]);
          const state = (r: { last_value: string; is_called: boolean }) => `${r.last_value} (is_called ${r.is_called})`;
          const [ss, ds] = [state(a.rows[0]), state(b.rows[0])];
          if (ss !== ds) {
            differences.push({
              schema: rel.schema, object: rel.name, kind: 'sequence', source: ss, destination: ds,
              message: `${label}: last_value ${ss} in the source, ${ds} in the destination`,
            });
          }
        });
      }
    }

    await runPool(tasks, Math.max(1, opts.concurrency ?? 4), src, dst, () => Promise.all([open('source'), open('destination')]));

    // The object inventory: what pg_restore can silently lose (indexes, constraints, policies, grants...).
    const { schemas: only, excludeSchemas } = config.migration.dump;
    const inventoryOpts = { schemas: only, excludeSchemas, includeAcl: !config.migration.restore.noAcl, includeOwners: !config.migration.restore.noOwner };
    const [srcInv, dstInv] = await Promise.all([readInventory(src, inventoryOpts), readInventory(dst, inventoryOpts)]);
    // Across major versions, the source's view queries as the destination prints them (inventory/version-rules.ts).
    const srcAsPrinted = await printedByDestination(dst, srcInv, dstInv);
    for (const d of compareInventories(srcAsPrinted, dstInv)) {
      const [source, destination] = d.what === 'missing' ? ['present', 'missing']
        : d.what === 'extra' ? ['missing', 'present'] : [d.source ?? '', d.destination ?? ''];
      differences.push({ schema: d.schema, object: d.object, kind: 'inventory', source, destination, message: d.message });
    }

    let checksummed = 0;
    if (config.migration.verify === 'checksums' && !opts.skipTableData) {
      const selection = { schemas: only, excludeSchemas };
      const [srcSums, dstSums] = await Promise.all([
        opts.sourceChecksums ? Promise.resolve(opts.sourceChecksums) : tableChecksums(src, selection),
        tableChecksums(dst, selection),
      ]);
      checksummed = srcSums.size;
      for (const d of compareChecksums(new Map(srcSums), dstSums)) {
        differences.push({
          schema: d.schema, object: d.object, kind: 'checksum', source: d.source ?? 'missing', destination: d.destination ?? 'missing', message: d.message,
        });
      }
    }
    differences.sort((a, b) => cmp(a.schema, b.schema) || cmp(a.object, b.object));
    return { ok: differences.length === 0, tables, rowsVerified, sequences, objects: srcInv.objects.length, checksummed, differences };
  } catch (err) {
    if (timedOut) {
      throw new Error(`verification of ${db.name} (${describeEndpoint(db.destination)}) did not finish within timeouts.verify (${timeoutSeconds}s)`);
    }
    if (opts.signal?.aborted) throw new ToolAbortedError('verify', [], Date.now() - started);
    throw err;
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    if (stopping) await stopping;
    await Promise.all(clients.map((c) => c.client.end().catch(() => undefined)));
  }
}

/**
 * Sends a cancel request for whatever the session is running (the protocol's CancelRequest, as libpq's PQcancel
 * and psql's Ctrl-C send it: a separate plain connection carrying the session's process id and secret key; the
 * server takes it before any TLS or authentication). Harmless when the session is idle. Settles when the server
 * closed that connection, or after two seconds.
 */
export async function cancelRunningQuery(client: Client, ep: { readonly host: string; readonly port: number }): Promise<void> {
  const { processID, secretKey } = client as unknown as { processID?: number; secretKey?: number };
  if (processID === undefined || processID === null || secretKey === undefined || secretKey === null) return;
  await new Promise<void>((resolve) => {
    const socket = netConnect({ host: ep.host, port: ep.port });
    const done = () => { clearTimeout(timer); socket.destroy(); resolve(); };
    const timer = setTimeout(done, 2000);
    socket.on('connect', () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(80877102, 4); // CancelRequest code
      packet.writeInt32BE(processID, 8);
      packet.writeInt32BE(secretKey, 12);
      socket.write(packet);
    });
    socket.on('close', done);
    socket.on('error', done);
  });
}

/** Leaf tables, materialized views, sequences, and (to report them missing) views and partitioned tables. */
async function listRelations(client: Client, schemas: readonly string[]): Promise<Relation[]> {
  const res = await client.query<Relation>(`
    SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind, c.relispopulated AS populated,
           greatest(c.reltuples, 0)::float8 AS estimate
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relpersistence <> 't' AND n.nspname = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
    ORDER BY c.reltuples DESC, n.nspname, c.relname`, [schemas]);
  return res.rows;
}

/** Runs tasks on `size` pairs of connections (the first pair given, the rest opened on demand). */
async function runPool(
  tasks: Array<(s: Client, d: Client) => Promise<void>>, size: number, src: Client, dst: Client,
  openPair: () => Promise<[Client, Client]>,
): Promise<void> {
  let next = 0;
  const worker = async (pair: [Client, Client]) => {
    while (next < tasks.length) {
      const task = tasks[next++];
      await task(pair[0], pair[1]);
    }
  };
  const workers = [worker([src, dst])];
  for (let i = 1; i < Math.min(size, tasks.length); i++) workers.push(openPair().then(worker));
  // Let every worker finish or fail before reporting, so no query is left running on a closed pool.
  const results = await Promise.allSettled(workers);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
