/**
 * The shared sample databases (pagila, chinook, northwind: real third-party schemas), migrated as a user would:
 * loaded into a source server as their README says, then `db-migration migrate` with a spec and a Secret
 * manifests file; the data is then compared independently of the runner's own verification.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli';
import { fingerprint } from './support/compare';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { REPO } from './support/repo';
import { startWriteLoad } from './support/write-load';

const FIXTURES = join(REPO, '..', 'shared', 'fixtures');
const DATABASES = [
  { name: 'pagila', database: 'pagila' },
  { name: 'chinook', database: 'chinook_auto_increment' },
  { name: 'northwind', database: 'northwind' },
];

describe('migrating the shared sample databases', () => {
  let source: PgServer;
  let destination: PgServer;
  let work: string;

  beforeAll(async () => {
    expect(existsSync(FIXTURES), `${FIXTURES} must exist (CI clones shared/ beside the repository)`).toBe(true);
    [source, destination] = await Promise.all([startPgServer({ name: 'fx-src', settings: { wal_level: 'logical' } }), startPgServer({ name: 'fx-dst' })]);
    await source.query('CREATE DATABASE pagila');
    await source.psqlFile(join(FIXTURES, 'pagila', 'pagila-schema.sql'), 'pagila');
    await source.psqlFile(join(FIXTURES, 'pagila', 'pagila-data.sql'), 'pagila');
    await source.psqlFile(join(FIXTURES, 'chinook', 'Chinook_PostgreSql_AutoIncrementPKs.sql'), 'postgres');
    await source.query('CREATE DATABASE northwind');
    await source.psqlFile(join(FIXTURES, 'northwind', 'northwind.sql'), 'northwind');
    work = mkdtempSync(join(tmpdir(), 'dbm-fixtures-'));
  });

  afterAll(async () => {
    await Promise.all([source?.destroy(), destination?.destroy()]);
  });

  /** A spec naming the three databases (destination names with `suffix`), with `migration` as given. */
  const writeSpec = (file: string, migration: string, suffix = ''): string => {
    const spec = join(work, file);
    writeFileSync(spec, `namespace: samples
defaults:
  source:      { host: 127.0.0.1, port: ${source.port}, username: postgres, password: { secret: pg, key: source } }
  destination: { host: 127.0.0.1, port: ${destination.port}, username: postgres, password: { secret: pg, key: destination } }
migration: ${migration}
databases:
${DATABASES.map((d) => `  - { name: ${d.name}, source: { database: ${d.database} }, destination: { database: ${d.database}${suffix} } }`).join('\n')}
`);
    return spec;
  };

  it('migrates pagila, chinook and northwind and every table and sequence arrives identical', async () => {
    // given a spec naming the three databases and a Secret manifests file with the passwords
    const spec = writeSpec('samples.yaml', '{ restore: { noOwner: false }, retries: { attempts: 1 }, verify: checksums }');
    const secrets = join(work, 'secrets.yaml');
    writeFileSync(secrets, `apiVersion: v1
kind: Secret
metadata: { name: pg, namespace: samples }
stringData: { source: "${source.superPassword}", destination: "${destination.superPassword}" }
`);

    // when the operator runs migrate
    const res = await runCli(['migrate', '--spec', spec, '--secrets', secrets, '--work-dir', join(work, 'run'), '--bin-dir', PG_BIN]);

    // then it succeeds, and an independent comparison finds the same data on both sides
    expect(res.code, res.stderr).toBe(0);
    for (const d of DATABASES) {
      const [before, after] = await Promise.all([fingerprint(source, d.database), fingerprint(destination, d.database)]);
      expect(Object.keys(before.tables).length).toBeGreaterThan(5);
      expect(after).toEqual(before);
    }
    const pagila = await fingerprint(destination, 'pagila');
    expect(pagila.tables['public.rental'].rows).toBe(16044);
    expect(pagila.tables['public.payment_p2022_01'].rows).toBeGreaterThan(0);

    // and the summary on disk says so, without any password in the logs
    const summary = readFileSync(join(work, 'run', 'logs', 'summary.json'), 'utf8');
    for (const d of DATABASES) expect(summary).toContain(`"${d.name}"`);
    // verified with content checksums of every table and the object inventory, with no difference
    const parsed = JSON.parse(summary) as { databases: { name: string; status: string; tablesChecksummed: number; objectsVerified: number }[] };
    for (const db of parsed.databases) {
      expect(db.status, db.name).toBe('migrated');
      expect(db.tablesChecksummed, db.name).toBeGreaterThan(5);
      expect(db.objectsVerified, db.name).toBeGreaterThan(20);
    }
    const log = readFileSync(join(work, 'run', 'logs', 'migration.log'), 'utf8');
    for (const secret of [source.superPassword, destination.superPassword]) {
      expect(log).not.toContain(secret);
      expect(summary).not.toContain(secret);
      expect(res.stdout + res.stderr).not.toContain(secret);
    }
  });

  it('streams them as well (mode: stream, 3 COPY workers, verify: checksums): the same data, nothing on the dumps volume', async () => {
    // given the same three databases, streamed into databases of other names on the same destination
    const spec = writeSpec('samples-stream.yaml',
      '{ mode: stream, copy: { jobs: 3 }, restore: { noOwner: false, jobs: 2 }, retries: { attempts: 1 }, verify: checksums }', '_streamed');
    const secrets = join(work, 'secrets.yaml');

    // when the operator runs migrate
    const run = join(work, 'stream');
    const res = await runCli(['migrate', '--spec', spec, '--secrets', secrets, '--work-dir', run, '--bin-dir', PG_BIN]);

    // then it succeeds and an independent comparison finds the same data on both sides
    expect(res.code, res.stdout + res.stderr).toBe(0);
    for (const d of DATABASES) {
      const [before, after] = await Promise.all([fingerprint(source, d.database), fingerprint(destination, `${d.database}_streamed`)]);
      expect(Object.keys(before.tables).length).toBeGreaterThan(5);
      expect(after, d.name).toEqual(before);
    }
    // and every database was streamed and checksummed, with nothing left on the dumps volume
    const summary = JSON.parse(readFileSync(join(run, 'logs', 'summary.json'), 'utf8')) as {
      databases: { name: string; status: string; streamSeconds?: number; dumpBytes?: number; tablesChecksummed: number }[];
    };
    for (const db of summary.databases) {
      expect(db.status, db.name).toBe('migrated');
      expect(db.streamSeconds, db.name).toBeGreaterThan(0);
      expect(db.dumpBytes, db.name).toBeUndefined();
      expect(db.tablesChecksummed, db.name).toBeGreaterThan(5);
    }
    expect(readdirSync(join(run, 'dumps'))).toEqual([]);
  });

  it('a second migrate refuses what the first one migrated, and with --resume skips it', async () => {
    // given the migration above finished and marked each destination database verified
    const spec = join(work, 'samples.yaml');
    const secrets = join(work, 'secrets.yaml');
    const before = await fingerprint(destination, 'pagila');

    // when the operator runs it again without --resume, it refuses and says what to do
    const again = await runCli(['migrate', '--spec', spec, '--secrets', secrets, '--work-dir', join(work, 'again'), '--bin-dir', PG_BIN]);
    expect(again.code).toBe(1);
    expect(again.stdout + again.stderr).toMatch(/database "?pagila"? was already migrated and verified by an earlier run .*run with --resume to skip it/);

    // and with --resume every database is skipped as already verified, and nothing changes
    const resumed = await runCli(['migrate', '--spec', spec, '--secrets', secrets, '--work-dir', join(work, 'resumed'), '--bin-dir', PG_BIN, '--resume']);
    expect(resumed.code, resumed.stdout + resumed.stderr).toBe(0);
    const summary = JSON.parse(readFileSync(join(work, 'resumed', 'logs', 'summary.json'), 'utf8'));
    expect(summary.databases.map((d: { status: string }) => d.status)).toEqual(['skipped', 'skipped', 'skipped']);
    expect(await fingerprint(destination, 'pagila')).toEqual(before);
  });

  it('migrates them online under a write load (mode: online, cutover: auto, verify: checksums): identical to the fenced sources, write pause reported, nothing left behind', async () => {
    // given the three databases under a steady write load
    const loads = [
      startWriteLoad(source, 'pagila', [
        { sql: "INSERT INTO actor (first_name, last_name) VALUES ('ONLINE', 'WRITER')" },
        { sql: 'UPDATE film SET rental_rate = rental_rate + 0.01 WHERE film_id = (1 + floor(random() * 1000))::int' },
        { sql: "DELETE FROM actor WHERE actor_id = (SELECT min(actor_id) FROM actor WHERE first_name = 'ONLINE')" },
      ]),
      startWriteLoad(source, 'chinook_auto_increment', [
        { sql: "INSERT INTO artist (name) VALUES ('online ' || now())" },
        { sql: 'UPDATE track SET unit_price = unit_price + 0.01 WHERE track_id = (1 + floor(random() * 3000))::int' },
      ]),
      startWriteLoad(source, 'northwind', [
        { sql: 'UPDATE products SET units_in_stock = units_in_stock + 1 WHERE product_id = (1 + floor(random() * 77))::int' },
        { sql: "INSERT INTO region (region_id, region_description) SELECT max(region_id) + 1, 'online' FROM region" },
      ], { clients: 1 }),
    ];
    writeFileSync(join(work, 'secrets.yaml'), `apiVersion: v1
kind: Secret
metadata: { name: pg, namespace: samples }
stringData: { source: "${source.superPassword}", destination: "${destination.superPassword}" }
`);
    const spec = writeSpec('samples-online.yaml',
      '{ mode: online, online: { cutover: auto }, copy: { jobs: 2 }, restore: { noOwner: false }, retries: { attempts: 1 }, verify: checksums }', '_online');

    // when the operator runs migrate
    const run = join(work, 'online');
    const res = await runCli(['migrate', '--spec', spec, '--secrets', join(work, 'secrets.yaml'), '--work-dir', run, '--bin-dir', PG_BIN]);
    for (const l of loads) await l.stop();

    // then it succeeds, the writers were fenced, and every table and sequence equals the fenced source
    expect(res.code, res.stdout + res.stderr).toBe(0);
    for (const l of loads) expect(l.committed()).toBeGreaterThan(0);
    for (const d of DATABASES) {
      const [before, after] = await Promise.all([fingerprint(source, d.database), fingerprint(destination, `${d.database}_online`)]);
      const matviews = new Set((await source.query<{ n: string }>("SELECT schemaname || '.' || matviewname AS n FROM pg_matviews", d.database)).map((r) => r.n));
      const tables = (f: typeof before) => Object.fromEntries(Object.entries(f.tables).filter(([k]) => !matviews.has(k)));
      expect(tables(after), d.name).toEqual(tables(before));
      expect(after.sequences, d.name).toEqual(before.sequences);
      expect((await source.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_replication_slots"))[0].n).toBe(0);
      await source.query(`ALTER DATABASE ${d.database} RESET default_transaction_read_only`);
    }
    const summary = JSON.parse(readFileSync(join(run, 'logs', 'summary.json'), 'utf8')) as {
      writePauseSeconds: number; databases: { name: string; status: string; writePauseSeconds: number; tablesChecksummed: number }[];
    };
    expect(summary.writePauseSeconds).toBeGreaterThan(0);
    for (const db of summary.databases) {
      expect(db.status, db.name).toBe('migrated');
      expect(db.writePauseSeconds, db.name).toBeGreaterThan(0);
      expect(db.tablesChecksummed, db.name).toBeGreaterThan(5);
    }
  }, 300_000);
});
