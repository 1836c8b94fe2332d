/**
 * Schema inventory against real servers: a rich source schema copied with pg_dump -Fc | pg_restore compares
 * equal; each deliberate change on the destination is reported precisely and exactly once.
 */
import { join } from 'node:path';
import type { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../src/runner/postgres/connection';
import { compareInventories, normalizeSql, readInventory, type Inventory, type InventoryDifference, type InventoryOptions } from '../src/runner/checks/inventory/inventory';
import { dumpRestore, startPgServer, type PgServer } from './support/pg-server';
import { makeRuntimeConfig } from './support/runtime-config';

const ROLES = ['app_owner', 'app_reader', 'app_writer', 'auditor'];
const FULL: InventoryOptions = { includeAcl: true, includeOwners: true };

/** Added to the realistic schema: docs schema with RLS, policies, grants, default privileges, more kinds of object. */
const EXTRA_SQL = `
CREATE EXTENSION citext;
CREATE EXTENSION pgcrypto;

CREATE SCHEMA docs AUTHORIZATION app_writer;
GRANT USAGE ON SCHEMA docs TO app_reader, auditor;
CREATE TABLE docs.documents (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner_name citext NOT NULL,
  body text NOT NULL DEFAULT '',
  secret text,
  body_length integer GENERATED ALWAYS AS (length(body)) STORED,
  created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE docs.documents OWNER TO app_writer;
ALTER TABLE docs.documents ENABLE ROW LEVEL SECURITY;
CREATE POLICY documents_read ON docs.documents FOR SELECT TO app_reader, auditor USING (owner_name = current_user);
CREATE POLICY documents_write ON docs.documents FOR INSERT TO app_writer WITH CHECK (owner_name = current_user AND body <> '');
GRANT SELECT ON docs.documents TO app_reader;
GRANT SELECT (id, owner_name), UPDATE (body) ON docs.documents TO auditor;
ALTER DEFAULT PRIVILEGES FOR ROLE app_writer IN SCHEMA docs GRANT SELECT ON TABLES TO app_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE app_owner GRANT EXECUTE ON FUNCTIONS TO auditor;

CREATE TYPE docs.address AS (street text, city text, "名前" text);
REVOKE USAGE ON TYPE docs.address FROM PUBLIC;
GRANT USAGE ON TYPE docs.address TO app_reader;
CREATE TYPE docs.price_range AS RANGE (subtype = numeric);
CREATE TABLE docs."名前" (id serial PRIMARY KEY, addr docs.address, tags text[], doc bytea, prices docs.price_range,
                         amount numeric(12,3) CHECK (amount > 0));
ALTER TABLE docs."名前" OWNER TO auditor;
CREATE UNLOGGED TABLE docs.cache (k text PRIMARY KEY, v jsonb) WITH (fillfactor = 70);
CREATE TABLE docs.base_note (id integer, note text);
CREATE TABLE docs.special_note (extra text) INHERITS (docs.base_note);
CREATE TABLE docs.pairs (a integer, b text);
INSERT INTO docs.pairs VALUES (1, 'one'), (2, 'two');

CREATE PROCEDURE docs.archive(days integer) LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM docs.documents WHERE created_at < now() - make_interval(days => days);
END $$;
ALTER PROCEDURE docs.archive(integer) OWNER TO app_writer;
CREATE FUNCTION docs.word_count(t text) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE
  RETURN array_length(regexp_split_to_array(t, '\\s+'), 1);
REVOKE EXECUTE ON FUNCTION docs.word_count(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION docs.word_count(text) TO app_reader;
GRANT EXECUTE ON FUNCTION sales.order_total(integer) TO app_reader;
GRANT USAGE ON SEQUENCE sales.invoice_number_seq TO app_writer;

ALTER TABLE sales.order_items ADD CONSTRAINT order_items_quantity_small CHECK (quantity < 1000) NOT VALID;

CREATE FUNCTION audit.no_op() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
ALTER FUNCTION audit.no_op() OWNER TO app_owner;
CREATE TRIGGER events_noop AFTER INSERT ON audit.events FOR EACH ROW EXECUTE FUNCTION audit.no_op();
CREATE INDEX events_kind_idx ON audit.events (kind);
CREATE TABLE audit.event_notes (
  event_id bigint NOT NULL, created_at timestamptz NOT NULL, kind text NOT NULL, note text,
  FOREIGN KEY (event_id, created_at, kind) REFERENCES audit.events
);
ALTER TABLE audit.event_notes OWNER TO app_owner;
`;

let src: PgServer;
let dst: PgServer;
let source: Client;
let sourceInventory: Inventory;
let caseNo = 0;

/** pg_dump -Fc from the source piped into pg_restore on the destination, as the superuser. */
function copyToDestination(database: string, target: string, restoreArgs: string[] = []): Promise<void> {
  return dumpRestore(src, database, dst, target, restoreArgs);
}

async function withDestination<T>(database: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const { config, env, cleanup } = makeRuntimeConfig({ source: src, destination: dst, databases: [{ name: 'app', source: { database: 'app' }, destination: { database } }] });
  const client = await connect(config.databases[0].destination, env, { readOnly: false, connectTimeoutSeconds: 10 });
  try {
    return await fn(client);
  } finally {
    await client.end();
    cleanup();
  }
}

/** A fresh copy of the restored database on the destination, with sql applied. */
async function destinationCase(sql: string): Promise<string> {
  const name = `case_${++caseNo}`;
  await dst.query(`CREATE DATABASE ${name} TEMPLATE app_base`);
  if (sql) await dst.query(sql, name);
  return name;
}

async function diffAgainst(database: string, opts: InventoryOptions = FULL, base: Inventory = sourceInventory): Promise<InventoryDifference[]> {
  const inv = await withDestination(database, (c) => readInventory(c, opts));
  return compareInventories(base, inv);
}

const brief = (d: InventoryDifference) => ({ schema: d.schema, object: d.object, kind: d.kind, what: d.what });

beforeAll(async () => {
  [src, dst] = await Promise.all([startPgServer({ name: 'inv-src' }), startPgServer({ name: 'inv-dst' })]);
  for (const server of [src, dst]) await server.query(ROLES.map((r) => `CREATE ROLE ${r} NOLOGIN;`).join('\n'));
  await src.query('CREATE DATABASE app');
  await src.psqlFile(join(__dirname, 'support', 'realistic-schema.sql'), 'app');
  await src.query(EXTRA_SQL, 'app');
  await dst.query('CREATE DATABASE app_base');
  await copyToDestination('app', 'app_base');

  const { config, env, cleanup } = makeRuntimeConfig({ source: src, destination: dst, databases: [{ name: 'app', source: { database: 'app' }, destination: { database: 'app_base' } }] });
  source = await connect(config.databases[0].source, env, { readOnly: true, connectTimeoutSeconds: 10 });
  cleanup();
  sourceInventory = await readInventory(source, FULL);
}, 240_000);

afterAll(async () => {
  await source?.end();
  await Promise.all([src?.destroy(), dst?.destroy()]);
});

describe('readInventory', () => {
  it('covers every class of object in the source schema', () => {
    const has = (kind: string, object: string, schema: string) =>
      sourceInventory.objects.some((o) => o.kind === kind && o.object === object && o.schema === schema);
    expect(has('table', 'table café', 'public')).toBe(true);
    expect(has('column', 'column café.名前', 'public')).toBe(true);
    expect(has('partition', 'partition events_2024_info', 'audit')).toBe(true);
    expect(has('index', 'index orders_customer_idx', 'sales')).toBe(true);
    expect(has('constraint', 'constraint order_items_quantity_small on order_items', 'sales')).toBe(true);
    expect(has('constraint', 'constraint email_address_check on domain email_address', 'public')).toBe(true);
    expect(has('trigger', 'trigger orders_touch on orders', 'sales')).toBe(true);
    expect(has('function', 'procedure archive(integer)', 'docs')).toBe(true);
    expect(has('function', 'function word_count(text)', 'docs')).toBe(true);
    expect(has('view', 'view order_totals', 'sales')).toBe(true);
    expect(has('matview', 'materialized view stock_snapshot', 'inventory')).toBe(true);
    expect(has('sequence', 'sequence invoice_number_seq', 'sales')).toBe(true);
    expect(has('type', 'enum type order_status', 'sales')).toBe(true);
    expect(has('type', 'composite type address', 'docs')).toBe(true);
    expect(has('type', 'range type price_range', 'docs')).toBe(true);
    expect(has('domain', 'domain email_address', 'public')).toBe(true);
    expect(has('extension', 'extension citext', 'public')).toBe(true);
    expect(has('policy', 'policy documents_read on documents', 'docs')).toBe(true);
    expect(has('rls', 'row-level security on table documents', 'docs')).toBe(true);
    expect(has('privilege', 'privileges of app_reader on table orders', 'sales')).toBe(true);
    expect(has('privilege', 'privileges of auditor on column documents.owner_name', 'docs')).toBe(true);
    expect(has('privilege', 'default privileges of app_reader on tables created by app_writer in schema docs', 'docs')).toBe(true);
    expect(has('owner', 'owner of table 名前', 'docs')).toBe(true);
    expect(has('schema', 'schema "Bücher"', 'Bücher')).toBe(true);

    const props = (key: string) => sourceInventory.objects.find((o) => o.key === key)!.properties;
    expect(props(JSON.stringify(['type', 'sales', 'order_status'])).labels).toBe("'new', 'paid', 'shipped', 'cancelled'");
    expect(props(JSON.stringify(['matview', 'inventory', 'stock_snapshot'])).populated).toBe('no');
    expect(props(JSON.stringify(['matview', 'sales', 'customer_revenue'])).populated).toBe('yes');
    expect(props(JSON.stringify(['constraint', 'sales', 'order_items', 'order_items_quantity_small'])).validated).toBe('no');
    expect(props(JSON.stringify(['column', 'public', 'customers', 'id'])).identity).toBe('generated always');
    expect(props(JSON.stringify(['column', 'docs', 'documents', 'body_length'])).generated).toBe('always as (length(body)) stored');
    expect(props(JSON.stringify(['column', 'public', 'café', 'id'])).default).toBe('nextval(\'public."café_id_seq"\'::regclass)');
    expect(props(JSON.stringify(['partition', 'audit', 'events_2024_other'])).of).toBe('audit.events_2024');
    expect(props(JSON.stringify(['rls', 'docs', 'documents']))['']).toBe('enabled');
    expect(props(JSON.stringify(['privilege', JSON.stringify(['table', 'sales', 'orders']), 'app_reader']))['']).toBe('SELECT');
    expect(props(JSON.stringify(['owner', JSON.stringify(['function', 'docs', 'archive(integer)'])]))['']).toBe('app_writer');
  });

  it('leaves out system schemas and objects that belong to extensions', () => {
    expect(sourceInventory.objects.filter((o) => /^(pg_|information_schema)/.test(o.schema))).toEqual([]);
    // citext and pgcrypto create many functions and types in public; none of them is listed.
    expect(sourceInventory.objects.filter((o) => o.kind !== 'extension' && /citext|digest|crypt/.test(o.object))).toEqual([]);
    expect(sourceInventory.objects.filter((o) => o.kind === 'extension').map((o) => o.object)).toEqual(['extension citext', 'extension pgcrypto']);
  });

  it('respects schemas and excludeSchemas patterns', async () => {
    const only = await readInventory(source, { ...FULL, schemas: ['doc*'] });
    expect([...new Set(only.objects.map((o) => o.schema))]).toEqual(['docs']);
    const without = await readInventory(source, { ...FULL, excludeSchemas: ['sales', '"Bücher"'] });
    const schemas = new Set(without.objects.map((o) => o.schema));
    expect(schemas.has('sales') || schemas.has('Bücher')).toBe(false);
    expect(schemas.has('docs') && schemas.has('public') && schemas.has('audit')).toBe(true);
  });

  it('is deterministic: reading twice gives the same inventory', async () => {
    expect(await readInventory(source, FULL)).toEqual(sourceInventory);
  });
});

describe('compareInventories after pg_dump -Fc | pg_restore', () => {
  it('finds no difference between the source and its restored copy', async () => {
    expect(await diffAgainst('app_base')).toEqual([]);
  });

  it('finds no difference for a --no-owner restore when owners are not compared (ACLs follow the new owner)', async () => {
    await dst.query('CREATE DATABASE app_no_owner');
    await copyToDestination('app', 'app_no_owner', ['--no-owner']);
    const opts = { includeAcl: true, includeOwners: false };
    const base = await readInventory(source, opts);
    expect(await diffAgainst('app_no_owner', opts, base)).toEqual([]);
    // ... while comparing owners shows who owns what now.
    const withOwners = await diffAgainst('app_no_owner');
    expect(withOwners.length).toBeGreaterThan(10);
    expect(withOwners.every((d) => d.kind === 'owner' && d.what === 'different')).toBe(true);
    expect(withOwners.map((d) => d.message)).toContain('Owner of table docs.documents is app_writer on the source but postgres on the destination');
  });

  const cases: Array<{ name: string; sql: string; expected: ReturnType<typeof brief>; message: string | RegExp }> = [
    {
      name: 'a dropped index',
      sql: 'DROP INDEX sales.orders_customer_idx',
      expected: { schema: 'sales', object: 'index orders_customer_idx', kind: 'index', what: 'missing' },
      message: 'Index sales.orders_customer_idx is missing on the destination',
    },
    {
      name: 'a missing policy',
      sql: 'DROP POLICY documents_read ON docs.documents',
      expected: { schema: 'docs', object: 'policy documents_read on documents', kind: 'policy', what: 'missing' },
      message: 'Policy documents_read on docs.documents is missing on the destination',
    },
    {
      name: 'row-level security disabled',
      sql: 'ALTER TABLE docs.documents DISABLE ROW LEVEL SECURITY',
      expected: { schema: 'docs', object: 'row-level security on table documents', kind: 'rls', what: 'different' },
      message: 'Row-level security on table docs.documents is enabled on the source but disabled on the destination',
    },
    {
      name: 'a dropped trigger',
      sql: 'DROP TRIGGER orders_touch ON sales.orders',
      expected: { schema: 'sales', object: 'trigger orders_touch on orders', kind: 'trigger', what: 'missing' },
      message: 'Trigger orders_touch on sales.orders is missing on the destination',
    },
    {
      name: 'a NOT VALID constraint validated on the destination',
      sql: 'ALTER TABLE sales.order_items VALIDATE CONSTRAINT order_items_quantity_small',
      expected: { schema: 'sales', object: 'constraint order_items_quantity_small on order_items', kind: 'constraint', what: 'different' },
      message: 'Constraint order_items_quantity_small on sales.order_items: validated is no on the source but yes on the destination',
    },
    {
      name: 'a changed column type',
      sql: 'ALTER TABLE sales.orders ALTER COLUMN note TYPE varchar(200)',
      expected: { schema: 'sales', object: 'column orders.note', kind: 'column', what: 'different' },
      message: 'Column sales.orders.note: type is text on the source but character varying(200) on the destination',
    },
    {
      name: 'a revoked grant',
      sql: 'REVOKE SELECT ON sales.orders FROM app_reader',
      expected: { schema: 'sales', object: 'privileges of app_reader on table orders', kind: 'privilege', what: 'missing' },
      message: 'Privileges of app_reader on table sales.orders (SELECT) are missing on the destination',
    },
    {
      name: 'an owner change',
      sql: 'ALTER TABLE "Bücher".titel OWNER TO auditor',
      expected: { schema: 'Bücher', object: 'owner of table titel', kind: 'owner', what: 'different' },
      message: 'Owner of table "Bücher".titel is app_owner on the source but auditor on the destination',
    },
    {
      name: 'a missing extension',
      sql: 'DROP EXTENSION pgcrypto',
      expected: { schema: 'public', object: 'extension pgcrypto', kind: 'extension', what: 'missing' },
      message: 'Extension pgcrypto is missing on the destination',
    },
    {
      name: 'a materialized view populated on the destination only',
      sql: 'REFRESH MATERIALIZED VIEW inventory.stock_snapshot',
      expected: { schema: 'inventory', object: 'materialized view stock_snapshot', kind: 'matview', what: 'different' },
      message: 'Materialized view inventory.stock_snapshot: populated is no on the source but yes on the destination',
    },
    {
      name: 'a materialized view left unpopulated on the destination',
      sql: 'REFRESH MATERIALIZED VIEW sales.customer_revenue WITH NO DATA',
      expected: { schema: 'sales', object: 'materialized view customer_revenue', kind: 'matview', what: 'different' },
      message: 'Materialized view sales.customer_revenue: populated is yes on the source but no on the destination',
    },
    {
      name: 'an extra enum label',
      sql: "ALTER TYPE sales.order_status ADD VALUE 'refunded'",
      expected: { schema: 'sales', object: 'enum type order_status', kind: 'type', what: 'different' },
      message: "Enum type sales.order_status: labels is 'new', 'paid', 'shipped', 'cancelled' on the source but 'new', 'paid', 'shipped', 'cancelled', 'refunded' on the destination",
    },
    {
      name: 'a changed function body',
      sql: `CREATE OR REPLACE FUNCTION sales.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`,
      expected: { schema: 'sales', object: 'function touch_updated_at()', kind: 'function', what: 'different' },
      message: /^Function sales\.touch_updated_at\(\): source md5 is [0-9a-f]{32} on the source but [0-9a-f]{32} on the destination$/,
    },
    {
      name: 'a detached partition',
      sql: 'ALTER TABLE audit.events DETACH PARTITION audit.events_default',
      expected: { schema: 'audit', object: 'partition events_default', kind: 'partition', what: 'missing' },
      message: 'Partition audit.events_default is missing on the destination',
    },
    {
      name: 'a dropped domain constraint',
      sql: 'ALTER DOMAIN public.email_address DROP CONSTRAINT email_address_check',
      expected: { schema: 'public', object: 'constraint email_address_check on domain email_address', kind: 'constraint', what: 'missing' },
      message: 'Constraint email_address_check on domain public.email_address is missing on the destination',
    },
    {
      name: 'a dropped table (its columns, indexes, grants ... not reported again)',
      sql: 'DROP TABLE docs.documents',
      expected: { schema: 'docs', object: 'table documents', kind: 'table', what: 'missing' },
      message: 'Table docs.documents is missing on the destination',
    },
    {
      name: 'an extra default privilege',
      sql: 'ALTER DEFAULT PRIVILEGES FOR ROLE app_writer IN SCHEMA docs GRANT INSERT ON TABLES TO app_reader',
      expected: { schema: 'docs', object: 'default privileges of app_reader on tables created by app_writer in schema docs', kind: 'privilege', what: 'different' },
      message: 'Default privileges of app_reader on tables created by app_writer in schema docs is SELECT on the source but INSERT, SELECT on the destination',
    },
  ];

  it.each(cases)('reports $name exactly once', async ({ sql, expected, message }) => {
    const diffs = await diffAgainst(await destinationCase(sql));
    expect(diffs.map(brief)).toEqual([expected]);
    if (typeof message === 'string') expect(diffs[0].message).toBe(message);
    else expect(diffs[0].message).toMatch(message);
  });

  it('does not report a revoked grant when privileges are not compared', async () => {
    const db = await destinationCase('REVOKE SELECT ON sales.orders FROM app_reader');
    const opts = { includeAcl: false, includeOwners: true };
    expect(await diffAgainst(db, opts, await readInventory(source, opts))).toEqual([]);
  });

  it('does not report an owner change when owners are not compared', async () => {
    const db = await destinationCase('ALTER TABLE "Bücher".titel OWNER TO auditor');
    const opts = { includeAcl: true, includeOwners: false };
    expect(await diffAgainst(db, opts, await readInventory(source, opts))).toEqual([]);
  });

  it('does not report changes in schemas that are not selected', async () => {
    const db = await destinationCase('DROP INDEX sales.orders_customer_idx; ALTER TABLE docs.documents DISABLE ROW LEVEL SECURITY');
    const opts = { ...FULL, excludeSchemas: ['sales'] };
    const diffs = await diffAgainst(db, opts, await readInventory(source, opts));
    expect(diffs.map(brief)).toEqual([{ schema: 'docs', object: 'row-level security on table documents', kind: 'rls', what: 'different' }]);
  });

  it('reports several changes together, each once, sorted by object', async () => {
    const db = await destinationCase(cases.slice(0, 4).map((c) => c.sql).join(';\n'));
    const diffs = await diffAgainst(db);
    expect(diffs).toHaveLength(4);
    expect(new Set(diffs.map((d) => d.kind))).toEqual(new Set(['index', 'policy', 'rls', 'trigger']));
  });

  it('reports a column order difference once, for the table', async () => {
    const db = await destinationCase(`
      ALTER TABLE docs.pairs RENAME COLUMN a TO a_old;
      ALTER TABLE docs.pairs ADD COLUMN a integer;
      UPDATE docs.pairs SET a = a_old;
      ALTER TABLE docs.pairs DROP COLUMN a_old`);
    const diffs = await diffAgainst(db);
    expect(diffs.map((d) => d.message)).toEqual(['Table docs.pairs: column order is a, b on the source but b, a on the destination']);
  });

  it('throws when the two inventories were read with different options', async () => {
    const noAcl = await readInventory(source, { includeAcl: false, includeOwners: true });
    expect(() => compareInventories(sourceInventory, noAcl)).toThrow(/different options/);
  });
});

describe('normalizeSql', () => {
  it('collapses whitespace outside quotes only', () => {
    expect(normalizeSql(' SELECT  a,\n\t b  FROM "x  y"  WHERE c = \'p  q\' ')).toBe('SELECT a, b FROM "x  y" WHERE c = \'p  q\'');
    expect(normalizeSql("x = 'it''s  two'  ")).toBe("x = 'it''s  two'");
    expect(normalizeSql(null)).toBeNull();
  });
});

describe('a database with 200 tables', () => {
  it('is inventoried and compared (equal after restore, then one dropped index found)', async () => {
    const ddl = ['CREATE SCHEMA wide;'];
    for (let i = 1; i <= 200; i++) {
      ddl.push(`CREATE TABLE wide.t${i} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, ref bigint${i > 1 ? ` REFERENCES wide.t${i - 1}` : ''},
        name text NOT NULL DEFAULT 'n${i}', amount numeric(12,2) CHECK (amount >= 0), created timestamptz DEFAULT now());
        CREATE INDEX t${i}_name_idx ON wide.t${i} (name);
        GRANT SELECT ON wide.t${i} TO app_reader;`);
    }
    await src.query('CREATE DATABASE wide');
    await src.query(ddl.join('\n'), 'wide');
    await dst.query('CREATE DATABASE wide');
    await copyToDestination('wide', 'wide');

    const { config, env, cleanup } = makeRuntimeConfig({ source: src, destination: dst, databases: [{ name: 'wide', source: { database: 'wide' }, destination: { database: 'wide' } }] });
    const s = await connect(config.databases[0].source, env, { readOnly: true, connectTimeoutSeconds: 10 });
    const d = await connect(config.databases[0].destination, env, { readOnly: false, connectTimeoutSeconds: 10 });
    try {
      const started = Date.now();
      const a = await readInventory(s, FULL);
      const b = await readInventory(d, FULL);
      expect(compareInventories(a, b)).toEqual([]);
      const elapsed = Date.now() - started;
      expect(a.objects.filter((o) => o.kind === 'table')).toHaveLength(200);
      expect(a.objects.filter((o) => o.kind === 'index')).toHaveLength(200);
      console.log(`inventory of 200 tables (${a.objects.length} objects) on both sides and comparison: ${elapsed} ms`);

      await d.query('DROP INDEX wide.t137_name_idx');
      const diffs = compareInventories(a, await readInventory(d, FULL));
      expect(diffs.map((x) => x.message)).toEqual(['Index wide.t137_name_idx is missing on the destination']);
    } finally {
      await Promise.all([s.end(), d.end()]);
      cleanup();
    }
  });
});
