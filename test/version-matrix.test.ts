/**
 * Migrations across PostgreSQL major versions, as operators run them (most often to get a newer server): pagila
 * and the suite's realistic schema, from 12 to 18, 13 to 17, 14 to 16, 15 to 18 and 15 to 15, in dump and stream
 * mode, with checksums, the roles they reference, owners and grants. Server binaries of each version come from
 * the npm registry (support/pg-versions.ts); the client tools are the machine's PostgreSQL 15 ones, which dump
 * servers up to 15 and restore into newer ones. Each migration must verify, and is then compared independently
 * of the runner: table contents and sequences (support/compare.ts), owners, and what every role may do, asked of
 * each server (has_*_privilege), so a newer server's form (MAINTAIN, catalogued NOT NULL) cannot matter here.
 * The runner's verification must still see real differences on 17 and 18, and a source newer than pg_dump is
 * refused in pre-flight.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyDatabase } from '../src/runner/checks/verification';
import { runCli } from './support/cli';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { prepareServerVersions } from './support/pg-versions';
import { REPO } from './support/repo';
import { createRealisticDatabase } from './support/runner-helpers';
import { makeRuntimeConfig } from './support/runtime-config';

const FIXTURES = join(REPO, '..', 'shared', 'fixtures');
const PAIRS: readonly [number, number][] = [[12, 18], [13, 17], [14, 16], [15, 18], [15, 15]];
const MODES = ['dump', 'stream'] as const;
const DATABASES = ['pagila', 'shop'] as const;

const sources = new Map<number, PgServer>();
const destinations = new Map<number, PgServer>();
let newerSource: PgServer;
let work: string;

beforeAll(async () => {
  // given a source server of each version the pairs name (and a 16, newer than pg_dump 15), destinations 15 to 18
  const bin = await prepareServerVersions([12, 13, 14, 15, 16, 17, 18]);
  const start = (role: string, major: number) => startPgServer({ name: `vm-${role}${major}`, binDir: bin[major] });
  const [s12, s13, s14, s15, s16, d15, d16, d17, d18] = await Promise.all([
    start('src', 12), start('src', 13), start('src', 14), start('src', 15), start('src', 16),
    start('dst', 15), start('dst', 16), start('dst', 17), start('dst', 18),
  ]);
  for (const [major, s] of [[12, s12], [13, s13], [14, s14], [15, s15]] as const) sources.set(major, s);
  for (const [major, s] of [[15, d15], [16, d16], [17, d17], [18, d18]] as const) destinations.set(major, s);
  newerSource = s16;
  // pagila (loaded as its README says) and the realistic schema on every source
  await Promise.all([...sources.values()].map(async (s) => {
    await s.query('CREATE DATABASE pagila');
    await s.psqlFile(join(FIXTURES, 'pagila', 'pagila-schema.sql'), 'pagila');
    await s.psqlFile(join(FIXTURES, 'pagila', 'pagila-data.sql'), 'pagila');
    await createRealisticDatabase(s, 'shop');
  }));
  await s16.query('CREATE DATABASE app');
  work = mkdtempSync(join(tmpdir(), 'dbm-versions-'));
}, 600_000);

afterAll(async () => {
  await Promise.all([...sources.values(), ...destinations.values(), newerSource].map((s) => s?.destroy()));
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Runs `db-migration migrate` from `source` to `destination` for the given databases (destination names suffixed). */
async function migrate(source: PgServer, destination: PgServer, label: string, migration: string, databases: readonly string[], suffix: string) {
  const spec = join(work, `${label}.yaml`);
  writeFileSync(spec, `namespace: versions
defaults:
  source:      { host: ${source.host}, port: ${source.port}, username: postgres, password: { secret: pg, key: source }, sslmode: disable }
  destination: { host: ${destination.host}, port: ${destination.port}, username: postgres, password: { secret: pg, key: destination }, sslmode: disable }
migration: ${migration}
databases:
${databases.map((d) => `  - { name: ${d}, source: { database: ${d} }, destination: { database: ${d}${suffix} } }`).join('\n')}
`);
  const secrets = join(work, `${label}.secrets.yaml`);
  writeFileSync(secrets, `apiVersion: v1\nkind: Secret\nmetadata: { name: pg }\nstringData: { source: "${source.superPassword}", destination: "${destination.superPassword}" }\n`);
  return runCli(['migrate', '--spec', spec, '--secrets', secrets, '--work-dir', join(work, label), '--bin-dir', PG_BIN]);
}

/** Who owns what: schemas, relations, functions and types of the user schemas. */
async function owners(server: PgServer, database: string): Promise<Record<string, string>> {
  const rows = await server.query<{ o: string; r: string }>(`
    SELECT 'schema ' || nspname AS o, pg_get_userbyid(nspowner) AS r FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema'
    UNION ALL SELECT 'relation ' || c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
    UNION ALL SELECT 'function ' || p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'`, database);
  return Object.fromEntries(rows.map((x) => [x.o, x.r]));
}

const TABLE_PRIVILEGES = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'];

/** What each of `roles` may do on every table, view, sequence and schema: the server's own answer, for the privileges every version knows. */
async function privileges(server: PgServer, database: string, roles: readonly string[]): Promise<Record<string, string>> {
  if (roles.length === 0) return {};
  const granted = (check: string, list: readonly string[]) =>
    `concat_ws(',', ${list.map((p) => `CASE WHEN ${check.replace('$P', p)} THEN '${p}' END`).join(', ')})`;
  const rows = await server.query<{ k: string; p: string }>(`
    WITH r AS (SELECT unnest(ARRAY[${roles.map((x) => `'${x}'`).join(', ')}]) AS role)
    SELECT r.role || ' on ' || c.oid::regclass::text AS k,
      CASE WHEN c.relkind = 'S' THEN ${granted("has_sequence_privilege(r.role, c.oid, '$P')", ['USAGE', 'SELECT', 'UPDATE'])}
           ELSE ${granted("has_table_privilege(r.role, c.oid, '$P')", TABLE_PRIVILEGES)} END AS p
    FROM r CROSS JOIN pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
    UNION ALL
    SELECT r.role || ' on schema ' || n.nspname, ${granted("has_schema_privilege(r.role, n.oid, '$P')", ['USAGE', 'CREATE'])}
    FROM r CROSS JOIN pg_namespace n WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'`, database);
  return Object.fromEntries(rows.map((x) => [x.k, x.p]));
}

/** The non-superuser roles that own or may use something in the database (those `roles: referenced` carries). */
async function appRoles(server: PgServer): Promise<string[]> {
  const rows = await server.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname !~ '^pg_' AND NOT rolsuper ORDER BY 1");
  return rows.map((r) => r.rolname);
}

describe.each(PAIRS)('from PostgreSQL %i to %i', (from, to) => {
  it.each(MODES)('in %s mode, pagila and the realistic schema arrive identical, with their owners and grants', async (mode) => {
    const [source, destination] = [sources.get(from)!, destinations.get(to)!];
    const suffix = `_${from}_${mode}`;
    // when both databases are migrated with checksums, the roles they reference, owners and grants
    const run = await migrate(source, destination, `${from}-${to}-${mode}`,
      `{ mode: ${mode}, verify: checksums, roles: referenced, restore: { noOwner: false }, retries: { attempts: 1 } }`, DATABASES, suffix);
    // then the runner verified them
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).not.toMatch(/difference/i);
    // and, compared independently of the runner, they are the same
    const roles = await appRoles(source);
    for (const db of DATABASES) {
      const [a, b] = await Promise.all([fingerprint(source, db), fingerprint(destination, `${db}${suffix}`)]);
      expect(Object.keys(a.tables).length, db).toBeGreaterThan(8);
      expect(b, db).toEqual(a);
      expect(await owners(destination, `${db}${suffix}`), db).toEqual(await owners(source, db));
      expect(await privileges(destination, `${db}${suffix}`, roles), db).toEqual(await privileges(source, db, roles));
    }
  });
});

describe.each([17, 18])('to PostgreSQL %i with the default spec', (to) => {
  it('migrates and verifies; a revoked grant, a dropped NOT NULL, a missing row and a changed view are still reported', async () => {
    const [source, destination] = [sources.get(15)!, destinations.get(to)!];
    // given the roles the schema grants to exist on the destination, as the default spec (roles: none) expects
    await destination.query(`DO $$ BEGIN
      BEGIN CREATE ROLE app_owner NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END;
      BEGIN CREATE ROLE app_reader NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END; END $$`);
    // when pagila and the realistic schema move with the default migration settings
    const run = await migrate(source, destination, `default-${to}`, '{}', DATABASES, '_default');
    // then both verify and the run exits 0
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);

    // when the destination then loses a grant, a NOT NULL and a row, a view changes, and it is verified again
    await destination.query(`REVOKE SELECT ON sales.orders FROM app_reader;
      ALTER TABLE inventory.products ALTER COLUMN name DROP NOT NULL;
      DELETE FROM public."café" WHERE id = (SELECT min(id) FROM public."café");
      CREATE OR REPLACE VIEW sales.order_totals AS
        SELECT o.id, o.customer_id, o.status, sales.order_total(o.id) AS total FROM sales.orders o WHERE o.status <> 'cancelled';`, 'shop_default');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_default' } }],
      migration: { verify: 'counts' },
    });
    try {
      const result = await verifyDatabase(t.config.databases[0], t.config, t.env);
      // then exactly those four are reported, in the words of an operator (views printed alike on both versions)
      expect(result.differences.map((d) => d.message).sort()).toEqual([
        'Column inventory.products.name: not null is yes on the source but no on the destination',
        'Privileges of app_reader on table sales.orders (SELECT) are missing on the destination',
        'View sales.order_totals: definition differs',
        'table public.café: 40 rows in the source, 39 in the destination (-1)',
      ]);
    } finally {
      t.cleanup();
    }
  });
});

it('refuses in pre-flight a source newer than pg_dump, saying which tools it needs', async () => {
  const run = await migrate(newerSource, destinations.get(17)!, 'newer-source', '{ retries: { attempts: 1 } }', ['app'], '');
  expect(run.code).toBe(1);
  expect(run.stdout + run.stderr).toMatch(
    /pg_dump 15\.\d+ \(.*pg_dump\) is older than the source server \(PostgreSQL 16\.\d+\) and refuses to dump it: use an image with PostgreSQL client tools >= 16/);
  expect(run.stdout + run.stderr).toContain('pre-flight failed: nothing was dumped or restored');
});
