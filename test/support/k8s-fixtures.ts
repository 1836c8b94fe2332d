/**
 * Data for the end-to-end suite (test/e2e): the shared sample databases, a table sized so that a phase takes a
 * while, and what a restore must keep besides rows (owners, grants, policies), read from the catalogs.
 */
import { join } from 'node:path';
import type { Workspace } from './k8s-migration';
import { specYaml } from './k8s-migration';
import type { PgServer } from './pg-server';
import { REPO } from './repo';

export const FIXTURES = join(REPO, '..', 'shared', 'fixtures');

/** The images a spec without an image section uses, as `db-migration images` prints them: helper, then node runtime. */
export function defaultImages(ws: Workspace): Promise<string[]> {
  return ws.images(specYaml({ name: 'images', namespace: 'images', source: { port: 5432 }, destination: { port: 5432 }, databases: ['x'] }));
}

/** pagila (../shared/fixtures), as its README loads it, into database `name`. */
export async function loadPagila(server: PgServer, name = 'pagila'): Promise<void> {
  await server.query(`CREATE DATABASE ${name}`);
  await server.psqlFile(join(FIXTURES, 'pagila', 'pagila-schema.sql'), name);
  await server.psqlFile(join(FIXTURES, 'pagila', 'pagila-data.sql'), name);
}

/** chinook: its script creates and fills database chinook_auto_increment. */
export async function loadChinook(server: PgServer): Promise<void> {
  await server.psqlFile(join(FIXTURES, 'chinook', 'Chinook_PostgreSql_AutoIncrementPKs.sql'));
}

export async function loadNorthwind(server: PgServer): Promise<void> {
  await server.query('CREATE DATABASE northwind');
  await server.psqlFile(join(FIXTURES, 'northwind', 'northwind.sql'), 'northwind');
}

/** A small database of its own: one table of `rows` rows and its sequence. */
export async function createSmallDatabase(server: PgServer, name: string, rows = 500): Promise<void> {
  await server.query(`CREATE DATABASE ${name}`);
  await server.query(`CREATE TABLE items (id bigserial PRIMARY KEY, label text NOT NULL, at timestamptz NOT NULL DEFAULT '2024-01-01');
    INSERT INTO items (label) SELECT '${name} item ' || g FROM generate_series(1, ${rows}) g;`, name);
}

/**
 * Owners, privileges and row-level security of every table, sequence, view and schema outside the system schemas,
 * and every policy: what the restore keeps with restore.noOwner and noAcl false (compare.ts compares the rows).
 */
export async function privilegeFacts(server: PgServer, database: string): Promise<unknown[]> {
  const relations = await server.query(`
    SELECT n.nspname, c.relname, c.relkind::text, pg_get_userbyid(c.relowner) AS owner, c.relacl::text AS acl, c.relrowsecurity
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind IN ('r', 'p', 'S', 'v', 'm')
    ORDER BY 1, 2`, database);
  const schemas = await server.query(`
    SELECT nspname, pg_get_userbyid(nspowner) AS owner, nspacl::text AS acl FROM pg_namespace
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1`, database);
  const policies = await server.query('SELECT schemaname, tablename, policyname, roles::text, cmd, qual, with_check FROM pg_policies ORDER BY 1, 2, 3', database);
  return [relations, schemas, policies];
}

/** Rows enough, with createBigDatabase's indexes, that its restore takes several seconds here (about 140 MB of table data). */
export const BIG_ROWS = 2_000_000;

/**
 * A database with one table of BIG_ROWS rows, its primary key, a sequence and three more indexes, two on random
 * text: building them is most of the restore's time after the data.
 */
export async function createBigDatabase(server: PgServer, name: string): Promise<void> {
  await server.query(`CREATE DATABASE ${name}`);
  await server.query(`CREATE TABLE events (id bigserial PRIMARY KEY, account int NOT NULL, at timestamptz NOT NULL, payload text NOT NULL);
    INSERT INTO events (account, at, payload)
      SELECT g % 5000, '2024-01-01'::timestamptz + g * interval '1 second', md5(g::text) FROM generate_series(1, ${BIG_ROWS}) g;
    CREATE INDEX events_account_at ON events (account, at);
    CREATE INDEX events_payload ON events (payload);
    CREATE INDEX events_at_payload ON events (at, payload);`, name);
}

/**
 * Every table's row count and an order-independent digest of its rows (the sum of a 64-bit hash of each row's
 * text), and every sequence's state: compare.ts's fingerprint for tables too large to aggregate as one string.
 */
export async function tableDigests(server: PgServer, database: string): Promise<Record<string, unknown>> {
  const tables = await server.query<{ name: string }>(`
    SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_tables
    WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`, database);
  const out: Record<string, unknown> = {};
  for (const { name } of tables) {
    [out[name]] = await server.query(`SELECT count(*)::bigint AS rows, sum(hashtextextended(t::text, 0)::numeric)::text AS digest FROM ${name} t`, database);
  }
  for (const s of await server.query<{ name: string; last_value: string | null }>("SELECT format('%I.%I', schemaname, sequencename) AS name, last_value::text FROM pg_sequences", database)) {
    out[s.name] = s.last_value;
  }
  return out;
}
