/**
 * Folder postgres/: PostgreSQL access: connections (this file), SQL helpers, the TCP watchdog, error
 * classification and retries, and exec.ts, the one place the client tools are started. Imports only report/;
 * imported by every other folder.
 *
 * How the runner reaches a server: node-postgres client settings for its own queries, and the libpq
 * environment for pg_dump / pg_restore / psql. Passwords come from environment variables only (the Job maps
 * them from Secrets) and never appear in command-line arguments, messages or errors.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Client, type ClientConfig } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { watchUnacknowledged } from './tcp-watchdog';

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
  /** A logical replication connection (online mode's slot): `replication=database`. @default - a normal session */
  readonly replication?: boolean;
}

/**
 * How long a silent network (a partition, a node or firewall dropping packets: no reset, no answer) may keep a
 * connection waiting: migration.timeouts.network, set once per run by {@link configureNetwork}.
 * - libpq (pg_dump, pg_restore, psql, pg_dumpall): keepalives every few seconds once idle for a quarter of the
 *   timeout, and tcp_user_timeout, which bounds data the server does not acknowledge; through a service file
 *   (PGSERVICEFILE), since libpq has no environment variables for them and arguments stay unchanged.
 * - the runner's own sessions: TCP keepalive after the timeout less 10 s (libuv then probes every second, 10
 *   times), and the tcp-watchdog for unacknowledged data.
 * - the servers: the same keepalives and user timeout on their side of each session (tcp_keepalives_*,
 *   tcp_user_timeout; PostgreSQL 12 and later), so a backend whose runner vanished ends and releases its locks
 *   and snapshot instead of waiting for the operating system's two hours or fifteen minutes.
 */
export interface NetworkSettings {
  readonly timeoutSeconds: number;
  /** The libpq service file holding the keepalive settings, or undefined before it is written. */
  readonly serviceFile?: string;
}

/** The libpq service the tools use (its section in the service file). */
export const LIBPQ_SERVICE = 'db-migration';

/** What libuv adds after the idle time: a probe every second, 10 probes (measured on node 20 and 24). */
const NODE_KEEPALIVE_PROBE_SECONDS = 10;

/** Used until configureNetwork runs (the spec's default). */
const DEFAULT_NETWORK_TIMEOUT_SECONDS = 60;
let network: NetworkSettings = { timeoutSeconds: DEFAULT_NETWORK_TIMEOUT_SECONDS };

/** Keepalive timing for a network timeout: idle for a quarter of it, then probes that use up the rest. */
export function keepaliveSettings(timeoutSeconds: number) {
  const idle = Math.max(1, Math.floor(timeoutSeconds / 4));
  const interval = Math.max(1, Math.floor(timeoutSeconds / 8));
  return { idle, interval, count: Math.max(1, Math.ceil((timeoutSeconds - idle) / interval)), userTimeoutMs: timeoutSeconds * 1000 };
}

/** Sets the network timeout for every connection opened from now on; writes the libpq service file into `dir`. */
export function configureNetwork(timeoutSeconds: number, dir: string): NetworkSettings {
  const k = keepaliveSettings(timeoutSeconds);
  const serviceFile = join(dir, 'pg_service.conf');
  writeFileSync(serviceFile, [
    '# db-migration: bounded waits on a silent network (migration.timeouts.network); written by the runner',
    `[${LIBPQ_SERVICE}]`,
    'keepalives=1',
    `keepalives_idle=${k.idle}`,
    `keepalives_interval=${k.interval}`,
    `keepalives_count=${k.count}`,
    `tcp_user_timeout=${k.userTimeoutMs}`,
    '',
  ].join('\n'), { mode: 0o600 });
  network = { timeoutSeconds, serviceFile };
  return network;
}

/** Removes the service file configureNetwork wrote (the tools then get no keepalive settings, as before it). */
export function releaseNetwork(): void {
  if (network.serviceFile) rmSync(network.serviceFile, { force: true });
  network = { timeoutSeconds: network.timeoutSeconds };
}

/**
 * The session options every connection carries (node-postgres `options`, libpq PGOPTIONS): read only on the
 * source, and the server watching its side of the connection as the runner does (tcp_keepalives_*, and
 * tcp_user_timeout, PostgreSQL 12 and later: a backend sending COPY data to a vanished runner gives up too).
 */
function sessionOptions(readOnly: boolean): string {
  const k = keepaliveSettings(network.timeoutSeconds);
  const server = `-c tcp_keepalives_idle=${k.idle} -c tcp_keepalives_interval=${k.interval} -c tcp_keepalives_count=${k.count} -c tcp_user_timeout=${k.userTimeoutMs}`;
  return readOnly ? `${READ_ONLY_OPTIONS} ${server}` : server;
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
    // libuv probes every second, 10 times, once the socket has been idle this long: a silent server is noticed after
    // the network timeout (at least 11 s; a delay under 1 s would leave the operating system's two hours in force).
    keepAliveInitialDelayMillis: Math.max(1000, (network.timeoutSeconds - NODE_KEEPALIVE_PROBE_SECONDS) * 1000),
    options: sessionOptions(opts.readOnly),
    ...(opts.replication ? { replication: 'database' } : {}),
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
    // Data the server never acknowledges is bounded too (node cannot set TCP_USER_TIMEOUT).
    const socket = (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
    if (socket) watchUnacknowledged(socket, network.timeoutSeconds);
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
}

/** Ends clients, ignoring errors (a session may already be gone); undefined ones are skipped. */
export async function endQuietly(...clients: Array<Client | undefined>): Promise<void> {
  await Promise.all(clients.map((c) => c?.end().catch(() => undefined)));
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
  // Keepalives and tcp_user_timeout for the client side (libpq reads them from the service file only).
  if (network.serviceFile) Object.assign(out, { PGSERVICEFILE: network.serviceFile, PGSERVICE: LIBPQ_SERVICE });
  out.PGOPTIONS = sessionOptions(opts.readOnly);
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
