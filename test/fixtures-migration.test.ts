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
    [source, destination] = await Promise.all([startPgServer({ name: 'fx-src' }), startPgServer({ name: 'fx-dst' })]);
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
});
