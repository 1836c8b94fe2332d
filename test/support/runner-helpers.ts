/**
 * Helpers for the runner tests: capture the runner's output, load the realistic schema, and compare two
 * databases table by table (content digests) and sequence by sequence, independently of the runner's own
 * verification.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { PgServer } from './pg-server';

export const REALISTIC_SCHEMA = join(__dirname, 'realistic-schema.sql');

export interface Captured {
  readonly stream: PassThrough;
  text(): string;
  /** Resolves when a line matching `re` has been written. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
}

export function captureOutput(): Captured {
  const stream = new PassThrough();
  let buf = '';
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  stream.on('data', (c: Buffer) => {
    buf += c.toString();
    for (const w of [...waiters]) {
      const line = buf.split('\n').find((l) => w.re.test(l));
      if (line !== undefined) { waiters.splice(waiters.indexOf(w), 1); w.resolve(line); }
    }
  });
  return {
    stream,
    text: () => buf,
    waitFor(re, timeoutMs = 60_000) {
      const line = buf.split('\n').find((l) => re.test(l));
      if (line !== undefined) return Promise.resolve(line);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`no line matching ${re} within ${timeoutMs}ms; output:\n${buf}`)), timeoutMs);
        waiters.push({ re, resolve: (l) => { clearTimeout(t); resolve(l); } });
      });
    },
  };
}

/** Roles the realistic schema's objects and grants name; a destination needs them for owners and ACLs. */
export async function createAppRoles(server: PgServer): Promise<void> {
  await server.query(`DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_owner') THEN CREATE ROLE app_owner NOLOGIN; END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app_reader') THEN CREATE ROLE app_reader NOLOGIN; END IF;
  END $$`);
}

/** Creates a database on the server and loads the realistic schema into it. */
export async function createRealisticDatabase(server: PgServer, name: string, extraSql?: string): Promise<void> {
  await server.query(`CREATE DATABASE "${name}"`);
  await server.psqlFile(REALISTIC_SCHEMA, name);
  if (extraSql) await server.query(extraSql, name);
}

export interface DatabaseFingerprint {
  /** "schema.table" → "rows:md5" for every ordinary table and leaf partition. */
  readonly tables: Record<string, string>;
  /** "schema.sequence" → "last_value/is_called". */
  readonly sequences: Record<string, string>;
  /** Materialized views: "schema.name" → populated? */
  readonly matviews: Record<string, boolean>;
}

/** Content digest of every table (rows sorted by their text form), every sequence's state, matview state. */
export async function fingerprint(server: PgServer, database: string): Promise<DatabaseFingerprint> {
  const tables = await server.query<{ s: string; t: string }>(`
    SELECT n.nspname AS s, c.relname AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    ORDER BY 1, 2`, database);
  const out: Record<string, string> = {};
  for (const { s, t } of tables) {
    const q = `"${s.replace(/"/g, '""')}"."${t.replace(/"/g, '""')}"`;
    const [row] = await server.query<{ n: string; d: string | null }>(
      `SELECT count(*)::text AS n, md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS d FROM ${q} x`, database);
    out[`${s}.${t}`] = `${row.n}:${row.d}`;
  }
  const seqs = await server.query<{ s: string; n: string }>(`
    SELECT schemaname AS s, sequencename AS n FROM pg_sequences ORDER BY 1, 2`, database);
  const sequences: Record<string, string> = {};
  for (const { s, n } of seqs) {
    const [row] = await server.query<{ v: string; c: boolean }>(
      `SELECT last_value::text AS v, is_called AS c FROM "${s.replace(/"/g, '""')}"."${n.replace(/"/g, '""')}"`, database);
    sequences[`${s}.${n}`] = `${row.v}/${row.c}`;
  }
  const mv = await server.query<{ s: string; n: string; p: boolean }>(
    'SELECT schemaname AS s, matviewname AS n, ispopulated AS p FROM pg_matviews ORDER BY 1, 2', database);
  const matviews = Object.fromEntries(mv.map((m) => [`${m.s}.${m.n}`, m.p]));
  return { tables: out, sequences, matviews };
}

/**
 * Materialized views and whether they are populated ("schema.name" → populated): what compare.ts's fingerprint
 * does not show (it reads the populated ones like tables and leaves the others out).
 */
export async function matviewStates(server: PgServer, database: string): Promise<Record<string, boolean>> {
  const mv = await server.query<{ s: string; n: string; p: boolean }>(
    'SELECT schemaname AS s, matviewname AS n, ispopulated AS p FROM pg_matviews ORDER BY 1, 2', database);
  return Object.fromEntries(mv.map((m) => [`${m.s}.${m.n}`, m.p]));
}

export async function databaseExists(server: PgServer, name: string): Promise<boolean> {
  const rows = await server.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_database WHERE datname = '${name.replace(/'/g, "''")}'`);
  return rows[0].n === 1;
}

/** Processes (pid, argv) whose command line contains `needle`, read from /proc. */
export function processesMatching(needle: string): { pid: number; argv: string[] }[] {
  const found: { pid: number; argv: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.split(') ')[1]?.[0] === 'Z') continue; // exited, waiting to be reaped
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (argv.some((a) => a.includes(needle))) found.push({ pid: Number(entry), argv });
    } catch { /* gone meanwhile */ }
  }
  return found;
}

export function readIfExists(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

/** Bundles src/runner/main.ts the way the chart does (one CommonJS file, pg-native left out) into `outDir`. */
export function buildRunnerBundle(outDir: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { buildSync } = require('esbuild') as typeof import('esbuild');
  const outfile = join(outDir, 'runner.js');
  buildSync({
    entryPoints: [join(__dirname, '..', '..', 'src', 'runner', 'main.ts')],
    bundle: true, platform: 'node', target: 'node20', format: 'cjs', outfile, logLevel: 'silent', external: ['pg-native'],
  });
  return outfile;
}
