/**
 * verify: checksums through runMigration on real PostgreSQL 15 servers: the source side is checksummed in the
 * snapshot the data was copied from (pg_dump --snapshot in dump mode, the stream's snapshot in stream mode),
 * so writes on the source while the copy runs are not reported, while a changed destination row is. verify:
 * counts in dump mode counts the source rows in the dump's snapshot the same way.
 */
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { verifyDatabase } from '../src/runner/checks/verification';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { captureOutput, createAppRoles, createRealisticDatabase, superuserSession, waitForLockWait } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];
const clients: Client[] = [];

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'csrc' }), startPgServer({ name: 'cdst' })]);
  await createAppRoles(destination);
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  for (const c of configs) c.cleanup();
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

const sessionOn = (server: PgServer, database: string) => superuserSession(server, database, clients);

/**
 * A realistic source database `db` being migrated, held just after its snapshot was taken: a session locks
 * inventory.products, so pg_dump (or the stream's lock) waits; writes made now come after the snapshot.
 * Rolling back `blocker` lets the migration go on.
 */
async function migrationHeldAfterSnapshot(db: string, mode: 'dump' | 'stream', verify: 'counts' | 'checksums') {
  await createRealisticDatabase(source, db);
  const t = makeRuntimeConfig({
    source, destination,
    databases: [{ name: 'shop', source: { database: db }, destination: { database: db } }],
    migration: { mode, verify, retries: { attempts: 1, delaySeconds: 0 }, dump: { jobs: 2 } },
  });
  configs.push(t);
  const blocker = await sessionOn(source, db);
  await blocker.query('BEGIN; LOCK TABLE inventory.products IN ACCESS EXCLUSIVE MODE');
  const out = captureOutput();
  const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
  await waitForLockWait(source, 'db-migration%');
  return { t, blocker, out, run };
}


describe.each(['dump', 'stream'] as const)('runMigration, mode %s, verify: checksums', (mode) => {
  it('checksums the source in the copy\'s snapshot: rows updated and inserted on the source meanwhile are no difference', async () => {
    // given a source database, and its copy held right after the snapshot was taken (pg_dump waits for a lock)
    const db = `shop_${mode}`;
    const { t, blocker, out, run } = await migrationHeldAfterSnapshot(db, mode, 'checksums');

    // when the source is written to (rows updated, a row inserted with its own id: no sequence moves), then released
    const writer = await sessionOn(source, db);
    await writer.query(`UPDATE sales.orders SET updated_at = updated_at + interval '1 day' WHERE id <= 50`);
    await writer.query(`INSERT INTO public."café" (id, "名前", boisson, prix) VALUES (100001, 'später', 'Tee', 2.50)`);
    await blocker.query('ROLLBACK');
    const summary = await run;

    // then the migration succeeds: no checksum or row count difference for the written tables
    expect(summary.databases[0].differences).toBeUndefined();
    expect(summary.databases[0]).toMatchObject({ status: 'migrated' });
    expect(summary.databases[0].tablesChecksummed).toBeGreaterThanOrEqual(10);
    expect(summary.databases[0].objectsVerified).toBeGreaterThan(50);
    expect(out.text()).toMatch(new RegExp(`\\[verify\\] verified \\(checksums\\): .*; \\d+ inventory objects compared, \\d+ tables checksummed \\(source side in the ${mode}'s snapshot\\)`));
    // and the copy is the snapshot's state (the writes came after it), so the check above is meaningful
    const [written, copied] = await Promise.all([fingerprint(source, db), fingerprint(destination, db)]);
    expect(copied.tables['sales.orders'].rows).toBe(written.tables['sales.orders'].rows);
    expect(copied.tables['sales.orders'].md5).not.toBe(written.tables['sales.orders'].md5);
    expect(await destination.query(`SELECT 1 FROM public."café" WHERE id = 100001`, db)).toHaveLength(0);
    // and a live comparison does report the tables written since
    const live = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(live.differences.map((d) => `${d.kind} ${d.object}`)).toEqual(expect.arrayContaining(['checksum table orders', 'checksum table café', 'rows café']));

    expect(live.differences.map((d) => d.object)).not.toContain('table products');

    // and a destination row changed after the copy is reported (products was not written on the source)
    await destination.query(`UPDATE inventory.products SET name = name || '!' WHERE id = (SELECT min(id) FROM inventory.products)`, db);
    const altered = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(altered.differences.filter((d) => d.schema === 'inventory').map((d) => `${d.kind} ${d.object}`)).toEqual(['checksum table products']);
  });
});

describe('runMigration, mode dump, verify: counts', () => {
  it('counts the source rows in the dump\'s snapshot: a row inserted on the source meanwhile is no difference', async () => {
    // given a source database, and its dump held right after the snapshot was taken (pg_dump waits for a lock)
    const db = 'shop_counts';
    const { t, blocker, out, run } = await migrationHeldAfterSnapshot(db, 'dump', 'counts');

    // when a row is inserted on the source (with its own id: no sequence moves), then the lock is released
    const writer = await sessionOn(source, db);
    await writer.query(`INSERT INTO public."café" (id, "名前", boisson, prix) VALUES (100001, 'später', 'Tee', 2.50)`);
    await blocker.query('ROLLBACK');
    const summary = await run;

    // then the migration succeeds: the dump and the source counts are of the same snapshot
    expect(summary.databases[0].differences).toBeUndefined();
    expect(summary.databases[0]).toMatchObject({ status: 'migrated' });
    expect(out.text()).toMatch(/\[dump\] source snapshot \S+ exported: pg_dump runs in it \(--snapshot\), and the source row counts \(verify: counts\) are read in it meanwhile/);
    expect(out.text()).toMatch(/\[verify\] verified \(counts\): .* \(source rows counted in the dump's snapshot\), in /);
    // and the copy is the snapshot's state (the insert came after it), so the check above is meaningful
    expect(await destination.query(`SELECT 1 FROM public."café" WHERE id = 100001`, db)).toHaveLength(0);
    // while a live count does see the row written since
    const live = await verifyDatabase(t.config.databases[0], t.config, t.env);
    expect(live.differences.map((d) => `${d.kind} ${d.object}`)).toEqual(['rows café']);
  });
});
