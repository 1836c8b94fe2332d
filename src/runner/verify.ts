/**
 * Verification after the restore: exact row counts of every table (leaf partitions counted, partitioned
 * parents not, so no row is counted twice) and materialized view, and the state of every sequence, source
 * against destination, in the schemas the dump covers. Both sides are connected read only; counts run in
 * parallel on a few connections per side, largest tables first.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../spec/runtime-config';
import { connect, describeEndpoint } from './connection';
import { schemaMatcher } from './schemas';
import { displayName, qualifiedName } from './sql';

export interface VerifyDifference {
  readonly schema: string;
  /** Object name (table, materialized view, sequence, view). */
  readonly object: string;
  readonly kind: 'rows' | 'sequence' | 'missing';
  /** Row count, sequence state ("10700 (is_called true)"), "populated"/"not populated", or "present". */
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
  readonly differences: VerifyDifference[];
}

export interface VerifyOptions {
  /** Connections per side for counting. @default 4 */
  readonly concurrency?: number;
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
  const clients: Client[] = [];
  const open = async (side: 'source' | 'destination') => {
    const c = await connect(db[side], env, connectOpts);
    clients.push(c);
    return c;
  };
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    for (const c of clients) c.end().catch(() => undefined);
  }, timeoutSeconds * 1000);
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
      if (!other || other.kind !== rel.kind) {
        differences.push({
          schema: rel.schema, object: rel.name, kind: 'missing', source: 'present', destination: 'missing',
          message: `${label} is missing on the destination`,
        });
        continue;
      }
      const q = qualifiedName(rel.schema, rel.name);
      if (rel.kind === 'r' || rel.kind === 'm') {
        tables++;
        if (rel.kind === 'm' && (!rel.populated || !other.populated)) {
          // An unpopulated materialized view cannot be read; what must match is whether it holds data.
          if (rel.populated !== other.populated) {
            const state = (p: boolean) => (p ? 'populated' : 'not populated');
            differences.push({
              schema: rel.schema, object: rel.name, kind: 'rows', source: state(rel.populated), destination: state(other.populated),
              message: `${label} is ${state(rel.populated)} on the source but ${state(other.populated)} on the destination`,
            });
          }
          continue;
        }
        const sql = `SELECT count(*)::text AS n FROM ${rel.kind === 'r' ? 'ONLY ' : ''}${q}`;
        tasks.push(async (s, d) => {
          const [a, b] = await Promise.all([s.query<{ n: string }>(sql), d.query<{ n: string }>(sql)]);
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
    differences.sort((a, b) => cmp(a.schema, b.schema) || cmp(a.object, b.object));
    return { ok: differences.length === 0, tables, rowsVerified, sequences, differences };
  } catch (err) {
    if (timedOut) {
      throw new Error(`verification of ${db.name} (${describeEndpoint(db.destination)}) did not finish within timeouts.verify (${timeoutSeconds}s)`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  }
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
