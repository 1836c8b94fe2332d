/**
 * Nothing lost, nothing leaked: the bundled runner killed or stopped at every phase, with the faults made by
 * real mechanisms (locks that hold a tool in a phase, a server stopped, a privilege revoked, a dumps volume
 * that is a small real tmpfs, a TCP server that never answers), then re-run the way a Job retries a pod:
 * same config, EMPTY volumes. Every case checks the exit code, the message, and that the source is unchanged
 * (per-table md5s before and after, test/support/compare.ts); re-runs are compared with the source the same way.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Client } from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/runner/main';
import { decideResume, parseMarker, type DestinationState, type MigrationMarker, type SourceIdentity } from '../src/runner/checks/progress-marker';
import { runMigration } from '../src/runner/migrate';
import { fingerprint as sourceDigest, type DatabaseFingerprint } from './support/compare';
import { freePort, PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { buildRunnerBundle, captureOutput, createAppRoles, createRealisticDatabase, databaseExists, processesMatching, superuserSession, waitForLockWait } from './support/runner-helpers';
import { makeRuntimeConfig, type MakeRuntimeConfigOptions, type TestDatabase, type TestRuntimeConfig } from './support/runtime-config';

let source: PgServer;
let destination: PgServer;
let bundle: string;
const before: Record<string, DatabaseFingerprint> = {};
const configs: TestRuntimeConfig[] = [];
const clients: Client[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'dbm-rerun-'));
const SOURCE_DBS = ['shop', 'crm'];

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'rsrc' }), startPgServer({ name: 'rdst' })]);
  // One after the other: the schema file creates roles, which two sessions at once would race on.
  await createRealisticDatabase(source, 'shop');
  await createRealisticDatabase(source, 'crm', `CREATE TABLE public.notes (id bigserial PRIMARY KEY, body text);
    INSERT INTO public.notes (body) SELECT 'note ' || g FROM generate_series(1, 1234) g;`);
  await createAppRoles(destination);
  for (const db of SOURCE_DBS) before[db] = await sourceDigest(source, db);
  bundle = buildRunnerBundle(mkdtempSync(join(tmp, 'bundle-')));
});

afterEach(async () => {
  // Whatever a case did, the source is byte for byte what it was (content digests of every table and sequence).
  for (const db of SOURCE_DBS) expect(await sourceDigest(source, db), `source database ${db} changed`).toEqual(before[db]);
  // And no tool of any run is left behind.
  for (const c of configs) expect(processesMatching(c.config.paths.dumps)).toEqual([]);
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  for (const c of configs) c.cleanup();
  rmSync(tmp, { recursive: true, force: true });
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

function config(databases: TestDatabase[], more: Partial<MakeRuntimeConfigOptions> = {}): TestRuntimeConfig {
  const t = makeRuntimeConfig({ source, destination, databases, ...more });
  configs.push(t);
  return t;
}

const sessionOn = (server: PgServer, database: string) => superuserSession(server, database, clients);


async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface RunnerProcess {
  /** The runner's own pid (node), for signals. */
  readonly pid: () => Promise<number>;
  readonly out: ReturnType<typeof captureOutput>;
  stderr(): string;
  /** Exit code, or 128 + signal number when killed. */
  readonly exited: Promise<number>;
}

/**
 * The bundle as the Job runs it. `pod`: in a PID namespace of its own whose init is a shell that reports the
 * runner's exit status and exits, which makes the kernel kill every process left in the namespace, as when a
 * pod dies. `dumpsTmpfs`: the dumps directory is a tmpfs of that many bytes (a private mount namespace, so
 * only the runner sees it).
 */
function startRunner(t: TestRuntimeConfig, opts: { pod?: boolean; dumpsTmpfs?: number } = {}): RunnerProcess {
  const file = join(t.workDir, 'config.json');
  writeFileSync(file, JSON.stringify(t.config));
  // As the Job runs it: every attempt resumes.
  const node = [process.execPath, bundle, '--config', file, '--bin-dir', PG_BIN, '--resume'];
  const wrapped = opts.pod || opts.dumpsTmpfs !== undefined;
  const mount = opts.dumpsTmpfs !== undefined ? `mount -t tmpfs -o size=${opts.dumpsTmpfs} tmpfs "$0" && ` : '';
  const child = wrapped
    ? spawn('unshare', [
      ...(opts.dumpsTmpfs !== undefined ? ['--mount', '--propagation', 'private'] : []),
      ...(opts.pod ? ['--pid', '--fork', '--kill-child'] : []),
      'sh', '-c', opts.pod ? `${mount}"$@"; exit $?` : `${mount}exec "$@"`,
      t.config.paths.dumps, ...node,
    ], { env: { ...process.env, ...t.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(node[0], node.slice(1), { env: { ...process.env, ...t.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = captureOutput();
  child.stdout.pipe(out.stream);
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
  // The shell reports a signal death as 128 + the signal number, as a container runtime does.
  const exited = new Promise<number>((resolve) => child.on('close', (code, signal) => {
    resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 0));
  }));
  const pid = () => (opts.pod
    ? until('the runner process', () => processesMatching(bundle).find((p) => p.argv[0] === process.execPath)?.pid)
    : Promise.resolve(child.pid!));
  return { pid, out, stderr: () => stderr, exited };
}

function summaryOf(t: TestRuntimeConfig) {
  return JSON.parse(readFileSync(join(t.config.paths.logs, 'summary.json'), 'utf8'));
}

async function markerOf(database: string): Promise<MigrationMarker | undefined> {
  const [row] = await destination.query<{ c: string | null }>(
    `SELECT shobj_description(oid, 'pg_database') AS c FROM pg_database WHERE datname = '${database}'`);
  return parseMarker(row?.c);
}

/** The destination copy matches the source (independent digests), and the marker says verified. */
async function expectMigrated(src: string, dst: string): Promise<void> {
  const [a, b] = await Promise.all([sourceDigest(source, src), sourceDigest(destination, dst)]);
  expect(Object.keys(a.tables).length).toBeGreaterThanOrEqual(10);
  expect(b).toEqual(a);
  expect(await markerOf(dst)).toMatchObject({ state: 'verified', source: { database: src } });
}

/** The Job's retry: the same databases, a new pod with empty volumes. */
async function rerun(databases: TestDatabase[], more: Partial<MakeRuntimeConfigOptions> = {}) {
  const t = config(databases, more);
  const r = startRunner(t, { pod: true });
  const code = await r.exited;
  return { t, code, text: r.out.text(), summary: summaryOf(t) };
}

function holdTable(client: Client, table = 'sales.orders'): Promise<unknown> {
  return client.query(`BEGIN; LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
}

describe('SIGKILL of the runner (the pod dies), then a re-run converges', () => {
  it('killed during the dump: nothing on the destination for that database; the re-run skips the verified one', async () => {
    // given two databases; the second one's dump held by a lock on its source
    const dbs: TestDatabase[] = [
      { name: 'shop', source: { database: 'shop' }, destination: { database: 'k_dump_shop' } },
      { name: 'crm', source: { database: 'crm' }, destination: { database: 'k_dump_crm' } },
    ];
    const t = config(dbs);
    const locker = await sessionOn(source, 'crm');
    await holdTable(locker);
    const r = startRunner(t, { pod: true });
    await r.out.waitFor(/✅ \[shop\] migrated/);
    await waitForLockWait(source);

    // when the runner is killed with SIGKILL (and with it, as in a pod, its pg_dump)
    process.kill(await r.pid(), 'SIGKILL');
    const code = await r.exited;
    await locker.query('ROLLBACK');
    expect(code).toBe(137);

    // then shop is marked verified, crm was never created
    expect(await markerOf('k_dump_shop')).toMatchObject({ state: 'verified', created: true });
    expect(await databaseExists(destination, 'k_dump_crm')).toBe(false);

    // when the Job retries with empty volumes
    const again = await rerun(dbs);

    // then shop is skipped, crm migrated, both match the source
    expect(again.code).toBe(0);
    expect(again.text).toMatch(/✅ \[shop\] \[preflight\] skipped: already migrated and verified by an earlier attempt/);
    expect(again.summary.databases.map((d: { name: string; status: string }) => [d.name, d.status])).toEqual([['shop', 'skipped'], ['crm', 'migrated']]);
    expect(again.summary.databases[0].reason).toMatch(/^already migrated and verified by an earlier attempt/);
    expect(again.summary.ok).toBe(true);
    expect(again.text).toMatch(/crm \(-\)|SUCCEEDED: 1\/1 migrated, 0 failed, 0 interrupted, 1 skipped/);
    await expectMigrated('shop', 'k_dump_shop');
    await expectMigrated('crm', 'k_dump_crm');
  });

  it('killed during the restore: the half-restored database it created is dropped, re-created and migrated', async () => {
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'k_restore' } }];
    const t = config(dbs, { migration: { restore: { jobs: 1 } } });
    const r = startRunner(t, { pod: true });
    // when pg_restore runs (the marker is written before it starts) the pod dies
    await until('pg_restore', () => processesMatching(t.config.paths.dumps).some((p) => p.argv[0].endsWith('pg_restore') && !p.argv.includes('--list')));
    process.kill(await r.pid(), 'SIGKILL');
    expect(await r.exited).toBe(137);
    expect(await markerOf('k_restore')).toMatchObject({ state: 'restoring', created: true, source: { database: 'shop' } });

    // a workstation run without --resume refuses to touch it, and says what to do
    const ws = config(dbs);
    const out = captureOutput();
    const refused = await runMigration(ws.config, { env: ws.env, binDir: PG_BIN, out: out.stream });
    expect(refused.databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
    expect(refused.databases[0].error).toMatch(/database "k_restore" was left half-restored by an earlier attempt .*run with --resume to reset it \(dropped and re-created/);
    expect(await markerOf('k_restore')).toMatchObject({ state: 'restoring' });

    // the Job's retry resets it and converges
    const again = await rerun(dbs);
    expect(again.code).toBe(0);
    expect(again.text).toMatch(/⚠️ \[shop\] \[preflight\] an earlier attempt left it half-restored .*: it is dropped and re-created/);
    expect(again.text).toMatch(/\[shop\] \[restore\] dropped and re-created database "k_restore" \(created by an earlier attempt/);
    expect(again.summary.databases[0]).toMatchObject({ status: 'migrated' });
    await expectMigrated('shop', 'k_restore');
  });

  it('killed during the verification: the database stays "restoring" and is redone by the re-run', async () => {
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'k_verify' } }];
    const t = config(dbs);
    const locker = await sessionOn(source, 'shop');
    const r = startRunner(t, { pod: true });
    // the dump is done: a lock on a source table now holds only the verification's count
    await r.out.waitFor(/✅ \[shop\] \[dump\] dumped/);
    await holdTable(locker);
    await waitForLockWait(source, 'db-migration verify');
    process.kill(await r.pid(), 'SIGKILL');
    const code = await r.exited;
    await locker.query('ROLLBACK');
    expect(code).toBe(137);
    expect(r.out.text()).toMatch(/✅ \[shop\] \[restore\] restored/);
    expect(await markerOf('k_verify')).toMatchObject({ state: 'restoring' });

    const again = await rerun(dbs);
    expect(again.code).toBe(0);
    expect(again.text).toMatch(/\[shop\] \[preflight\] an earlier attempt left it half-restored/);
    await expectMigrated('shop', 'k_verify');
  });
});

describe('SIGTERM at each phase: exit 143, interrupted database and phase recorded, no tool left, a re-run converges', () => {
  async function expectInterrupted(t: TestRuntimeConfig, r: RunnerProcess, phase: string) {
    process.kill(await r.pid(), 'SIGTERM');
    expect(await r.exited).toBe(143);
    const summary = summaryOf(t);
    expect(summary.interrupted).toBe(true);
    expect(summary.databases[0]).toMatchObject({ name: 'shop', status: 'interrupted', phase });
    expect(JSON.parse(readFileSync(t.config.paths.terminationLog!, 'utf8')).databases[0]).toMatchObject({ status: 'interrupted', phase });
    expect(r.out.text()).toMatch(phase === 'preflight' ? /⚠️ \[preflight\] interrupted during pre-flight/
      : new RegExp(`⚠️ \\[shop\\] \\[${phase}\\] interrupted during ${phase}; the tool was stopped`));
    expect(r.stderr()).toContain('received SIGTERM');
    expect(r.stderr()).not.toMatch(/\n\s+at /);
    expect(processesMatching(t.config.paths.dumps)).toEqual([]);
  }

  /** Once nothing holds them any more, no session of the runner stays on the source. */
  async function expectNoSessions(): Promise<void> {
    await until('the runner\'s source sessions to end', async () => {
      const [row] = await source.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'db-migration%'");
      return row.n === 0 || undefined;
    }, 30_000);
  }

  it('during pre-flight (a destination that accepts connections and never answers)', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => { sockets.push(s); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 't_pre', port } }];
      const t = config(dbs, { migration: { timeouts: { connect: 120 } } });
      const r = startRunner(t);
      await until('a connection to the silent destination', () => sockets.length > 0 || undefined);
      await expectInterrupted(t, r, 'preflight');
      expect(readdirSync(t.config.paths.dumps)).toEqual([]);
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
    const again = await rerun([{ name: 'shop', source: { database: 'shop' }, destination: { database: 't_pre' } }]);
    expect(again.code).toBe(0);
    await expectMigrated('shop', 't_pre');
  });

  it('during the dump (held by a lock on the source)', async () => {
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 't_dump' } }];
    const t = config(dbs);
    const locker = await sessionOn(source, 'shop');
    await holdTable(locker);
    const r = startRunner(t);
    try {
      await waitForLockWait(source);
      await expectInterrupted(t, r, 'dump');
    } finally {
      await locker.query('ROLLBACK');
    }
    await expectNoSessions();
    expect(await databaseExists(destination, 't_dump')).toBe(false);
    const again = await rerun(dbs);
    expect(again.code).toBe(0);
    await expectMigrated('shop', 't_dump');
  });

  it('during the restore into a database an admin created (reset by --clean --if-exists on the re-run)', async () => {
    await destination.query('CREATE DATABASE t_restore');
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 't_restore' } }];
    const t = config(dbs, { migration: { restore: { jobs: 1 } } });
    const r = startRunner(t);
    await r.out.waitFor(/✅ \[shop\] \[dump\] dumped/);
    // An uncommitted CREATE SCHEMA of the same name makes pg_restore's CREATE SCHEMA wait.
    const blocker = await sessionOn(destination, 't_restore');
    await blocker.query('BEGIN; CREATE SCHEMA sales');
    try {
      await waitForLockWait(destination);
      await expectInterrupted(t, r, 'restore');
    } finally {
      await blocker.query('ROLLBACK');
    }
    expect(await markerOf('t_restore')).toMatchObject({ state: 'restoring', created: false });
    const again = await rerun(dbs);
    expect(again.code).toBe(0);
    expect(again.text).toMatch(/\[shop\] \[preflight\] an earlier attempt left it half-restored .*: it is restored with --clean --if-exists/);
    await expectMigrated('shop', 't_restore');
    expect(await markerOf('t_restore')).toMatchObject({ created: false });
  });

  it('during the verification (held by a lock on a source table taken after the dump)', async () => {
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 't_verify' } }];
    const t = config(dbs);
    const locker = await sessionOn(source, 'shop');
    const r = startRunner(t);
    await r.out.waitFor(/✅ \[shop\] \[dump\] dumped/);
    await holdTable(locker);
    try {
      await waitForLockWait(source, 'db-migration verify');
      await expectInterrupted(t, r, 'verify');
    } finally {
      await locker.query('ROLLBACK');
    }
    await expectNoSessions();
    expect(await markerOf('t_verify')).toMatchObject({ state: 'restoring' });
    const again = await rerun(dbs);
    expect(again.code).toBe(0);
    await expectMigrated('shop', 't_verify');
  });
});

describe('servers, privileges and volumes that fail', () => {
  it('fails the restore after the retries when the destination server stays down, naming database, phase and attempts', async () => {
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'down_restore' } }];
    const t = config(dbs, { migration: { retries: { attempts: 3, delaySeconds: 1 }, timeouts: { connect: 2 } } });
    const locker = await sessionOn(source, 'shop');
    await holdTable(locker);
    const r = startRunner(t);
    await waitForLockWait(source);
    await destination.stop('fast');
    try {
      await locker.query('ROLLBACK');
      const code = await r.exited;
      expect(code).toBe(1);
      const summary = summaryOf(t);
      expect(summary.databases[0]).toMatchObject({ name: 'shop', status: 'failed', phase: 'restore' });
      expect(summary.databases[0].error).toMatch(/^Connection to 127\.0\.0\.1:\d+ refused: .*\(after 3 attempts\)$/);
      expect(r.out.text()).toMatch(/⚠️ \[shop\] \[restore\] attempt 2\/3 after connection refused, waiting 1s/);
      expect(r.out.text()).toMatch(/⚠️ \[shop\] \[restore\] attempt 3\/3 after connection refused, waiting 2s/);
      expect(r.out.text()).toMatch(/❌ \[shop\] \[restore\] restore failed \(after 3 attempts\): Connection to 127\.0\.0\.1:\d+ refused/);
      expect(readdirSync(t.config.paths.dumps)).toEqual([]);
    } finally {
      await destination.start();
    }
    expect(await databaseExists(destination, 'down_restore')).toBe(false);
  });

  it('fails the dump permanently, naming the table and the GRANT, when SELECT is revoked after pre-flight', async () => {
    // given a non-superuser reader that may read everything, and pg_dump held by a lock until the revoke commits
    await source.query(`DO $$ DECLARE s text; BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'reader') THEN CREATE ROLE reader LOGIN PASSWORD 'reader-pw'; END IF; END $$`);
    await source.query(`DO $$ DECLARE s text; BEGIN
      FOR s IN SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO reader', s);
        EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO reader', s);
        EXECUTE format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO reader', s);
      END LOOP; END $$`, 'shop');
    const dbs: TestDatabase[] = [{ name: 'shop', source: { database: 'shop', username: 'reader', password: 'reader-pw' }, destination: { database: 'revoked' } }];
    const t = config(dbs, { migration: { retries: { attempts: 3, delaySeconds: 0 } } });
    const admin = await sessionOn(source, 'shop');
    await holdTable(admin);
    const r = startRunner(t);
    try {
      await r.out.waitFor(/✅ \[preflight\] pre-flight passed for 1 database/);
      await waitForLockWait(source);
      // when the privilege goes away while pg_dump waits for the table
      await admin.query('REVOKE SELECT ON sales.orders FROM reader; COMMIT');

      // then the dump fails at once (not retried), naming the table and the fix
      expect(await r.exited).toBe(1);
      const summary = summaryOf(t);
      expect(summary.databases[0]).toMatchObject({ status: 'failed', phase: 'dump' });
      expect(summary.databases[0].error).toMatch(/^permission denied for table sales\.orders on the source: the SELECT privilege of user "reader" was revoked after pre-flight checked it; not retried\. Fix: GRANT SELECT ON TABLE sales\.orders TO "reader"; and run again$/);
      expect(r.out.text()).toMatch(/❌ \[shop\] \[dump\] permanent failure \(insufficient privilege\) on attempt 1\/3, not retrying/);
      expect(r.out.text()).not.toMatch(/attempt 2\/3/);
      expect(await databaseExists(destination, 'revoked')).toBe(false);
    } finally {
      await admin.query('ROLLBACK').catch(() => undefined);
      // Leave the source's privileges as they were: later dumps would carry GRANTs to a role the destination lacks.
      await source.query('DROP OWNED BY reader', 'shop');
      await source.query('DROP ROLE reader');
    }
  });

  it('pre-flight refuses a database larger than job.storage.dumps, and nothing is dumped', async () => {
    const t = config([{ name: 'shop', source: { database: 'shop' }, destination: { database: 'small_volume' } }], { storage: { dumps: '1Mi' } });
    const r = startRunner(t);
    expect(await r.exited).toBe(1);
    expect(r.out.text()).toMatch(/❌ \[shop\] \[preflight\] source .*the dump needs about [\d.]+ MiB \(the source database size, dump\.compression 0\) but only 1\.0 MiB is available \(job\.storage\.dumps limit 1\.0 MiB\): raise job\.storage\.dumps to at least/);
    expect(summaryOf(t).databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
    expect(readdirSync(t.config.paths.dumps)).toEqual([]);
    expect(await databaseExists(destination, 'small_volume')).toBe(false);
  });

  it('fails with "the dumps volume is full" when the volume fills during the dump (a 128 KiB tmpfs; the compressed dump needs about 230 KiB)', async () => {
    // compression 1: pre-flight only warns about the small volume (compressed dumps are usually far smaller)
    const t = config([{ name: 'shop', source: { database: 'shop' }, destination: { database: 'full_volume' } }],
      { migration: { dump: { compression: 1 }, retries: { attempts: 3, delaySeconds: 0 } } });
    const r = startRunner(t, { dumpsTmpfs: 128 * 1024 });
    expect(await r.exited).toBe(1);
    const text = r.out.text();
    expect(text).toMatch(/⚠️ \[shop\] \[preflight\] source .*the dump needs about/);
    const error: string = summaryOf(t).databases[0].error;
    expect(summaryOf(t).databases[0], text).toMatchObject({ status: 'failed', phase: 'dump' });
    expect(error).toContain(`the dumps volume ${t.config.paths.dumps} is full (No space left on device) after `);
    expect(error).toMatch(/of the dump of a [\d.]+ MiB database: raise job\.storage\.dumps \(now 30\.0 GiB\) and run again$/);
    expect(text).toMatch(/❌ \[shop\] \[dump\] dump failed: the dumps volume .* is full/);
    expect(text).not.toMatch(/attempt 2\/3/);
    expect(await databaseExists(destination, 'full_volume')).toBe(false);
  });
});

describe('connections that cannot be made: a clear message, exit 1, nothing dumped', () => {
  async function runMain(t: TestRuntimeConfig): Promise<{ code: number; text: string }> {
    const file = join(t.workDir, 'config.json');
    writeFileSync(file, JSON.stringify(t.config));
    const out = new PassThrough();
    let text = '';
    out.on('data', (c: Buffer) => { text += c.toString(); });
    const noSignals = { on: () => process, off: () => process } as unknown as Pick<NodeJS.Process, 'on' | 'off'>;
    const code = await main(['--config', file, '--bin-dir', PG_BIN], { env: { ...process.env, ...t.env }, out, err: out, signals: noSignals });
    return { code, text };
  }

  const cases: Array<[string, () => Promise<Partial<TestDatabase['source']>>, RegExp]> = [
    ['a wrong password', async () => ({ password: 'Not-The-Password' }),
      /❌ \[shop\] \[preflight\] source postgres@127\.0\.0\.1:\d+\/shop: cannot connect within 10s: password authentication failed for user "postgres": check the password .* \(password from DBM_SHOP_SOURCE_PASSWORD\)/],
    ['an unreachable host (nothing listens on the port)', async () => ({ port: await freePort() }),
      /❌ \[shop\] \[preflight\] source postgres@127\.0\.0\.1:\d+\/shop: cannot connect within 10s: connection to 127\.0\.0\.1:\d+ refused: nothing accepts connections at that host and port/],
    ['a host name that does not resolve', async () => ({ host: 'no-such-host.invalid' }),
      /❌ \[shop\] \[preflight\] source postgres@no-such-host\.invalid:\d+\/shop: cannot connect within 10s: host name "no-such-host\.invalid" does not resolve: check the host in the spec/],
    ['TLS required by sslmode require but not offered by the server', async () => ({ sslmode: 'require' as const }),
      /❌ \[shop\] \[preflight\] source postgres@127\.0\.0\.1:\d+\/shop: cannot connect within 10s: the server does not support SSL connections: the server does not offer TLS: enable ssl on the server, or set sslmode to prefer or disable/],
  ];
  for (const [what, endpoint, message] of cases) {
    it(`fails in pre-flight for ${what}`, async () => {
      const t = config([{ name: 'shop', source: { database: 'shop', ...(await endpoint()) }, destination: { database: 'never_created' } }]);
      const r = await runMain(t);
      expect(r.code).toBe(1);
      expect(r.text).toMatch(message);
      expect(r.text).toMatch(/❌ \[preflight\] pre-flight failed: nothing was dumped or restored/);
      expect(r.text).not.toContain('Not-The-Password');
      expect(summaryOf(t).databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
      expect(readdirSync(t.config.paths.dumps)).toEqual([]);
      expect(await databaseExists(destination, 'never_created')).toBe(false);
    });
  }
});

describe('what the marker allows', () => {
  it('never touches a non-empty database it did not fill, and says why when the user could not have marked it', async () => {
    // given a database an admin created and owns, with one table, and a non-superuser migration user
    await destination.createRole('mover', 'mover-pw', 'CREATEDB');
    await destination.query('CREATE DATABASE foreign_data');
    await destination.query('CREATE TABLE public.keep (x int); INSERT INTO keep VALUES (42)', 'foreign_data');
    await destination.query('GRANT CREATE ON DATABASE foreign_data TO mover');
    await destination.query('GRANT CREATE ON SCHEMA public TO mover', 'foreign_data');
    const t = config([{ name: 'shop', source: { database: 'shop' }, destination: { database: 'foreign_data', username: 'mover', password: 'mover-pw' } }]);
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, resume: true });
    expect(summary.databases[0]).toMatchObject({ status: 'failed', phase: 'preflight' });
    expect(summary.databases[0].error).toMatch(/^database "foreign_data" is not empty \(1 table: public\.keep\): .*it carries no db-migration marker and user "mover" does not own it, so even if an interrupted attempt of this migration filled it, that cannot be recognized/);
    expect(await destination.query('SELECT x FROM keep', 'foreign_data')).toEqual([{ x: 42 }]);
  });

  it('warns in pre-flight when it cannot mark an empty database owned by another role, and migrates it', async () => {
    await destination.query('CREATE DATABASE admin_owned');
    await destination.query('GRANT CREATE ON DATABASE admin_owned TO mover');
    await destination.query('GRANT CREATE ON SCHEMA public TO mover', 'admin_owned');
    const t = config([{ name: 'shop', source: { database: 'shop' }, destination: { database: 'admin_owned', username: 'mover', password: 'mover-pw' } }],
      { migration: { restore: { noAcl: true } } });
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, resume: true });
    expect(out.text()).toMatch(/⚠️ \[shop\] \[preflight\] destination .*database "admin_owned" is owned by "postgres", not by user "mover", so the runner cannot record its progress on it/);
    expect(out.text()).toMatch(/fix: ALTER DATABASE "admin_owned" OWNER TO "mover";/);
    expect(summary.databases[0]).toMatchObject({ status: 'migrated' });
    expect(await markerOf('admin_owned')).toBeUndefined();
  });

  it('the marker is no object in the database, a plain pg_dump of the copy does not carry it, and a verified copy of another source is refused', async () => {
    // given a verified copy
    const first = config([{ name: 'shop', source: { database: 'shop' }, destination: { database: 'k_verify_leak' } }]);
    const firstOut = captureOutput();
    expect((await runMigration(first.config, { env: first.env, binDir: PG_BIN, out: firstOut.stream, resume: true })).ok, firstOut.text()).toBe(true);
    expect(await markerOf('k_verify_leak')).toMatchObject({ state: 'verified' });
    // then a plain pg_dump of it (what a later backup or migration runs) does not carry the marker
    const { execFileSync } = await import('node:child_process');
    const dump = execFileSync(join(PG_BIN, 'pg_dump'), ['-h', destination.host, '-p', String(destination.port), '-U', 'postgres', 'k_verify_leak'],
      { env: { ...process.env, PGPASSWORD: destination.superPassword }, maxBuffer: 256 * 1024 * 1024 }).toString();
    expect(dump).not.toContain('db-migration');
    // and pointing the spec at it with another source database is refused without restore.clean
    const t = config([{ name: 'crm', source: { database: 'crm' }, destination: { database: 'k_verify_leak' } }]);
    const out = captureOutput();
    const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream, resume: true });
    expect(summary.databases[0].error).toMatch(/database "k_verify_leak" holds a verified copy of a different source .*: set restore\.clean: true to replace it/);
    expect(await markerOf('k_verify_leak')).toMatchObject({ source: { database: 'shop' } });
    await expectMigrated('shop', 'k_verify_leak');
  });
});

describe('migration.parallelDatabases', () => {
  it('migrates two databases at once; every line names its database and the summary keeps the spec order', async () => {
    // given shop's dump held by a lock: crm can only finish first if both run at once
    const t = config([
      { name: 'shop', source: { database: 'shop' }, destination: { database: 'par_shop' } },
      { name: 'crm', source: { database: 'crm' }, destination: { database: 'par_crm' } },
    ], { migration: { parallelDatabases: 2 } });
    const locker = await sessionOn(source, 'shop');
    await holdTable(locker);
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    await out.waitFor(/✅ \[crm\] migrated/);
    expect(out.text()).not.toMatch(/\[shop\] \[dump\] dumped/);
    await locker.query('ROLLBACK');
    const summary = await run;
    expect(summary.ok, out.text()).toBe(true);
    expect(summary.databases.map((d) => [d.name, d.status])).toEqual([['shop', 'migrated'], ['crm', 'migrated']]);
    const phaseLines = out.text().split('\n').filter((l) => /\[(dump|restore|analyze|verify)\]/.test(l));
    expect(phaseLines.length).toBeGreaterThan(6);
    for (const l of phaseLines) expect(l).toMatch(/\[(shop|crm)\] \[(dump|restore|analyze|verify)\]/);
    await expectMigrated('shop', 'par_shop');
    await expectMigrated('crm', 'par_crm');
  });
});

describe('decideResume', () => {
  const src: SourceIdentity = { system: '7', oid: 16384, database: 'shop', endpoint: 'u@h:5432/shop' };
  const marker = (state: 'restoring' | 'verified', more: Partial<MigrationMarker> = {}): MigrationMarker => ({
    v: 1, state, migration: 'm', database: 'shop', created: true, source: src, updatedAt: '2026-01-01T00:00:00Z', ...more,
  });
  const dest = (m?: MigrationMarker): DestinationState => ({ exists: true, canMark: true, ...(m ? { marker: m } : {}) });
  const decide = (d: DestinationState, resume = true, clean = false, source = src) =>
    decideResume({ destination: d, databaseName: 'shop', source, resume, clean });

  it('skips verified, resets restoring, starts fresh without a marker, refuses without --resume', () => {
    expect(decide({ exists: false, canMark: false }).kind).toBe('fresh');
    expect(decide(dest()).kind).toBe('fresh');
    expect(decide(dest(marker('verified')))).toMatchObject({ kind: 'skip', reason: expect.stringMatching(/^already migrated and verified by an earlier attempt/) });
    expect(decide(dest(marker('verified', { verify: 'none' })))).toMatchObject({ reason: expect.stringMatching(/^already migrated \(verify: none\)/) });
    expect(decide(dest(marker('restoring')))).toMatchObject({ kind: 'reset', note: expect.stringMatching(/dropped and re-created/) });
    expect(decide(dest(marker('restoring', { created: false })))).toMatchObject({ kind: 'reset', note: expect.stringMatching(/--clean --if-exists/) });
    expect(decide(dest(marker('restoring')), false)).toMatchObject({ kind: 'refuse', message: expect.stringMatching(/run with --resume/) });
    expect(decide(dest(marker('verified')), false)).toMatchObject({ kind: 'refuse', message: expect.stringMatching(/run with --resume to skip it/) });
  });

  it('treats a verified copy of another source as foreign data; compares endpoints only when the system identifier is unknown', () => {
    const other = { ...src, system: '8' };
    expect(decide(dest(marker('verified')), true, false, other)).toMatchObject({ kind: 'refuse', message: expect.stringMatching(/different source/) });
    expect(decide(dest(marker('verified')), true, true, other).kind).toBe('fresh');
    expect(decide(dest(marker('verified', { source: { ...src, system: null } })), true, false, src).kind).toBe('skip');
    expect(decide(dest(marker('verified', { source: { ...src, system: null, endpoint: 'x@y:1/shop' } })), true, false, src).kind).toBe('refuse');
  });

  it('parses only its own comments', () => {
    const m = marker('verified');
    expect(parseMarker(`db-migration verified: ${JSON.stringify(m)}`)).toEqual(m);
    expect(parseMarker(`db-migration restoring: ${JSON.stringify(m)}`)).toBeUndefined(); // state mismatch
    expect(parseMarker('Production database, do not touch')).toBeUndefined();
    expect(parseMarker('db-migration verified: {not json')).toBeUndefined();
    expect(parseMarker(null)).toBeUndefined();
    expect(existsSync(tmp)).toBe(true);
  });
});
