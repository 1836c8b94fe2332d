/**
 * Faults with real mechanisms: a lock on the source that makes pg_dump wait past the dump timeout, a
 * destination server that goes away and comes back (the restore is retried), and SIGTERM to the bundled
 * runner while pg_restore waits on a lock.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMigration } from '../src/runner/migrate';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';
import { buildRunnerBundle, captureOutput, createAppRoles, createRealisticDatabase, processesMatching, superuserSession, waitForLockWait } from './support/runner-helpers';
import { fingerprint } from './support/compare';
import { makeRuntimeConfig, type TestRuntimeConfig } from './support/runtime-config';

let source: PgServer;
let destination: PgServer;
const configs: TestRuntimeConfig[] = [];
const clients: Client[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'dbm-faults-'));

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'fsrc' }), startPgServer({ name: 'fdst' })]);
  await createRealisticDatabase(source, 'shop');
  await createAppRoles(destination);
});

afterAll(async () => {
  for (const c of clients) await c.end().catch(() => undefined);
  for (const c of configs) c.cleanup();
  rmSync(tmp, { recursive: true, force: true });
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

const sessionOn = (server: PgServer, database: string) => superuserSession(server, database, clients);


describe('runner faults', () => {
  it('fails the dump with a timeout when a lock holds pg_dump, without retrying and without leftovers', async () => {
    // given a source table locked ACCESS EXCLUSIVE by another session, and a 2 s dump timeout
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_timeout' } }],
      migration: { timeouts: { dump: 2 }, dump: { lockWaitTimeoutSeconds: 600 }, retries: { attempts: 3, delaySeconds: 0 } },
    });
    configs.push(t);
    const locker = await sessionOn(source, 'shop');
    await locker.query('BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE');
    const out = captureOutput();
    try {
      // when the migration runs
      const summary = await runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });

      // then the dump timed out once (timeouts are not retried), and pg_dump is gone with its directory
      expect(summary.ok).toBe(false);
      expect(summary.databases[0]).toMatchObject({ name: 'shop', status: 'failed', phase: 'dump' });
      expect(summary.databases[0].error).toMatch(/timed out after/);
      expect(out.text()).toMatch(/❌ \[shop\] \[dump\] timed out after \d+s \(not retried: raise migration\.timeouts\.dump/);
      expect(out.text()).not.toMatch(/attempt 2\//);
      expect(processesMatching(t.config.paths.dumps)).toEqual([]);
      expect(readFileSync(join(t.config.paths.logs, 'summary.json'), 'utf8')).toContain('"phase": "dump"');
    } finally {
      await locker.query('ROLLBACK');
    }
    const [waiting] = await source.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'db-migration'");
    expect(waiting.n).toBe(0);
  });

  it('retries a restore while the destination server is down, and succeeds when it is back', async () => {
    // given a lock that holds the dump until the destination server has been stopped
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_retry' } }],
      migration: { retries: { attempts: 6, delaySeconds: 1 }, timeouts: { connect: 2 } },
    });
    configs.push(t);
    const locker = await sessionOn(source, 'shop');
    await locker.query('BEGIN; LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE');
    const out = captureOutput();

    // when the destination goes away during the dump and comes back two seconds later
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    await out.waitFor(/\[shop\] migrating/);
    await destination.stop('fast');
    await locker.query('ROLLBACK');
    await out.waitFor(/\[shop\] \[restore\] attempt 2\/6 after/);
    await new Promise((r) => setTimeout(r, 2000));
    await destination.start();
    const summary = await run;

    // then the restore was retried after a transient failure and the migration succeeded
    expect(out.text()).toMatch(/⚠️ \[shop\] \[restore\] attempt 2\/6 after (connection refused|server is starting up|server shut down the session), waiting 1s/);
    expect(summary.databases[0]).toMatchObject({ status: 'migrated' });
    expect(summary.ok).toBe(true);
    const [a, b] = await Promise.all([fingerprint(source, 'shop'), fingerprint(destination, 'shop_retry')]);
    expect(b.tables).toEqual(a.tables);
    expect(b.sequences).toEqual(a.sequences);
  });

  it('retries a restore whose session was terminated midway, starting clean (--clean --if-exists on an empty destination)', async () => {
    // given an empty destination database, and pg_restore held (after some schemas exist) by an uncommitted
    // CREATE SCHEMA of the same name in another session
    await destination.query('CREATE DATABASE shop_clean');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_clean' } }],
      migration: { retries: { attempts: 3, delaySeconds: 1 }, restore: { jobs: 1 } },
    });
    configs.push(t);
    const out = captureOutput();
    const run = runMigration(t.config, { env: t.env, binDir: PG_BIN, out: out.stream });
    await out.waitFor(/✅ \[shop\] \[dump\] dumped/);
    const blocker = await sessionOn(destination, 'shop_clean');
    await blocker.query('BEGIN; CREATE SCHEMA sales');
    await waitForLockWait(destination);
    const [{ n: restoredSoFar }] = await destination.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_namespace WHERE nspname IN ('audit', 'inventory')", 'shop_clean');

    // when the waiting restore session is terminated (a transient failure) and the blocker goes away
    await destination.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'db-migration' AND wait_event_type = 'Lock'");
    await blocker.query('ROLLBACK');
    const summary = await run;

    // then the first attempt had restored part of the dump, the retry cleaned it up and restored everything
    expect(restoredSoFar).toBeGreaterThan(0);
    expect(out.text()).toMatch(/⚠️ \[shop\] \[restore\] attempt 2\/3 after server shut down the session/);
    expect(summary.databases[0]).toMatchObject({ status: 'migrated' });
    const [a, b] = await Promise.all([fingerprint(source, 'shop'), fingerprint(destination, 'shop_clean')]);
    expect(b.tables).toEqual(a.tables);
    expect(b.sequences).toEqual(a.sequences);
  });

  it('records SIGTERM during the restore as interrupted in that phase, exits 143 and leaves no child process', async () => {
    // given the bundled runner, and a destination where pg_restore will wait for a lock
    const bundle = buildRunnerBundle(mkdtempSync(join(tmp, 'bundle-')));
    await destination.query('CREATE DATABASE shop_sigterm');
    const t = makeRuntimeConfig({
      source, destination,
      databases: [{ name: 'shop', source: { database: 'shop' }, destination: { database: 'shop_sigterm' } }],
    });
    configs.push(t);
    const configFile = join(t.workDir, 'config.json');
    writeFileSync(configFile, JSON.stringify(t.config));
    const child = spawn(process.execPath, [bundle, '--config', configFile, '--bin-dir', PG_BIN], {
      env: { ...process.env, ...t.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = captureOutput();
    child.stdout.pipe(out.stream);
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

    await out.waitFor(/✅ \[shop\] \[dump\] dumped/);
    // An uncommitted CREATE SCHEMA of the same name makes pg_restore's CREATE SCHEMA wait.
    const blocker = await sessionOn(destination, 'shop_sigterm');
    await blocker.query('BEGIN; CREATE SCHEMA sales');
    try {
      await waitForLockWait(destination);
      expect(processesMatching(t.config.paths.dumps).some((p) => p.argv[0].endsWith('pg_restore'))).toBe(true);

      // when the runner gets SIGTERM
      child.kill('SIGTERM');
      const code = await exited;

      // then it exits 143, the summary records the interrupted database and phase, and no tool survives
      expect(code).toBe(143);
      const summary = JSON.parse(readFileSync(join(t.config.paths.logs, 'summary.json'), 'utf8'));
      expect(summary.interrupted).toBe(true);
      expect(summary.databases[0]).toMatchObject({ name: 'shop', status: 'interrupted', phase: 'restore' });
      expect(JSON.parse(readFileSync(t.config.paths.terminationLog!, 'utf8')).databases[0]).toMatchObject({ status: 'interrupted', phase: 'restore' });
      expect(out.text()).toMatch(/⚠️ \[shop\] \[restore\] interrupted during restore/);
      expect(stderr).toContain('received SIGTERM');
      expect(stderr).not.toMatch(/\n\s+at /);
      expect(processesMatching(t.config.paths.dumps)).toEqual([]);
    } finally {
      await blocker.query('ROLLBACK');
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
