/**
 * How the runner reaches a server: node-postgres client settings for its own queries, and the libpq
 * environment for pg_dump / pg_restore / psql. Passwords come from environment variables only (the Job maps
 * them from Secrets) and never appear in command-line arguments, messages or errors.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Client, type ClientConfig } from 'pg';
import type { ResolvedEndpoint } from '../spec/runtime-config';

/** The application_name every session of the runner uses, so DBAs can spot it in pg_stat_activity. */
export const APPLICATION_NAME = 'db-migration';

/** Session option that makes every transaction read only; source sessions always carry it. */
export const READ_ONLY_OPTIONS = '-c default_transaction_read_only=on';

export interface ConnectionOptionsInput {
  /** Source sessions are read only (`default_transaction_read_only=on`). */
  readonly readOnly: boolean;
  /** Seconds to wait for the connection (TCP, TLS and authentication). */
  readonly connectTimeoutSeconds: number;
  /** @default - 'db-migration' */
  readonly applicationName?: string;
}

/** The password of an endpoint, from the environment variable the runtime config names. */
export function passwordFor(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv): string {
  const value = env[ep.passwordEnv];
  if (value === undefined || value === '') {
    throw new Error(
      `environment variable ${ep.passwordEnv} is not set: the Job maps it from the Secret named in the spec (password of ${describeEndpoint(ep)})`,
    );
  }
  return value;
}

/** "user@host:port/database", for messages. Never carries the password. */
export function describeEndpoint(ep: Pick<ResolvedEndpoint, 'username' | 'host' | 'port' | 'database'>): string {
  return `${ep.username}@${ep.host}:${ep.port}/${ep.database}`;
}

/**
 * node-postgres TLS settings for an sslmode.
 *
 * node-postgres has no "try TLS, fall back to plain" mode, so `allow` and `prefer` return TLS without
 * verification here (like `require`), and {@link connect} retries without TLS when the server answers that
 * it does not support SSL. That is libpq's `prefer` behaviour; `allow` (plain first, TLS second) is treated
 * the same, since preferring encryption is never less safe. Callers that build their own `pg.Client` or
 * `pg.Pool` from {@link pgClientConfig} must handle that fallback themselves (or use {@link connect}).
 */
export function sslOptions(ep: ResolvedEndpoint): false | ConnectionOptions {
  switch (ep.sslmode) {
    case 'disable':
      return false;
    case 'allow':
    case 'prefer':
    case 'require':
      return { rejectUnauthorized: false };
    case 'verify-ca':
      // The chain must lead to the CA, but the certificate may name any host (libpq verify-ca).
      return { rejectUnauthorized: true, ca: readCa(ep), checkServerIdentity: () => undefined };
    case 'verify-full':
      // node-postgres sets the TLS server name from the host (not for IP addresses), so Node's default
      // checkServerIdentity compares the certificate with the host name or IP address we connect to.
      return { rejectUnauthorized: true, ca: readCa(ep) };
  }
}

/** node-postgres client settings for an endpoint. No statement_timeout: dumps and counts may run long. */
export function pgClientConfig(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, opts: ConnectionOptionsInput): ClientConfig {
  return {
    host: ep.host,
    port: ep.port,
    database: ep.database,
    user: ep.username,
    password: passwordFor(ep, env),
    ssl: sslOptions(ep),
    connectionTimeoutMillis: Math.max(1, Math.round(opts.connectTimeoutSeconds * 1000)),
    application_name: opts.applicationName ?? APPLICATION_NAME,
    keepAlive: true,
    ...(opts.readOnly ? { options: READ_ONLY_OPTIONS } : {}),
  };
}

/**
 * A connected client (within the connect timeout). For sslmode allow/prefer it falls back to a plain
 * connection when the server does not offer TLS, as libpq does. The caller ends the client.
 */
export async function connect(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, opts: ConnectionOptionsInput): Promise<Client> {
  const config = pgClientConfig(ep, env, opts);
  try {
    return await connectWith(config);
  } catch (err) {
    const fallback = (ep.sslmode === 'prefer' || ep.sslmode === 'allow') && /does not support SSL/i.test(errorText(err));
    if (!fallback) throw err;
    return connectWith({ ...config, ssl: false });
  }
}

async function connectWith(config: ClientConfig): Promise<Client> {
  const client = new Client(config);
  // An idle client whose server goes away emits 'error'; without a listener that would crash the runner.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

/** The SQLSTATE of a server error, if it is one. */
export function sqlstate(err: unknown): string | undefined {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The databases worth trying when one is missing or forbidden: the server's maintenance databases. */
export const MAINTENANCE_DATABASES = ['postgres', 'template1'] as const;

/**
 * A session on the server of `ep`, in the first of `databases` that exists and may be connected to (for work
 * on a database that may not exist yet). Any other failure is thrown at once.
 */
export async function connectFirstAvailable(
  ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, databases: readonly string[], opts: ConnectionOptionsInput,
): Promise<Client> {
  let last: unknown;
  for (const database of databases) {
    try {
      return await connect({ ...ep, database }, env, opts);
    } catch (err) {
      last = err;
      // Only a missing or forbidden database is worth trying the next one for.
      if (!['3D000', '28000', '42501'].includes(sqlstate(err) ?? '')) throw err;
    }
  }
  throw last;
}

/**
 * Environment for pg_dump, pg_restore and psql. Merge it over the process environment; the password travels
 * in PGPASSWORD, never in arguments. PGSSLMODE is libpq's own, so `prefer` and `allow` behave exactly as
 * documented by PostgreSQL.
 */
export function libpqEnv(
  ep: ResolvedEndpoint,
  env: NodeJS.ProcessEnv,
  opts: { readonly readOnly: boolean; readonly connectTimeoutSeconds: number },
): Record<string, string> {
  const out: Record<string, string> = {
    PGHOST: ep.host,
    PGPORT: String(ep.port),
    PGUSER: ep.username,
    PGDATABASE: ep.database,
    PGSSLMODE: ep.sslmode,
    PGPASSWORD: passwordFor(ep, env),
    // libpq treats values below 2 as 2 seconds; keep it an integer.
    PGCONNECT_TIMEOUT: String(Math.max(2, Math.ceil(opts.connectTimeoutSeconds))),
    PGAPPNAME: APPLICATION_NAME,
  };
  if (ep.caCertFile) out.PGSSLROOTCERT = ep.caCertFile;
  if (opts.readOnly) out.PGOPTIONS = READ_ONLY_OPTIONS;
  return out;
}

function readCa(ep: ResolvedEndpoint): string | undefined {
  if (!ep.caCertFile) return undefined; // Node's default trust store, like libpq's system root when no file is given.
  try {
    return readFileSync(ep.caCertFile, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the CA certificate ${ep.caCertFile} for ${describeEndpoint(ep)} (sslmode ${ep.sslmode}): ${(err as Error).message}`);
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
