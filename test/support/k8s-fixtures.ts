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
