/**
 * The benchmark's datasets, generated on the source server:
 *  - pgbench: `pgbench -i -s SCALE --foreign-keys` (4 tables, pgbench_accounts holds SCALE × 100 000 rows);
 *  - tables: TABLES tables of mixed sizes generated with generate_series: a few large ones (SCALE × 25 000
 *    rows each), some medium (SCALE × 1 000 rows, with jsonb), many small (0-300 rows); every table has a
 *    bigserial primary key and a foreign key to a shared dimension table, medium and large ones secondary
 *    indexes, every fifth small one a foreign key to its predecessor.
 * After generation the source database is VACUUM (FREEZE, ANALYZE)d and CHECKPOINTed, so the first contender
 * does not pay for hint bits the generation left behind.
 */
import { join } from 'node:path';
import { Client } from 'pg';
import type { PgServer } from '../test/support/pg-server';
import { firstErrorLine, runStep } from './measure';
import { readFileSync } from 'node:fs';

export interface DatasetInfo {
  readonly name: string;
  readonly database: string;
  readonly description: string;
  readonly generateSeconds: number;
  readonly sourceBytes: number;
  readonly tables: number;
  /** The largest table (by total relation size) and its exact row count: the cheap correctness check. */
  readonly largestTable: string;
  readonly largestRows: number;
  /** pg_table_size of the largest table (what migration.copy.splitTablesLargerThan compares). */
  readonly largestTableBytes: number;
  /** Its share of the database's user tables' total relation size (indexes and TOAST included), 0-1. */
  readonly largestShare: number;
}

export async function withClient<T>(server: PgServer, database: string, work: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ host: server.host, port: server.port, user: server.superuser, password: server.superPassword, database });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}

/** Drops (terminating sessions) and re-creates an empty database. */
export async function recreateDatabase(server: PgServer, database: string): Promise<void> {
  await server.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
  await server.query(`CREATE DATABASE ${quoteIdent(database)}`);
}

export interface TableFacts {
  readonly tables: number;
  readonly largestTable: string;
  readonly largestRows: number;
}

interface SourceFacts extends TableFacts {
  readonly largestTableBytes: number;
  readonly largestShare: number;
}

/** User tables and the largest one with its exact row count. */
export async function tableFacts(server: PgServer, database: string): Promise<SourceFacts> {
  return withClient(server, database, async (c) => {
    const { rows } = await c.query<{ name: string; n: string; bytes: string; share: number }>(`
      SELECT format('%I.%I', n.nspname, r.relname) AS name, count(*) OVER () AS n, pg_table_size(r.oid) AS bytes,
             pg_total_relation_size(r.oid)::float8 / nullif(sum(pg_total_relation_size(r.oid)) OVER (), 0) AS share
        FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
       WHERE r.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
       ORDER BY pg_total_relation_size(r.oid) DESC, 1 LIMIT 1`);
    if (rows.length === 0) throw new Error(`database ${database} has no tables`);
    const largestTable = rows[0].name;
    const count = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${largestTable}`);
    return {
      tables: Number(rows[0].n), largestTable, largestRows: Number(count.rows[0].n),
      largestTableBytes: Number(rows[0].bytes), largestShare: Number(rows[0].share),
    };
  });
}

/**
 * Checks a destination cheaply against the source's facts: the same number of user tables, and the same exact
 * row count in the source's largest table. Returns a problem, or undefined when it matches.
 */
export async function checkDestination(server: PgServer, database: string, expected: TableFacts): Promise<string | undefined> {
  try {
    return await withClient(server, database, async (c) => {
      const t = await c.query<{ n: string }>(`
        SELECT count(*) AS n FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace
         WHERE r.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'`);
      const tables = Number(t.rows[0].n);
      if (tables !== expected.tables) return `destination has ${tables} tables, source ${expected.tables}`;
      const exists = await c.query<{ ok: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS ok`, [expected.largestTable]);
      if (!exists.rows[0].ok) return `destination lacks ${expected.largestTable}`;
      const r = await c.query<{ n: string }>(`SELECT count(*) AS n FROM ${expected.largestTable}`);
      const rows = Number(r.rows[0].n);
      if (rows !== expected.largestRows) return `${expected.largestTable}: ${rows} rows on the destination, ${expected.largestRows} on the source`;
      return undefined;
    });
  } catch (err) {
    return `check failed: ${(err as Error).message}`;
  }
}

async function finishSource(server: PgServer, database: string): Promise<void> {
  await withClient(server, database, async (c) => { await c.query('VACUUM (FREEZE, ANALYZE)'); });
  await server.query('CHECKPOINT');
}

async function describe(server: PgServer, name: string, database: string, description: string, started: bigint): Promise<DatasetInfo> {
  await finishSource(server, database);
  const generateSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  const facts = await tableFacts(server, database);
  const [size] = await server.query<{ b: string }>(`SELECT pg_database_size(${literal(database)}) AS b`);
  return { name, database, description, generateSeconds, sourceBytes: Number(size.b), ...facts };
}

function literal(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

export async function generatePgbench(
  server: PgServer, opts: { scale: number; binDir: string; workDir: string; timeoutMs: number },
): Promise<DatasetInfo> {
  const database = 'bench_pgbench';
  const started = process.hrtime.bigint();
  await recreateDatabase(server, database);
  const logFile = join(opts.workDir, 'pgbench-init.log');
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.PGPASSWORD = server.superPassword;
  const res = await runStep(join(opts.binDir, 'pgbench'), [
    '-i', '-q', '-s', String(opts.scale), '--foreign-keys', '-h', server.host, '-p', String(server.port), '-U', server.superuser, database,
  ], { env, logFile, timeoutMs: opts.timeoutMs });
  if (res.exitCode !== 0) {
    const why = res.timedOut ? `timed out after ${Math.round(res.seconds)} s` : firstErrorLine(readFileSync(logFile, 'utf8')) ?? `exit ${res.exitCode}`;
    throw new Error(`pgbench -i failed: ${why}`);
  }
  return describe(server, 'pgbench', database, `pgbench -i -s ${opts.scale} --foreign-keys`, started);
}

type Size = 'large' | 'medium' | 'small';

/** The table plan: deterministic, so every run at the same --scale/--tables generates the same data. */
export function tablePlan(tables: number, scale: number): Array<{ name: string; size: Size; rows: number; parent?: string }> {
  const large = Math.max(2, Math.round(tables / 50));
  const medium = Math.max(1, Math.round(tables / 10));
  const plan: Array<{ name: string; size: Size; rows: number; parent?: string }> = [];
  for (let i = 1; i <= tables; i++) {
    const name = `t${String(i).padStart(3, '0')}`;
    const size: Size = i <= large ? 'large' : i <= large + medium ? 'medium' : 'small';
    const rows = size === 'large' ? scale * 25_000 : size === 'medium' ? scale * 1_000 : (i * 37) % 301;
    const prev = plan[plan.length - 1];
    const parent = size === 'small' && i % 5 === 0 && prev?.size === 'small' && prev.rows > 0 ? prev.name : undefined;
    plan.push({ name, size, rows, parent });
  }
  return plan;
}

export async function generateManyTables(
  server: PgServer, opts: { tables: number; scale: number; timeoutMs: number },
): Promise<DatasetInfo> {
  const database = 'bench_tables';
  const started = process.hrtime.bigint();
  await recreateDatabase(server, database);
  const plan = tablePlan(opts.tables, opts.scale);
  const rowsOf = new Map(plan.map((t) => [t.name, t.rows]));
  await withClient(server, database, async (c) => {
    await c.query(`SET statement_timeout = ${Math.round(opts.timeoutMs)}`);
    await c.query(`CREATE TABLE dims (id integer PRIMARY KEY, code text NOT NULL UNIQUE, weight double precision)`);
    await c.query(`INSERT INTO dims SELECT g, 'd' || g, random() FROM generate_series(1, 1000) g`);
    for (const t of plan) {
      const jsonCol = t.size === 'medium' ? ', attrs jsonb' : '';
      const parentCol = t.parent ? ', parent_id bigint' : '';
      await c.query(`CREATE TABLE ${t.name} (
        id bigserial, dim_id integer NOT NULL, created_at timestamptz NOT NULL, amount numeric(12,2), flag boolean,
        label text, payload text${jsonCol}${parentCol})`);
      if (t.rows === 0) {
        await c.query(`ALTER TABLE ${t.name} ADD PRIMARY KEY (id)`);
        continue;
      }
      const jsonVal = t.size === 'medium' ? `, jsonb_build_object('k', g, 'tag', md5(g::text), 'on', g % 2 = 0)` : '';
      const parentVal = t.parent ? `, ((g - 1) % ${rowsOf.get(t.parent)}) + 1` : '';
      // Payload: 0-200 characters, varying with g, so rows differ in width like real tables.
      await c.query(`INSERT INTO ${t.name} (dim_id, created_at, amount, flag, label, payload${t.size === 'medium' ? ', attrs' : ''}${t.parent ? ', parent_id' : ''})
        SELECT (g % 1000) + 1, timestamptz '2024-01-01' + g * interval '1 second', (g % 100000) / 100.0, g % 3 = 0,
               'row ' || g, repeat(md5(g::text), (g % 7))${jsonVal}${parentVal}
          FROM generate_series(1, ${t.rows}) g`);
      await c.query(`ALTER TABLE ${t.name} ADD PRIMARY KEY (id)`);
    }
    for (const t of plan) {
      await c.query(`ALTER TABLE ${t.name} ADD FOREIGN KEY (dim_id) REFERENCES dims (id)`);
      if (t.parent) await c.query(`ALTER TABLE ${t.name} ADD FOREIGN KEY (parent_id) REFERENCES ${t.parent} (id)`);
      if (t.size !== 'small') await c.query(`CREATE INDEX ON ${t.name} (dim_id)`);
      if (t.size === 'large') await c.query(`CREATE INDEX ON ${t.name} (created_at)`);
    }
  });
  const large = plan.filter((t) => t.size === 'large');
  const medium = plan.filter((t) => t.size === 'medium');
  return describe(server, 'tables', database,
    `${opts.tables} tables + dims: ${large.length} × ${large[0]?.rows ?? 0} rows, ${medium.length} × ${medium[0]?.rows ?? 0} rows, `
    + `${plan.length - large.length - medium.length} small (0-300 rows); PKs, FKs, indexes`, started);
}

/**
 * lopsided: one table with most of the bytes, as many production databases have (an events or audit log), and a
 * handful of small ones. `events`: SCALE × 50 000 rows, bigint identity primary key, a foreign key to `users`, a
 * timestamptz, a short text and a jsonb payload of about 250 bytes (too small for TOAST), one secondary index.
 */
export async function generateLopsided(server: PgServer, opts: { scale: number; timeoutMs: number }): Promise<DatasetInfo> {
  const database = 'bench_lopsided';
  const started = process.hrtime.bigint();
  await recreateDatabase(server, database);
  const events = opts.scale * 50_000;
  await withClient(server, database, async (c) => {
    await c.query(`SET statement_timeout = ${Math.round(opts.timeoutMs)}`);
    await c.query(`CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL, plan text)`);
    await c.query(`INSERT INTO users SELECT g, 'user' || g || '@example.com', timestamptz '2023-01-01' + g * interval '1 minute',
                     (ARRAY['free', 'pro', 'team'])[1 + g % 3] FROM generate_series(1, 10000) g`);
    await c.query(`CREATE TABLE event_kinds (id smallint PRIMARY KEY, name text NOT NULL UNIQUE)`);
    await c.query(`INSERT INTO event_kinds SELECT g, 'kind_' || g FROM generate_series(1, 20) g`);
    await c.query(`CREATE TABLE sessions (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users, started_at timestamptz NOT NULL, agent text)`);
    await c.query(`INSERT INTO sessions SELECT g, 1 + g % 10000, timestamptz '2024-01-01' + g * interval '7 seconds', 'agent/' || (g % 50)
                     FROM generate_series(1, 30000) g`);
    await c.query(`CREATE TABLE settings (key text PRIMARY KEY, value text)`);
    await c.query(`INSERT INTO settings SELECT 'key' || g, md5(g::text) FROM generate_series(1, 100) g`);
    await c.query(`CREATE TABLE invoices (id bigint PRIMARY KEY, user_id bigint NOT NULL REFERENCES users, amount numeric(12,2), issued_on date)`);
    await c.query(`INSERT INTO invoices SELECT g, 1 + g % 10000, (g % 100000) / 100.0, date '2024-01-01' + g % 365 FROM generate_series(1, 20000) g`);
    await c.query(`CREATE TABLE events (
      id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, user_id bigint NOT NULL, kind smallint NOT NULL,
      created_at timestamptz NOT NULL, source text, payload jsonb NOT NULL)`);
    await c.query(`INSERT INTO events (id, user_id, kind, created_at, source, payload)
      SELECT g, 1 + g % 10000, 1 + g % 20, timestamptz '2024-01-01' + g * interval '250 milliseconds', 'svc-' || (g % 12),
             jsonb_build_object('request', md5(g::text), 'session', 1 + g % 30000, 'ok', g % 17 <> 0, 'ms', g % 997,
                                'path', '/api/v1/items/' || (g % 5000), 'tags', jsonb_build_array('a' || g % 7, 'b' || g % 11),
                                'note', repeat(md5((g * 7)::text), 2))
        FROM generate_series(1, ${events}) g`);
    await c.query(`SELECT setval(pg_get_serial_sequence('events', 'id'), ${events})`);
    await c.query(`ALTER TABLE events ADD FOREIGN KEY (user_id) REFERENCES users, ADD FOREIGN KEY (kind) REFERENCES event_kinds`);
    await c.query(`CREATE INDEX ON events (created_at)`);
  });
  const info = await describe(server, 'lopsided', database,
    `events (${events} rows, bigint key, jsonb payload) + users, event_kinds, sessions, settings, invoices (20-30 000 rows)`, started);
  return { ...info, description: `${info.description}; events is ${(info.largestShare * 100).toFixed(0)}% of the bytes` };
}
