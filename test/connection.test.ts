/**
 * Connection settings, checked as values and against real servers: node-postgres clients and psql run with
 * libpqEnv must reach the server, read-only sessions must refuse writes, and TLS modes must behave as libpq's.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ResolvedEndpoint } from '../src/spec/runtime-config';
import { configureNetwork, connect, describeEndpoint, libpqEnv, passwordFor, pgClientConfig } from '../src/runner/postgres/connection';
import { classifyError } from '../src/runner/postgres/errors';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';

const run = promisify(execFile);

let source: PgServer;
let destination: PgServer;
let dir: string;

const endpoint = (server: PgServer, over: Partial<ResolvedEndpoint> = {}): ResolvedEndpoint => ({
  host: server.host, port: server.port, database: 'postgres', username: 'postgres', sslmode: 'prefer',
  passwordEnv: 'DBM_APP_SOURCE_PASSWORD', ...over,
});
const envFor = (server: PgServer) => ({ DBM_APP_SOURCE_PASSWORD: server.superPassword });

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'conn-src' }), startPgServer({ name: 'conn-dst' })]);
  dir = mkdtempSync(join(tmpdir(), 'dbm-conn-'));
});

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

/** The servers' side of the default 60 s network timeout: keepalive after 15 s idle, every 7 s, 7 probes. */
const SERVER_KEEPALIVES = '-c tcp_keepalives_idle=15 -c tcp_keepalives_interval=7 -c tcp_keepalives_count=7 -c tcp_user_timeout=60000';

describe('passwordFor', () => {
  const ep = { host: 'h', port: 5432, database: 'temporal', username: 'temporal', sslmode: 'prefer', passwordEnv: 'DBM_X_SOURCE_PASSWORD' } as const;

  it('reads the variable the endpoint names', () => {
    expect(passwordFor(ep, { DBM_X_SOURCE_PASSWORD: 's3cr3t' })).toBe('s3cr3t');
  });

  it('fails naming the variable when it is missing or empty', () => {
    const message = 'environment variable DBM_X_SOURCE_PASSWORD is not set: the Job maps it from the Secret named in the spec '
      + '(password of temporal@h:5432/temporal)';
    expect(() => passwordFor(ep, {})).toThrow(message);
    expect(() => passwordFor(ep, { DBM_X_SOURCE_PASSWORD: '' })).toThrow(message);
  });
});

describe('describeEndpoint', () => {
  it('is user@host:port/database, without the password', () => {
    expect(describeEndpoint({ host: 'db.prod.svc', port: 5433, database: 'app', username: 'migrator' })).toBe('migrator@db.prod.svc:5433/app');
  });
});

describe('pgClientConfig', () => {
  const base = { host: 'db', port: 5432, database: 'app', username: 'migrator', passwordEnv: 'PW' } as const;
  const env = { PW: 'pw' };

  it('sets read-only sessions, the application name and the connect timeout, and no statement_timeout', () => {
    const cfg = pgClientConfig({ ...base, sslmode: 'disable' }, env, { readOnly: true, connectTimeoutSeconds: 7 });
    // (network settings: the default 60 s until configureNetwork runs: keepalive after 50 s, then libuv's 10 probes a
    // second apart; the server probes after 15 s, every 7 s, 7 times)
    expect(cfg).toEqual({
      host: 'db', port: 5432, database: 'app', user: 'migrator', password: 'pw', ssl: false,
      connectionTimeoutMillis: 7000, application_name: 'db-migration', keepAlive: true, keepAliveInitialDelayMillis: 50_000,
      options: `-c default_transaction_read_only=on ${SERVER_KEEPALIVES}`,
    });
    expect(cfg).not.toHaveProperty('statement_timeout');
    const dest = pgClientConfig({ ...base, sslmode: 'disable' }, env, { readOnly: false, connectTimeoutSeconds: 7, applicationName: 'x' });
    expect(dest.options).toBe(SERVER_KEEPALIVES);
    expect(dest.application_name).toBe('x');
  });

  it('maps each sslmode to TLS settings', () => {
    const ca = join(dir, 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nnot-a-real-cert\n-----END CERTIFICATE-----\n');
    const ssl = (sslmode: ResolvedEndpoint['sslmode'], caCertFile?: string) =>
      pgClientConfig({ ...base, sslmode, ...(caCertFile ? { caCertFile } : {}) }, env, { readOnly: false, connectTimeoutSeconds: 1 }).ssl;
    expect(ssl('disable')).toBe(false);
    expect(ssl('allow')).toEqual({ rejectUnauthorized: false });
    expect(ssl('prefer')).toEqual({ rejectUnauthorized: false });
    expect(ssl('require')).toEqual({ rejectUnauthorized: false });
    const verifyCa = ssl('verify-ca', ca) as { rejectUnauthorized: boolean; ca: string; checkServerIdentity: () => unknown };
    expect(verifyCa.rejectUnauthorized).toBe(true);
    expect(verifyCa.ca).toContain('not-a-real-cert');
    expect(verifyCa.checkServerIdentity()).toBeUndefined(); // any host name is accepted, the chain is not
    expect(ssl('verify-full', ca)).toEqual({ rejectUnauthorized: true, ca: expect.stringContaining('not-a-real-cert') });
  });

  it('fails clearly when the CA file cannot be read', () => {
    expect(() => pgClientConfig({ ...base, sslmode: 'verify-full', caCertFile: join(dir, 'missing.pem') }, env, { readOnly: false, connectTimeoutSeconds: 1 }))
      .toThrow(`cannot read the CA certificate ${join(dir, 'missing.pem')} for migrator@db:5432/app (sslmode verify-full): ENOENT`);
  });
});

describe('libpqEnv', () => {
  it('carries every connection setting, the password only in PGPASSWORD', () => {
    const ep = { host: 'db', port: 6543, database: 'app', username: 'migrator', sslmode: 'verify-full', passwordEnv: 'PW', caCertFile: '/etc/tls/ca.crt' } as const;
    expect(libpqEnv(ep, { PW: 'pw' }, { readOnly: true, connectTimeoutSeconds: 10 })).toEqual({
      PGHOST: 'db', PGPORT: '6543', PGUSER: 'migrator', PGDATABASE: 'app', PGSSLMODE: 'verify-full',
      PGSSLROOTCERT: '/etc/tls/ca.crt', PGPASSWORD: 'pw', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'db-migration',
      PGOPTIONS: `-c default_transaction_read_only=on ${SERVER_KEEPALIVES}`,
    });
    const dest = libpqEnv({ ...ep, sslmode: 'prefer', caCertFile: undefined }, { PW: 'pw' }, { readOnly: false, connectTimeoutSeconds: 1 });
    expect(dest.PGOPTIONS).toBe(SERVER_KEEPALIVES);
    expect(dest).not.toHaveProperty('PGSSLROOTCERT');
    expect(dest.PGCONNECT_TIMEOUT).toBe('2'); // libpq's minimum
  });

  it('lets psql reach a real server, read only for the source', async () => {
    const env = { ...process.env, ...libpqEnv(endpoint(source), envFor(source), { readOnly: true, connectTimeoutSeconds: 5 }) };
    const { stdout } = await run(join(PG_BIN, 'psql'), ['-X', '-At', '-c', 'SHOW application_name', '-c', 'SHOW default_transaction_read_only'], { env });
    expect(stdout.trim().split('\n')).toEqual(['db-migration', 'on']);
    const write = run(join(PG_BIN, 'psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-c', 'CREATE TABLE t (id int)'], { env });
    await expect(write).rejects.toMatchObject({ stderr: expect.stringContaining('cannot execute CREATE TABLE in a read-only transaction') });
  });

  it('given a network timeout, when psql connects, then libpq reads the keepalives from the service file and the server probes its side too', async () => {
    // given migration.timeouts.network: 20 (keepalive after 5 s idle, every 2 s, 8 probes; 20 s for unacknowledged data)
    const settings = configureNetwork(20, dir);
    try {
      expect(readFileSync(settings.serviceFile!, 'utf8')).toBe('# db-migration: bounded waits on a silent network (migration.timeouts.network); written by the runner\n'
        + '[db-migration]\nkeepalives=1\nkeepalives_idle=5\nkeepalives_interval=2\nkeepalives_count=8\ntcp_user_timeout=20000\n');
      const env = { ...process.env, ...libpqEnv(endpoint(source), envFor(source), { readOnly: true, connectTimeoutSeconds: 5 }) };
      expect(env).toMatchObject({ PGSERVICEFILE: settings.serviceFile, PGSERVICE: 'db-migration' });
      // when psql connects with that environment (a service libpq could not read would fail the connection)
      const { stdout } = await run(join(PG_BIN, 'psql'), ['-X', '-At', '-c', 'SHOW tcp_keepalives_idle', '-c', 'SHOW tcp_keepalives_interval',
        '-c', 'SHOW tcp_keepalives_count', '-c', 'SHOW tcp_user_timeout', '-c', 'SHOW default_transaction_read_only'], { env });
      // then the server's side of the session probes as the runner's does, and the session is still read only
      expect(stdout.trim().split('\n')).toEqual(['5', '2', '8', '20000', 'on']);
      // and the runner's own sessions too
      const client = await connect(endpoint(source), envFor(source), { readOnly: false, connectTimeoutSeconds: 5 });
      try {
        expect((await client.query('SHOW tcp_keepalives_idle')).rows).toEqual([{ tcp_keepalives_idle: '5' }]);
      } finally {
        await client.end();
      }
    } finally {
      configureNetwork(60, dir);
    }
  });

  it('lets psql write on the destination', async () => {
    const env = { ...process.env, ...libpqEnv(endpoint(destination), envFor(destination), { readOnly: false, connectTimeoutSeconds: 5 }) };
    await run(join(PG_BIN, 'psql'), ['-X', '-v', 'ON_ERROR_STOP=1', '-c', 'CREATE TABLE written (id int)'], { env });
    expect(await destination.query('SELECT count(*)::int AS n FROM written')).toEqual([{ n: 0 }]);
  });
});

describe('connect', () => {
  it('connects with sslmode prefer to a server without TLS (plain fallback) and opens read-only sessions', async () => {
    const client = await connect(endpoint(source), envFor(source), { readOnly: true, connectTimeoutSeconds: 5 });
    try {
      const res = await client.query(`SELECT current_setting('default_transaction_read_only') AS ro, current_setting('application_name') AS app,
        current_setting('statement_timeout') AS st, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS ssl`);
      expect(res.rows[0]).toEqual({ ro: 'on', app: 'db-migration', st: '0', ssl: false });
      await expect(client.query('CREATE TABLE t (id int)')).rejects.toMatchObject({ code: '25006' });
    } finally {
      await client.end();
    }
  });

  it('connects with sslmode disable and allows writes on the destination', async () => {
    const client = await connect(endpoint(destination, { sslmode: 'disable' }), envFor(destination), { readOnly: false, connectTimeoutSeconds: 5 });
    try {
      await client.query('CREATE TABLE IF NOT EXISTS t2 (id int)');
    } finally {
      await client.end();
    }
  });

  it('fails with sslmode require when the server offers no TLS, as a permanent error', async () => {
    const err = await connect(endpoint(source, { sslmode: 'require' }), envFor(source), { readOnly: true, connectTimeoutSeconds: 5 }).catch((e) => e);
    expect(err.message).toBe('The server does not support SSL connections');
    expect(classifyError(err)).toEqual({ transient: false, reason: 'server does not support TLS' });
  });

  it('fails on a wrong password with SQLSTATE 28P01', async () => {
    const err = await connect(endpoint(source), { DBM_APP_SOURCE_PASSWORD: 'wrong' }, { readOnly: true, connectTimeoutSeconds: 5 }).catch((e) => e);
    expect(err).toMatchObject({ code: '28P01', message: 'password authentication failed for user "postgres"' });
  });

  it('gives up after the connect timeout when the server never answers', async () => {
    const sockets: Array<{ destroy(): void }> = [];
    const silent: Server = createServer((s) => { sockets.push(s); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as { port: number }).port;
    try {
      const started = Date.now();
      const err = await connect({ ...endpoint(source), port, sslmode: 'disable' }, envFor(source), { readOnly: true, connectTimeoutSeconds: 1 }).catch((e) => e);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(900);
      expect(elapsed).toBeLessThan(5000);
      expect(classifyError(err)).toEqual({ transient: true, reason: 'connection timed out' });
    } finally {
      for (const s of sockets) s.destroy();
      silent.close();
    }
  });
});
