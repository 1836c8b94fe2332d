/**
 * The PostgreSQL majors a migration can cross (12..18), served by pg-versions.ts (the npm builds; 15 is the
 * machine's), with the machine's PostgreSQL 15 client tools as the runner's image has them: every server starts
 * and reports its major, psql 15 runs a file against each, pg_dump 15 of a small database on 12..15 restores
 * into every newer server, and pg_dump 15 refuses 16..18 with the error the runner's pre-flight will face.
 *
 * The seven servers run at once (started in parallel: ~2 s each alone, ~9 s for all seven on 2 cores). Wall time
 * of this file on 2 cores shared with other test runs (load 3-6), the cache filled: 25-30 s, of which the 18
 * dump-restore pairs take ~11-14 s; with an empty cache add ~13 s for the seven downloads (in parallel).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprint } from './support/compare';
import { dumpRestore, PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { prepareServerVersions } from './support/pg-versions';

const MAJORS = [12, 13, 14, 15, 16, 17, 18];
/** The newest major pg_dump 15 can dump. */
const DUMPABLE = 15;

const SMALL_SQL = `
CREATE SCHEMA shop;
CREATE TYPE shop.status AS ENUM ('new', 'paid');
CREATE TABLE shop.customers (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, tags text[], photo bytea);
CREATE TABLE shop.orders (id serial PRIMARY KEY, customer int NOT NULL REFERENCES shop.customers, status shop.status NOT NULL,
  total numeric(10, 2) CHECK (total >= 0), placed timestamptz NOT NULL DEFAULT '2024-01-01 00:00+00');
INSERT INTO shop.customers (name, tags, photo) SELECT 'customer ' || i || ' café', ARRAY['t' || i % 3], decode(md5(i::text), 'hex')
  FROM generate_series(1, 200) i;
INSERT INTO shop.orders (customer, status, total) SELECT 1 + i % 200, (ARRAY['new', 'paid'])[1 + i % 2]::shop.status, i * 1.25
  FROM generate_series(1, 1000) i;
CREATE VIEW shop.paid AS SELECT * FROM shop.orders WHERE status = 'paid';
CREATE FUNCTION shop.order_count(c int) RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM shop.orders WHERE customer = c';
`;

/** pg_dump 15's stderr and exit code for `database` on `server` (to /dev/null: only the refusal matters). */
function pgDumpStderr(server: PgServer, database: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(join(PG_BIN, 'pg_dump'), ['-Fc', '-f', '/dev/null', '-h', server.host, '-p', String(server.port), '-U', server.superuser, '-d', database], {
      env: { ...process.env, PGPASSWORD: server.superPassword },
    });
    let stderr = '';
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
}

function clientVersion(tool: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(join(PG_BIN, tool), ['--version']);
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.on('error', reject);
    p.on('close', () => resolve(out.trim()));
  });
}

describe('PostgreSQL servers 12..18 with the machine\'s PostgreSQL 15 client tools', () => {
  const servers = new Map<number, PgServer>();
  let work: string;
  let smallFile: string;
  const loaded = new Map<number, Promise<void>>();
  /** CREATE DATABASE small and psql 15 runs SMALL_SQL into it, once per server (either test below may be first). */
  const loadSmall = (major: number): Promise<void> => {
    if (!loaded.has(major)) {
      const server = servers.get(major)!;
      loaded.set(major, server.query('CREATE DATABASE small').then(() => server.psqlFile(smallFile, 'small')));
    }
    return loaded.get(major)!;
  };

  beforeAll(async () => {
    const dirs = await prepareServerVersions(MAJORS);
    const started = await Promise.allSettled(MAJORS.map((major) => startPgServer({ name: `v${major}`, binDir: dirs[major] })));
    started.forEach((s, i) => { if (s.status === 'fulfilled') servers.set(MAJORS[i], s.value); });
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    work = mkdtempSync(join(tmpdir(), 'dbm-pg-versions-'));
    smallFile = join(work, 'small.sql');
    writeFileSync(smallFile, SMALL_SQL);
  }, 300_000);

  afterAll(async () => {
    await Promise.all([...servers.values()].map((s) => s.destroy()));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it.each(MAJORS)('PostgreSQL %i starts, reports its major, and psql 15 runs a file against it', async (major) => {
    // given the server of that major
    const server = servers.get(major)!;

    // then it says it is that major, and PgServer.version agrees
    const [{ server_version_num: num }] = await server.query<{ server_version_num: string }>('SHOW server_version_num');
    expect(Math.floor(Number(num) / 10000)).toBe(major);
    expect(server.version).toBe(Number(num));
    // and its cluster is UTF8 with the C.UTF-8 locale on every major, as startPgServer sets it
    const [db] = await server.query<{ enc: string; collate: string }>(
      "SELECT pg_encoding_to_char(encoding) AS enc, datcollate AS collate FROM pg_database WHERE datname = 'postgres'");
    expect(db).toEqual({ enc: 'UTF8', collate: 'C.UTF-8' });

    // when psql 15 runs a file into a new database
    await loadSmall(major);

    // then the objects and rows are there
    const [counts] = await server.query<{ customers: number; paid: number; n: string }>(
      'SELECT (SELECT count(*)::int FROM shop.customers) AS customers, (SELECT count(*)::int FROM shop.paid) AS paid, shop.order_count(7)::text AS n', 'small');
    expect(counts).toEqual({ customers: 200, paid: 500, n: '5' });
  });

  it('pg_dump 15 of a database on 12..15 restores with pg_restore 15 into every newer server, the same data', async () => {
    // given the small database on every source, and every pair (source ≤ 15, newer destination)
    await Promise.all(MAJORS.filter((s) => s <= DUMPABLE).map(loadSmall));
    const pairs = MAJORS.filter((s) => s <= DUMPABLE).flatMap((s) => MAJORS.filter((d) => d > s).map((d) => [s, d] as const));
    expect(pairs).toHaveLength(18);

    // when each source is dumped and restored into each newer server (one database per source there)
    for (const [from, to] of pairs) await servers.get(to)!.query(`CREATE DATABASE small_from_${from}`);
    await Promise.all(MAJORS.filter((s) => s <= DUMPABLE).map(async (from) => {
      for (const [, to] of pairs.filter(([s]) => s === from)) await dumpRestore(servers.get(from)!, 'small', servers.get(to)!, `small_from_${from}`);
    }));

    // then every destination holds what its source holds, sequences included
    const sources = new Map(await Promise.all(MAJORS.filter((s) => s <= DUMPABLE).map(async (s) => [s, await fingerprint(servers.get(s)!, 'small')] as const)));
    for (const [from, to] of pairs) {
      const before = sources.get(from)!;
      expect(Object.keys(before.tables)).toEqual(['shop.customers', 'shop.orders']);
      expect(await fingerprint(servers.get(to)!, `small_from_${from}`), `${from} → ${to}`).toEqual(before);
    }
  });

  it.each([16, 17, 18])('fails: pg_dump 15 refuses to dump PostgreSQL %i, with a server version mismatch', async (major) => {
    // given pg_dump 15 ("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)") and the newer server's version ("16.14")
    const pgDump = (await clientVersion('pg_dump')).replace(/^pg_dump \(PostgreSQL\) /, '');
    expect(pgDump).toMatch(/^15\./);
    const [{ server_version: serverVersion }] = await servers.get(major)!.query<{ server_version: string }>('SHOW server_version');

    // when it dumps a database there
    const res = await pgDumpStderr(servers.get(major)!, 'postgres');

    // then it exits 1 with exactly this error, before writing anything
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('pg_dump: error: aborting because of server version mismatch\n'
      + `pg_dump: detail: server version: ${serverVersion}; pg_dump version: ${pgDump}\n`);
    if (major === 16) expect(res.stderr).toMatch(/^pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 16\.14; pg_dump version: 15\.\d+/);
  });
});
