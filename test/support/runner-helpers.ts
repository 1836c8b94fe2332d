/**
 * Helpers for the runner tests: capture the runner's output, load the realistic schema, the state of
 * materialized views (the data itself is compared with compare.ts's fingerprint), the runner bundle.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { bundleRunner } from '../../src/chart/runner-bundle';
import { Client } from 'pg';
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

/** Writes the runner bundle the chart ships (src/chart/runner-bundle.ts bundleRunner) to `<outDir>/runner.js`. */
export function buildRunnerBundle(outDir: string): string {
  const outfile = join(outDir, 'runner.js');
  writeFileSync(outfile, bundleRunner().code);
  return outfile;
}

/** A superuser session on `database`, put in `track` so the test can end it (errors after a server stop are ignored). */
export async function superuserSession(server: PgServer, database: string, track: Client[]): Promise<Client> {
  const c = new Client({ host: server.host, port: server.port, user: server.superuser, password: server.superPassword, database });
  c.on('error', () => undefined);
  await c.connect();
  track.push(c);
  return c;
}

/** Waits until a session whose application_name is LIKE `application` waits for a lock on `server`. */
export async function waitForLockWait(server: PgServer, application = 'db-migration', timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const [row] = await server.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE '${application.replace(/'/g, "''")}' AND wait_event_type = 'Lock'`);
    if (row.n > 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no ${application} session waited for a lock`);
}

