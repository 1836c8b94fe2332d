/**
 * Online mode across major versions, the upgrade it is most often for: logical replication from an older source
 * into a newer destination (PostgreSQL 12 → 18, 14 → 16), under a write load, verify: checksums; the copy is
 * compared with the fenced source independently of the runner's verification.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { prepareServerVersions } from './support/pg-versions';
import { captureOutput, createAppRoles, createRealisticDatabase } from './support/runner-helpers';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';
import { startWriteLoad } from './support/write-load';

const servers: PgServer[] = [];
const configs: TestRuntimeConfig[] = [];

afterAll(async () => {
  for (const c of configs) c.cleanup();
  await Promise.all(servers.map((s) => s.destroy()));
});

describe('online mode across major versions', () => {
  for (const [from, to] of [[12, 18], [14, 16]] as const) {
    it(`replicates a realistic database under load from PostgreSQL ${from} to ${to} and cuts over: tables and sequences equal the fenced source`, async () => {
      // given a PostgreSQL ${from} source (wal_level logical) under a write load, and an empty ${to} destination
      const bin = await prepareServerVersions([from, to]);
      const [source, destination] = await Promise.all([
        startPgServer({ name: `online-v${from}`, binDir: bin[from], settings: { wal_level: 'logical' } }),
        startPgServer({ name: `online-v${to}`, binDir: bin[to] }),
      ]);
      servers.push(source, destination);
      expect(Math.floor(source.version / 10000)).toBe(from);
      expect(Math.floor(destination.version / 10000)).toBe(to);
      await createRealisticDatabase(source, 'shop');
      await createAppRoles(destination);
      const load = startWriteLoad(source, 'shop', [
        { sql: 'INSERT INTO public."café" ("名前", boisson, prix) VALUES (\'neu\', \'thé\', 1.5)' },
        { sql: 'UPDATE inventory.products SET price = price + 1 WHERE id = (1 + floor(random() * 500))::int' },
        { sql: 'DELETE FROM public."café" WHERE id = (SELECT min(id) FROM public."café")' },
        { sql: "SELECT nextval('sales.invoice_number_seq')" },
      ]);
      const t = makeRuntimeConfig({
        source, destination, databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop' } }],
        migration: { mode: 'online', online: { cutover: 'auto' }, verify: 'checksums', restore: { noOwner: false } },
      });
      configs.push(t);

      // when it migrates online (cutover: auto)
      const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: captureOutput().stream, progressIntervalMs: 500 });
      await load.stop();

      // then it is cut over, and every table and sequence equals the fenced source (materialized views are refreshed, not copied)
      expect(summary.ok).toBe(true);
      expect(summary.databases[0].writePauseSeconds).toBeGreaterThan(0);
      expect(load.committed()).toBeGreaterThan(0);
      const [a, b] = await Promise.all([fingerprint(source, 'shop'), fingerprint(destination, 'shop')]);
      const matviews = new Set((await source.query<{ n: string }>("SELECT schemaname || '.' || matviewname AS n FROM pg_matviews", 'shop')).map((r) => r.n));
      const tables = (f: typeof a) => Object.fromEntries(Object.entries(f.tables).filter(([k]) => !matviews.has(k)));
      expect(Object.keys(tables(a)).length).toBeGreaterThanOrEqual(10);
      expect(tables(b)).toEqual(tables(a));
      expect(b.sequences).toEqual(a.sequences);
      const [slots] = await source.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_replication_slots');
      expect(slots.n).toBe(0);
    }, 300_000);
  }
});
