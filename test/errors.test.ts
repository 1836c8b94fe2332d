/**
 * Error classification on errors produced for real (node-postgres against live servers, pg_dump's stderr),
 * plus the libpq messages that cannot be provoked on demand (a server starting up) as the text libpq prints.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyError, errorClause, humanError } from '../src/runner/postgres/errors';
import { freePort, PG_BIN, startPgServer, type PgServer } from './support/pg-server';

const run = promisify(execFile);

let source: PgServer;
let destination: PgServer;

async function pgError(server: PgServer, opts: { user?: string; password?: string; database?: string; port?: number; sql?: string } = {}): Promise<unknown> {
  const client = new Client({
    host: server.host, port: opts.port ?? server.port, user: opts.user ?? 'postgres',
    password: opts.password ?? server.superPassword, database: opts.database ?? 'postgres', connectionTimeoutMillis: 5000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query(opts.sql ?? 'SELECT 1');
    return undefined;
  } catch (err) {
    return err;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** pg_dump's stderr against a server, as the dump phase would capture it. */
async function pgDumpStderr(server: PgServer, opts: { port?: number; password?: string; user?: string; database?: string }): Promise<string> {
  const env = {
    ...process.env, PGHOST: server.host, PGPORT: String(opts.port ?? server.port), PGUSER: opts.user ?? 'postgres',
    PGPASSWORD: opts.password ?? server.superPassword, PGDATABASE: opts.database ?? 'postgres', PGCONNECT_TIMEOUT: '5',
  };
  const err = await run(join(PG_BIN, 'pg_dump'), ['--schema-only'], { env }).then(() => undefined, (e) => e);
  expect(err).toBeDefined();
  return (err as { stderr: string }).stderr;
}

beforeAll(async () => {
  [source, destination] = await Promise.all([startPgServer({ name: 'err-src' }), startPgServer({ name: 'err-dst' })]);
  await source.createRole('limited', 'limited-pw', 'CONNECTION LIMIT 0');
  await source.createRole('reader', 'reader-pw');
  await source.query('CREATE TABLE secret (id int)');
});

afterAll(async () => {
  await Promise.all([source?.destroy(), destination?.destroy()]);
});

describe('classifyError on node-postgres and socket errors', () => {
  it('connection refused is transient', async () => {
    const err = await pgError(source, { port: await freePort() });
    expect(classifyError(err)).toEqual({ transient: true, reason: 'connection refused' });
  });

  it('a wrong password is permanent', async () => {
    const err = await pgError(source, { password: 'wrong' });
    expect(classifyError(err)).toEqual({ transient: false, reason: 'password authentication failed' });
    expect(humanError(err)).toBe('Password authentication failed for user "postgres": check the password in the Secret the spec names '
      + 'and that the role exists with that password.');
  });

  it('a missing database is permanent', async () => {
    const err = await pgError(source, { database: 'nosuch' });
    expect(classifyError(err)).toEqual({ transient: false, reason: 'database does not exist' });
    expect(humanError(err)).toBe('Database "nosuch" does not exist: create the database or fix the database name in the spec.');
  });

  it('a missing privilege is permanent', async () => {
    const err = await pgError(source, { user: 'reader', password: 'reader-pw', sql: 'SELECT * FROM secret' });
    expect(err).toMatchObject({ code: '42501' });
    expect(classifyError(err)).toEqual({ transient: false, reason: 'insufficient privilege' });
  });

  it('a missing table is permanent', async () => {
    const err = await pgError(source, { sql: 'SELECT * FROM nosuch_table' });
    expect(err).toMatchObject({ code: '42P01' });
    expect(classifyError(err)).toEqual({ transient: false, reason: 'object does not exist' });
  });

  it('too many connections (53300) is transient', async () => {
    const err = await pgError(source, { user: 'limited', password: 'limited-pw' });
    expect(err).toMatchObject({ code: '53300' });
    expect(classifyError(err)).toEqual({ transient: true, reason: 'too many connections' });
  });

  it('a session terminated by an administrator (57P01) is transient, and so is using the dead client afterwards', async () => {
    const client = new Client({ host: destination.host, port: destination.port, user: 'postgres', password: destination.superPassword, database: 'postgres' });
    client.on('error', () => undefined);
    await client.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const running = client.query('SELECT pg_sleep(10)').then(() => undefined, (e) => e);
    await new Promise((r) => setTimeout(r, 200));
    await destination.query(`SELECT pg_terminate_backend(${pid})`);
    const err = await running;
    expect(err).toMatchObject({ code: '57P01' });
    expect(classifyError(err)).toEqual({ transient: true, reason: 'server shut down the session' });
    const after = await client.query('SELECT 1').then(() => undefined, (e) => e);
    await client.end().catch(() => undefined);
    expect(classifyError(after)).toEqual({ transient: true, reason: 'connection reset' });
  });

  it('a server without TLS under sslmode require is permanent', async () => {
    const client = new Client({ host: source.host, port: source.port, user: 'postgres', password: source.superPassword, ssl: { rejectUnauthorized: false } });
    const err = await client.connect().then(() => undefined, (e) => e);
    expect(classifyError(err)).toEqual({ transient: false, reason: 'server does not support TLS' });
    expect(humanError(err)).toBe('The server does not support SSL connections: the server does not offer TLS: enable ssl on the server, '
      + 'or set sslmode to prefer or disable in the spec.');
  });

  it('classifies errno codes: ETIMEDOUT, EAI_AGAIN and ECONNRESET transient, ENOTFOUND permanent', () => {
    const errno = (code: string, message: string) => Object.assign(new Error(message), { code });
    expect(classifyError(errno('ETIMEDOUT', 'connect ETIMEDOUT 10.0.0.1:5432'))).toEqual({ transient: true, reason: 'connection timed out' });
    // once connected, a timeout is the network's (keepalive gave up): migration.timeouts.network
    expect(classifyError(errno('ETIMEDOUT', 'read ETIMEDOUT'))).toEqual({ transient: true, reason: 'network timeout' });
    expect(classifyError(new Error('could not receive data from server: Connection timed out'))).toEqual({ transient: true, reason: 'network timeout' });
    expect(classifyError(errno('EAI_AGAIN', 'getaddrinfo EAI_AGAIN db.svc'))).toEqual({ transient: true, reason: 'temporary DNS failure' });
    expect(classifyError(errno('ECONNRESET', 'read ECONNRESET'))).toEqual({ transient: true, reason: 'connection reset' });
    expect(classifyError(errno('EPIPE', 'write EPIPE'))).toEqual({ transient: true, reason: 'connection reset' });
    const notFound = errno('ENOTFOUND', 'getaddrinfo ENOTFOUND db.prod.svc');
    expect(classifyError(notFound)).toEqual({ transient: false, reason: 'host name does not resolve' });
    expect(humanError(notFound)).toBe('Host name "db.prod.svc" does not resolve: check the host in the spec: the name does not exist in DNS '
      + 'as seen from the Job (use the full service name, e.g. db.namespace.svc.cluster.local).');
  });

  it('looks inside AggregateError (several addresses) and error causes', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED ::1:5432'), { code: 'ECONNREFUSED' });
    expect(classifyError(new AggregateError([refused], ''))).toEqual({ transient: true, reason: 'connection refused' });
    expect(classifyError(new Error('dump failed', { cause: refused }))).toEqual({ transient: true, reason: 'connection refused' });
  });

  it('SQLSTATEs by code alone: 57P03 starting up, 08006 connection failure, 28000 pg_hba', () => {
    const sql = (code: string) => Object.assign(new Error('x'), { code, severity: 'FATAL' });
    expect(classifyError(sql('57P03'))).toEqual({ transient: true, reason: 'server is starting up' });
    expect(classifyError(sql('08006'))).toEqual({ transient: true, reason: 'connection failure' });
    expect(classifyError(sql('28000'))).toEqual({ transient: false, reason: 'connection not allowed by pg_hba.conf' });
    expect(classifyError(sql('3D000'))).toEqual({ transient: false, reason: 'database does not exist' });
    expect(classifyError(sql('XX000'))).toEqual({ transient: false, reason: 'SQLSTATE XX000' });
  });

  it('unknown errors are permanent, and humanError never shows a stack trace', () => {
    const err = new Error('something odd\n    at foo (bar.js:1:1)');
    expect(classifyError(err)).toEqual({ transient: false, reason: 'unexpected error' });
    expect(humanError(err)).toBe('Something odd.');
    expect(humanError(undefined)).toBe('Unknown error.');
  });
});

describe('classifyError on pg_dump stderr', () => {
  it('connection refused (real pg_dump output) is transient', async () => {
    const stderr = await pgDumpStderr(source, { port: await freePort() });
    expect(stderr).toContain('Connection refused');
    expect(classifyError(stderr)).toEqual({ transient: true, reason: 'connection refused' });
    expect(humanError(stderr)).toMatch(/^Connection to server at "127\.0\.0\.1", port \d+ failed: Connection refused: nothing accepts connections/);
  });

  it('password authentication failed (real pg_dump output) is permanent', async () => {
    const stderr = await pgDumpStderr(source, { password: 'wrong' });
    expect(classifyError(stderr)).toEqual({ transient: false, reason: 'password authentication failed' });
  });

  it('permission denied (real pg_dump output) is permanent, also through a tool error object', async () => {
    const stderr = await pgDumpStderr(source, { user: 'reader', password: 'reader-pw' });
    expect(stderr).toContain('permission denied');
    expect(classifyError(stderr)).toEqual({ transient: false, reason: 'insufficient privilege' });
    // The shape of the orchestration's ToolError: a generic message, the tool's stderr alongside.
    const toolError = Object.assign(new Error('pg_dump exited with code 1'), { stderr });
    expect(classifyError(toolError)).toEqual({ transient: false, reason: 'insufficient privilege' });
    expect(humanError(toolError)).toBe('Query failed: permission denied for table secret: grant the missing privilege to the migration user '
      + '(the pre-flight report gives the exact GRANT).');
  });

  it('libpq messages for a starting server and full connection slots are transient', () => {
    const text = (msg: string) => `pg_dump: error: connection to server at "db" (10.0.0.5), port 5432 failed: FATAL:  ${msg}`;
    expect(classifyError(text('the database system is starting up'))).toEqual({ transient: true, reason: 'server is starting up' });
    expect(classifyError(text('sorry, too many clients already'))).toEqual({ transient: true, reason: 'too many connections' });
    expect(classifyError(text('remaining connection slots are reserved for non-replication superuser connections'))).toEqual({ transient: true, reason: 'too many connections' });
    expect(classifyError('pg_restore: error: could not receive data from server: Connection reset by peer')).toEqual({ transient: true, reason: 'connection reset' });
    expect(classifyError('pg_dump: error: could not translate host name "db.nosuch" to address: Name or service not known')).toEqual({ transient: false, reason: 'host name does not resolve' });
    expect(classifyError('pg_dump: error: could not translate host name "db" to address: Temporary failure in name resolution')).toEqual({ transient: true, reason: 'temporary DNS failure' });
    expect(classifyError('pg_dump: error: aborting because of server version mismatch')).toEqual({ transient: false, reason: 'client tools older than the server' });
  });

  it('a permanent cause wins over a transient one in the same output (one address refused, the next rejected the login)', () => {
    const stderr = 'pg_dump: error: connection to server at "localhost" (::1), port 5432 failed: Connection refused\n'
      + 'connection to server at "localhost" (127.0.0.1), port 5432 failed: FATAL:  password authentication failed for user "x"';
    expect(classifyError(stderr)).toEqual({ transient: false, reason: 'password authentication failed' });
  });

  it('errorClause is humanError for embedding', () => {
    expect(errorClause('pg_dump: error: connection to server failed: FATAL:  the database system is starting up'))
      .toBe('connection to server failed: the database system is starting up: the server is starting or recovering; it is retried, and if it persists check the server');
  });
});
