/**
 * Unit tests of the runner's pure parts: logger, retry policy, plan and commands, progress, summary.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { ToolFailedError, ToolTimeoutError } from '../src/runner/postgres/exec';
import { Logger } from '../src/runner/report/log';
import { buildPlan, commandEnv, dbnameArg, formatCommand, passwordEnvNames, restoreCommand } from '../src/runner/plan';
import { countTocEntries, directorySize, dumpProgressLine, RestoreProgress, startTicker } from '../src/runner/report/progress';
import { backoffSeconds, PhaseError, withRetry } from '../src/runner/postgres/retry';
import { compactSummary, finishSummary, formatSummaryTable, writeSummaryFiles, type DatabaseResult } from '../src/runner/report/summary';
import { parseArchiveList } from '../src/runner/stream/toc';
import { makeRuntimeConfig } from './support/runtime-config';

const tmp = mkdtempSync(join(tmpdir(), 'dbm-units-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function capture() {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString()));
  return { stream, text: () => chunks.join('') };
}

const fixedClock = () => new Date('2026-11-24T10:00:00.123Z');

describe('Logger', () => {
  it('writes text lines with time, icon, database and phase, and copies them to migration.log', () => {
    const out = capture();
    const dir = join(tmp, 'logs-text');
    const log = Logger.create({ out: out.stream, logDir: dir, now: fixedClock });
    log.child({ database: 'app', phase: 'dump' }).ok('done', { bytes: 12 });
    log.warn('careful');
    log.close();
    expect(out.text()).toBe('2026-11-24T10:00:00Z ✅ [app] [dump] done bytes=12\n2026-11-24T10:00:00Z ⚠️ careful\n');
    expect(readFileSync(join(dir, 'migration.log'), 'utf8')).toBe(out.text());
  });

  it('writes JSON lines with ts (to the millisecond), level, database, phase, msg and fields', () => {
    const out = capture();
    const log = Logger.create({ out: out.stream, format: 'json', now: fixedClock });
    log.child({ database: 'app', phase: 'restore' }).error('failed', { attempt: 2 });
    expect(JSON.parse(out.text())).toEqual({ ts: '2026-11-24T10:00:00.123Z', level: 'error', database: 'app', phase: 'restore', msg: 'failed', attempt: 2 });
  });

  it('redacts known secrets in every line and format, including JSON-escaped ones', () => {
    const out = capture();
    const secret = 'pa"ss\\w0rd';
    const log = Logger.create({ out: out.stream, format: 'json', secrets: [secret, 'plain-secret'] });
    log.info(`connecting with ${secret} and plain-secret`, { detail: `x${secret}y` });
    log.child({ database: 'db' }).error('url postgres://u:' + encodeURIComponent(secret) + '@h/db');
    expect(out.text()).not.toContain('plain-secret');
    expect(out.text()).not.toContain('w0rd');
    expect(out.text()).toContain('***');
  });

  it('shows debug lines only when verbose', () => {
    const quiet = capture();
    Logger.create({ out: quiet.stream }).debug('hidden');
    const loud = capture();
    Logger.create({ out: loud.stream, verbose: true }).debug('shown');
    expect(quiet.text()).toBe('');
    expect(loud.text()).toContain('shown');
  });

  it('warns once and goes on when the log directory cannot be written', () => {
    const out = capture();
    const file = join(tmp, 'not-a-dir');
    writeFileSync(file, 'x');
    const log = Logger.create({ out: out.stream, logDir: join(file, 'sub') });
    log.info('still logging');
    expect(out.text()).toMatch(/cannot write .*migration\.log/);
    expect(out.text()).toContain('still logging');
  });
});

describe('withRetry', () => {
  const quietLogger = () => { const out = capture(); return { out, logger: Logger.create({ out: out.stream, now: fixedClock }).child({ database: 'app', phase: 'dump' }) }; };

  it('doubles the delay and caps it', () => {
    expect([2, 3, 4, 5].map((a) => backoffSeconds({ attempts: 5, delaySeconds: 10, maxDelaySeconds: 35 }, a))).toEqual([10, 20, 35, 35]);
  });

  it('retries transient failures and logs each retry', async () => {
    const { out, logger } = quietLogger();
    let calls = 0;
    const cleaned: number[] = [];
    const result = await withRetry(async (attempt) => {
      calls++;
      if (attempt < 3) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
      return 'ok';
    }, { attempts: 3, delaySeconds: 0, logger, database: 'app', phase: 'dump', beforeRetry: async (a) => { cleaned.push(a); } });
    expect(result).toBe('ok');
    expect(calls).toBe(3);
    expect(cleaned).toEqual([2, 3]);
    expect(out.text()).toContain('⚠️ [app] [dump] attempt 2/3 after connection refused, waiting 0s');
    expect(out.text()).toContain('attempt 3/3 after connection refused');
  });

  it('fails permanent errors at once and says so', async () => {
    const { out, logger } = quietLogger();
    let calls = 0;
    const e = await withRetry(async () => {
      calls++;
      throw new ToolFailedError('pg_dump', 1, null, ['pg_dump: error: connection to server failed: FATAL:  password authentication failed for user "x"'], 10);
    }, { attempts: 3, delaySeconds: 0, logger, database: 'app', phase: 'dump' }).catch((x: unknown) => x);
    expect(calls).toBe(1);
    expect(e).toBeInstanceOf(PhaseError);
    expect((e as PhaseError).reason).toBe('password authentication failed');
    expect((e as PhaseError).transient).toBe(false);
    expect(out.text()).toContain('permanent failure (password authentication failed) on attempt 1/3, not retrying');
  });

  it('does not retry a timeout', async () => {
    const { logger } = quietLogger();
    let calls = 0;
    const e = await withRetry(async () => { calls++; throw new ToolTimeoutError('pg_dump', 'dump', 1000, [], 1000); },
      { attempts: 3, delaySeconds: 0, logger, database: 'app', phase: 'dump' }).catch((x: unknown) => x);
    expect(calls).toBe(1);
    expect((e as PhaseError).timedOut).toBe(true);
  });

  it('gives up after the last attempt with the transient reason', async () => {
    const { out, logger } = quietLogger();
    const e = await withRetry(async () => { throw new Error('Connection terminated unexpectedly'); },
      { attempts: 2, delaySeconds: 0, logger, database: 'app', phase: 'restore' }).catch((x: unknown) => x);
    expect((e as PhaseError).attempts).toBe(2);
    expect((e as PhaseError).transient).toBe(true);
    expect(out.text()).toContain('gave up after 2/2 attempts: connection reset');
  });

  it('stops waiting when aborted', async () => {
    const { logger } = quietLogger();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const e = await withRetry(async () => { throw new Error('ECONNREFUSED'); },
      { attempts: 3, delaySeconds: 60, logger, database: 'app', phase: 'dump', signal: ac.signal }).catch((x: unknown) => x);
    expect((e as PhaseError).interrupted).toBe(true);
  });
});

describe('plan', () => {
  const server = { host: 'db.example', port: 5432, superuser: 'postgres', superPassword: 'TopSecret-1' };
  const t = makeRuntimeConfig({
    source: server, destination: { ...server, host: 'new.example' },
    databases: [
      { name: 'app', source: { database: 'app' }, destination: { database: 'app_new', username: 'migrator', password: 'DestSecret-2' } },
      { name: 'off', enabled: false, source: { database: 'off' }, destination: { database: 'off' } },
    ],
    migration: { dump: { jobs: 3, compression: 5, schemas: ['sales'], excludeSchemas: ['audit'], extraArgs: ['--no-comments'] }, restore: { jobs: 4, noAcl: true } },
  });
  afterAll(() => t.cleanup());

  it('builds pg_dump and pg_restore commands from the options, with no password anywhere', () => {
    const plan = buildPlan(t.config, { binDir: '/pg/bin' });
    expect(plan.skipped).toEqual(['off']);
    expect(plan.databases.map((d) => d.name)).toEqual(['app']);
    const db = plan.databases[0];
    expect(db.dumpDir).toBe(join(t.config.paths.dumps, 'app'));
    expect(db.dump.cmd).toBe('/pg/bin/pg_dump');
    expect(db.dump.args).toEqual([
      '--format=directory', '--jobs=3', `--file=${db.dumpDir}`, '--compress=5', '--lock-wait-timeout=60s', '--no-password',
      '--schema=sales', '--exclude-schema=audit', '--no-comments',
    ]);
    expect(db.dump.pgEnv).toMatchObject({ PGHOST: 'db.example', PGDATABASE: 'app', PGOPTIONS: '-c default_transaction_read_only=on -c tcp_keepalives_idle=15 -c tcp_keepalives_interval=7 -c tcp_keepalives_count=7 -c tcp_user_timeout=60000' });
    expect(db.restore.args).toEqual([
      '--format=directory', '--dbname=app_new', '--jobs=4', '--exit-on-error', '--no-password', '--verbose', '--no-owner', '--no-acl', db.dumpDir,
    ]);
    expect(db.restore.pgEnv).toMatchObject({ PGHOST: 'new.example', PGUSER: 'migrator', PGDATABASE: 'app_new' });
    expect(db.restore.pgEnv.PGOPTIONS).toBe('-c tcp_keepalives_idle=15 -c tcp_keepalives_interval=7 -c tcp_keepalives_count=7 -c tcp_user_timeout=60000'); // the destination is not read only
    expect(JSON.stringify(plan)).not.toMatch(/TopSecret|DestSecret/);
  });

  it('formats a command with the password shown only by reference', () => {
    const db = buildPlan(t.config, { binDir: '/pg/bin' }).databases[0];
    const line = formatCommand(db.dump);
    expect(line).toContain('PGPASSWORD=<from $DBM_APP_SOURCE_PASSWORD>');
    expect(line).toContain("PGOPTIONS='-c default_transaction_read_only=on -c tcp_keepalives_idle=");
    expect(line).toContain('/pg/bin/pg_dump --format=directory');
    expect(line).not.toContain('TopSecret');
  });

  it('gives each child only its own password, and no other PG* or password variable', () => {
    const db = buildPlan(t.config).databases[0];
    const env = commandEnv(db.restore, { ...t.env, PATH: '/bin', PGSERVICE: 'x' }, passwordEnvNames(t.config));
    expect(env.PGPASSWORD).toBe('DestSecret-2');
    expect(env.PATH).toBe('/bin');
    expect(env.PGSERVICE).toBeUndefined();
    expect(Object.values(env)).not.toContain('TopSecret-1');
  });

  it('uses PG_BIN when no bin dir is given, else PATH', () => {
    expect(buildPlan(t.config, { env: { PG_BIN: '/x' } }).databases[0].dump.cmd).toBe('/x/pg_dump');
    expect(buildPlan(t.config).databases[0].dump.cmd).toBe('pg_dump');
  });

  it('adds --clean --if-exists for a retried restore and quotes connection-string-like names', () => {
    const db = t.config.databases[0];
    expect(restoreCommand(db, '/d', t.config.migration, undefined, { cleanFirst: true }).args).toContain('--if-exists');
    expect(dbnameArg("a=b'c")).toBe("dbname='a=b\\'c'");
    expect(dbnameArg('plain')).toBe('plain');
  });
});

describe('progress', () => {
  it('counts TOC entries and restored items (capped at the total)', () => {
    expect(countTocEntries([';', '; Archive', '215; 1259 16386 TABLE public t1 postgres', '', '3354; 0 16386 TABLE DATA public t1 postgres'])).toBe(2);
    const p = new RestoreProgress(2);
    for (const l of ['pg_restore: connecting to database for restore', 'pg_restore: creating TABLE "public.t1"',
      'pg_restore: processing data for table "public.t1"', 'pg_restore: executing SEQUENCE SET s']) p.onStderrLine(l);
    expect(p.done).toBe(2);
  });

  it('measures a dump directory recursively', async () => {
    const d = join(tmp, 'dumpdir');
    mkdirSync(join(d, 'sub'), { recursive: true });
    writeFileSync(join(d, 'a'), Buffer.alloc(1000));
    writeFileSync(join(d, 'sub', 'b'), Buffer.alloc(24));
    expect(await directorySize(d)).toBe(1024);
    expect(await directorySize(join(tmp, 'missing'))).toBe(0);
    expect(dumpProgressLine(1024, 4096, undefined, 75).msg)
      .toBe('dumping: 1.0 KiB written of a 4.0 KiB database (25%; compressed dumps stay below 100%), rate not measured yet, time left unknown, 1m15s elapsed');
  });

  it('logs a line every interval until stopped', async () => {
    const out = capture();
    const logger = Logger.create({ out: out.stream });
    let n = 0;
    const ticker = startTicker(logger, 20, () => `tick ${++n}`);
    await new Promise((r) => setTimeout(r, 200));
    ticker.stop();
    const count = out.text().split('\n').filter((l) => l.includes('tick')).length;
    await new Promise((r) => setTimeout(r, 100));
    expect(count).toBeGreaterThanOrEqual(2);
    expect(out.text().split('\n').filter((l) => l.includes('tick')).length).toBe(count);
  });
});

describe('summary', () => {
  const started = new Date('2026-11-24T10:00:00Z');
  const finished = new Date('2026-11-24T10:05:00Z');
  const dbs: DatabaseResult[] = [
    { name: 'app', status: 'migrated', sizeBytes: 2048, dumpSeconds: 10, restoreSeconds: 20, verifySeconds: 3, rowsVerified: 100, tables: 4 },
    { name: 'crm', status: 'failed', phase: 'restore', error: 'pg_restore exited with code 1', sizeBytes: 1024 },
    { name: 'old', status: 'skipped' },
  ];

  it('is ok only when every enabled database migrated', () => {
    expect(finishSummary({ name: 'm', dryRun: false, startedAt: started, finishedAt: finished }, dbs).ok).toBe(false);
    const good = finishSummary({ name: 'm', dryRun: false, startedAt: started, finishedAt: finished }, [dbs[0], dbs[2]]);
    expect(good.ok).toBe(true);
    expect(good.totals).toMatchObject({ databases: 2, migrated: 1, skipped: 1, rowsVerified: 100, sizeBytes: 2048 });
    expect(good.durationSeconds).toBe(300);
  });

  it('prints a table with a row per database, the verdict and the errors', () => {
    const table = formatSummaryTable(finishSummary({ name: 'm', dryRun: false, startedAt: started, finishedAt: finished }, dbs));
    expect(table).toMatch(/^database\s+status\s+phase/);
    expect(table).toMatch(/app\s+migrated/);
    expect(table).toMatch(/crm\s+failed\s+restore/);
    expect(table).toContain('FAILED: 1/2 migrated, 1 failed, 0 interrupted, 1 skipped');
    expect(table).toContain('crm (restore): pg_restore exited with code 1');
  });

  it('keeps the compact summary within 4096 bytes even for many long errors', () => {
    const many: DatabaseResult[] = Array.from({ length: 200 }, (_, i) => ({ name: `database-${i}`, status: 'failed', phase: 'dump', error: 'x'.repeat(3000) }));
    const text = compactSummary(finishSummary({ name: 'm', dryRun: false, startedAt: started }, many));
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
    expect(JSON.parse(text).ok).toBe(false);
    const small = JSON.parse(compactSummary(finishSummary({ name: 'm', dryRun: false, startedAt: started }, dbs)));
    expect(small.databases[1]).toEqual({ name: 'crm', status: 'failed', phase: 'restore', error: 'pg_restore exited with code 1' });
  });

  it('writes summary.json and the termination log, and reports an unwritable termination log instead of throwing', () => {
    const s = finishSummary({ name: 'm', dryRun: false, startedAt: started }, [{ ...dbs[1], error: 'bad SeCrEt' }]);
    const logs = join(tmp, 'summary-logs');
    writeSummaryFiles(s, { logs, terminationLog: join(tmp, 'termination-log') }, ['SeCrEt']);
    expect(JSON.parse(readFileSync(join(logs, 'summary.json'), 'utf8')).databases[0].error).toBe('bad ***');
    expect(readFileSync(join(tmp, 'termination-log'), 'utf8')).toContain('"status":"failed"');
    const bad = writeSummaryFiles(s, { logs, terminationLog: '/nonexistent-dir/termination-log' });
    expect(bad.failures).toHaveLength(1);
    expect(bad.summaryFile).toBeDefined();
  });
});

describe('stream archive listing', () => {
  it('picks each table\'s indexes and key constraints as table-level post-data, not FKs, checks or index attachments', () => {
    // given a pg_restore --list of a schema archive (lines as pg_restore 15 prints them)
    const listing = [
      ';',
      '; Archive created at 2026-11-24 03:00:00 UTC',
      ';',
      '215; 1259 16390 TABLE public orders app_owner',
      '216; 1259 16396 SEQUENCE public orders_id_seq app_owner',
      '3401; 2606 16400 CONSTRAINT public orders orders_pkey app_owner',
      '3402; 1259 16402 INDEX public orders_customer_idx app_owner',
      '3403; 1259 16410 INDEX public events_2024_pkey app_owner',
      '3404; 0 0 INDEX ATTACH public events_2024_pkey app_owner',
      '3405; 2606 16420 FK CONSTRAINT public orders orders_customer_fkey app_owner',
      '3406; 2606 16421 CHECK CONSTRAINT public orders orders_total_check app_owner',
      '3407; 2620 16430 TRIGGER public orders orders_touch app_owner',
      '3408; 0 16390 COMMENT public INDEX orders_customer_idx app_owner',
    ];

    // when it is parsed
    const contents = parseArchiveList(listing);

    // then only INDEX (pg_class) and CONSTRAINT (pg_constraint) entries are table-level, with their lines
    expect(contents.tableLevelPostData).toEqual([
      { kind: 'constraint', oid: 16400, line: listing[5] },
      { kind: 'index', oid: 16402, line: listing[6] },
      { kind: 'index', oid: 16410, line: listing[7] },
    ]);
    expect(contents.tableOids).toEqual([16390]);
    expect(contents.sequenceOids).toEqual([16396]);
    expect(contents.entryLines).toEqual(listing.slice(3));
  });
});
