/**
 * Throwaway PostgreSQL servers for tests: initdb into a temp dir, loopback only, a free port, password
 * (scram-sha-256) auth for everyone, a superuser `postgres`. Runs the server as the `postgres` OS user when
 * the tests run as root (initdb refuses root). The server binaries (initdb, pg_ctl) are the machine's PostgreSQL 15
 * unless `binDir` names another major's (pg-versions.ts serverBinDir); psql and pg_dump here are always PG_BIN's.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';

const run = promisify(execFile);

export const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
export const SUPERUSER = 'postgres';

export interface PgServer {
  readonly host: string;
  readonly port: number;
  readonly superuser: string;
  readonly superPassword: string;
  readonly dataDir: string;
  /** server_version_num, read after the first start (e.g. 180004 for 18.4). */
  readonly version: number;
  /** Runs SQL as the superuser (simple query protocol: several statements run as one implicit transaction, so CREATE DATABASE must be sent alone); returns the last result's rows. */
  query<T = Record<string, unknown>>(sql: string, database?: string): Promise<T[]>;
  /** Runs a SQL file with psql as the superuser, ON_ERROR_STOP. */
  psqlFile(file: string, database?: string, env?: Record<string, string>): Promise<void>;
  /** Creates a login role with a password (and optional attributes such as CREATEDB). */
  createRole(name: string, password: string, attributes?: string): Promise<void>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its data directory. */
  destroy(): Promise<void>;
}

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export interface PgServerOptions {
  /** Part of the temp dir's name, for finding a server's files. */
  readonly name?: string;
  /** Extra postgresql.conf settings (values as written in the file). */
  readonly settings?: Record<string, string>;
  /** Loopback address to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** TCP port. @default - a free port */
  readonly port?: number;
  /** Serve TLS with a self-signed certificate (written to `<dataDir>/server.crt`); 'required' refuses plain connections. @default false */
  readonly ssl?: boolean | 'required';
  /** Directory of the server binaries initdb and pg_ctl (pg_ctl runs the postgres beside it). @default PG_BIN */
  readonly binDir?: string;
  /** The client addresses pg_hba.conf admits (CIDR). @default '127.0.0.0/8' */
  readonly clientAddress?: string;
  /** Wraps each pg_ctl command line, e.g. to run the server in a network namespace (netns.ts). @default - run as is */
  readonly wrapServerCommand?: (cmd: string, args: string[]) => [string, string[]];
  /**
   * Also listen on these addresses and admit logins (password auth) from these networks, e.g. a pod network's
   * gateway 198.18.200.1 and 198.18.200.0/24 (k8s-cluster.ts); the tests still connect on `host`. @default - none
   */
  readonly alsoListen?: { readonly addresses: readonly string[]; readonly clients: readonly string[] };
}

/**
 * initdb flags that depend on the server's major version, all in one place. 12..18 share every other flag
 * (-U, --pwfile, --auth=scram-sha-256, which also sets password_encryption on 12 and 13, -E UTF8, -N,
 * --locale=C.UTF-8: the locale comes from the machine's glibc, which the npm builds link too).
 *   - 18 turned data page checksums on by default: off, like 12..17, so every major gets the same cluster.
 */
function initdbFlagsFor(major: number): string[] {
  return major >= 18 ? ['--no-data-checksums'] : [];
}

/** The major version of the initdb in `binDir` ("initdb (PostgreSQL) 12.22" → 12). */
async function initdbMajor(binDir: string): Promise<number> {
  const { stdout } = await run(join(binDir, 'initdb'), ['--version']);
  const major = /\(PostgreSQL\) (\d+)/.exec(stdout)?.[1];
  if (!major) throw new Error(`${binDir}/initdb --version printed ${stdout}`);
  return Number(major);
}

export async function startPgServer(opts: PgServerOptions = {}): Promise<PgServer> {
  const root = mkdtempSync(join(tmpdir(), `dbm-${opts.name ?? 'pg'}-`));
  const dataDir = join(root, 'data');
  const superPassword = `super-${Math.random().toString(36).slice(2)}-pw`;
  const pwFile = join(root, 'pw');
  writeFileSync(pwFile, `${superPassword}\n`, { mode: 0o600 });
  if (asRoot) {
    chmodSync(root, 0o755);
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(root, uid, gid);
    chownSync(pwFile, uid, gid);
  }
  const binDir = opts.binDir ?? PG_BIN;
  const [initCmd, initArgs] = asPostgres(join(binDir, 'initdb'), [
    '-D', dataDir, '-U', SUPERUSER, '--pwfile', pwFile, '--auth=scram-sha-256', '-E', 'UTF8', '--locale=C.UTF-8', '-N',
    ...initdbFlagsFor(await initdbMajor(binDir)),
  ]);
  await run(initCmd, initArgs);
  rmSync(pwFile);
  const host = opts.host ?? '127.0.0.1';
  let port = opts.port ?? await freePort();
  if (opts.ssl) {
    const [cmd, args] = asPostgres('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${host}`,
      '-keyout', join(dataDir, 'server.key'), '-out', join(dataDir, 'server.crt')]);
    await run(cmd, args);
  }
  const settings: Record<string, string> = {
    listen_addresses: `'${[host, ...(opts.alsoListen?.addresses ?? [])].join(',')}'`,
    ...(opts.ssl ? { ssl: 'on' } : {}),
    port: String(port),
    unix_socket_directories: "''",
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    max_connections: '60',
    ...opts.settings,
  };
  appendFileSync(join(dataDir, 'postgresql.conf'), Object.entries(settings).map(([k, v]) => `${k} = ${v}\n`).join(''));
  const hbaType = opts.ssl === 'required' ? 'hostssl' : 'host';
  writeFileSync(join(dataDir, 'pg_hba.conf'), [opts.clientAddress ?? '127.0.0.0/8', ...(opts.alsoListen?.clients ?? [])]
    .map((cidr) => `${hbaType} all all ${cidr} scram-sha-256\n`).join(''));

  const logFile = join(root, 'server.log');
  const pgCtl = (...args: string[]) => {
    const [cmd, a] = asPostgres(join(binDir, 'pg_ctl'), ['-D', dataDir, ...args]);
    return run(...(opts.wrapServerCommand ? opts.wrapServerCommand(cmd, a) : [cmd, a] as [string, string[]]));
  };
  const start = async () => { await pgCtl('-l', logFile, '-w', '-t', '60', 'start'); };
  // A port found free may be taken by another process before the server binds it: then try another (auto ports only).
  for (let attempt = 1; ; attempt++) {
    try {
      await start();
      break;
    } catch (err) {
      const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
      if (opts.port !== undefined || attempt >= 3 || !/could not bind|Address already in use/i.test(log)) throw err;
      port = await freePort();
      appendFileSync(join(dataDir, 'postgresql.conf'), `port = ${port}\n`);
    }
  }

  const query = async <T>(sql: string, database = 'postgres') => {
    const client = new Client({ host, port, user: SUPERUSER, password: superPassword, database, ssl: opts.ssl ? { rejectUnauthorized: false } : false });
    await client.connect();
    try {
      const res = await client.query(sql);
      const last = Array.isArray(res) ? res[res.length - 1] : res;
      return (last?.rows ?? []) as T[];
    } finally {
      await client.end();
    }
  };
  const [{ v }] = await query<{ v: string }>("SELECT current_setting('server_version_num') AS v");

  const server: PgServer = {
    host,
    port,
    superuser: SUPERUSER,
    superPassword,
    dataDir,
    version: Number(v),
    query,
    async psqlFile(file, database = 'postgres', env = {}) {
      await run(join(PG_BIN, 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', host, '-p', String(port), '-U', SUPERUSER, '-d', database, '-f', file], {
        env: { ...process.env, PGPASSWORD: superPassword, PGOPTIONS: '-c client_min_messages=WARNING', PGSSLMODE: opts.ssl ? 'require' : 'disable', ...env },
        maxBuffer: 64 * 1024 * 1024,
      });
    },
    async createRole(name, password, attributes = '') {
      await server.query(`CREATE ROLE "${name}" LOGIN PASSWORD '${password.replace(/'/g, "''")}' ${attributes}`);
    },
    async stop(mode = 'fast') { await pgCtl('-m', mode, '-w', 'stop'); },
    start,
    async destroy() {
      await pgCtl('-m', 'immediate', '-w', 'stop').catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
  return server;
}

/** `pg_dump -Fc` of `database` on `from` piped into `pg_restore` of `target` on `to`, both as the superuser. */
export async function dumpRestore(from: PgServer, database: string, to: PgServer, target: string, restoreArgs: string[] = []): Promise<void> {
  const dump = spawn(join(PG_BIN, 'pg_dump'), ['-Fc', '-h', from.host, '-p', String(from.port), '-U', from.superuser, '-d', database], {
    env: { ...process.env, PGPASSWORD: from.superPassword },
  });
  const restore = spawn(join(PG_BIN, 'pg_restore'), ['--exit-on-error', '-h', to.host, '-p', String(to.port), '-U', to.superuser, '-d', target, ...restoreArgs], {
    env: { ...process.env, PGPASSWORD: to.superPassword },
  });
  dump.stdout.pipe(restore.stdin);
  let errors = '';
  dump.stderr.on('data', (d) => { errors += d; });
  restore.stderr.on('data', (d) => { errors += d; });
  const exit = (p: ReturnType<typeof spawn>) => new Promise<number>((resolve) => p.on('close', (code) => resolve(code ?? -1)));
  const [a, b] = await Promise.all([exit(dump), exit(restore)]);
  if (a !== 0 || b !== 0) throw new Error(`pg_dump | pg_restore failed (${a}/${b}): ${errors}`);
}

