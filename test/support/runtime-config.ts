/**
 * RuntimeConfig objects for tests, built the way production builds them: a spec object parsed by
 * `migrationSpecSchema` (so every default applies) and turned into a runtime config by `toRuntimeConfig`,
 * with paths in fresh temp dirs. Passwords go into the returned `env`, keyed by the variable names the config
 * carries (`DBM_<NAME>_SOURCE_PASSWORD` ...), never into the config.
 *
 * Given two servers from `startPgServer()`:
 *
 *   const { config, env, cleanup } = makeRuntimeConfig({
 *     source, destination,
 *     databases: [{ name: 'app', source: { database: 'app' }, destination: { database: 'app', username: 'migrator', password: 'pw' } }],
 *     migration: { dump: { jobs: 4 }, restore: { clean: true } },
 *   });
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crossFieldIssues } from '../../src/spec/cross-checks';
import type { SslMode } from '../../src/spec/schema';
import { migrationSpecSchema, type MigrationSpecInput } from '../../src/spec/schema';
import { passwordEnvName, runtimeConfigSchema, toRuntimeConfig, workDirPaths, type RuntimeConfig } from '../../src/spec/runtime-config';

/** A server to point at: a `PgServer` fits, and so does a plain host/port (e.g. an unreachable one). */
export interface TestServer {
  readonly host: string;
  readonly port: number;
  /** Login used when a database does not name one. @default - 'postgres' */
  readonly superuser?: string;
  /** Password used when a database does not give one. @default - '' (then the env variable is left unset) */
  readonly superPassword?: string;
}

/** One side of a test database; everything but `database` falls back to the server's. */
export interface TestEndpoint {
  readonly database: string;
  /** @default - the server's superuser */
  readonly username?: string;
  /** Goes into `env`, not into the config. `null` leaves the variable unset. @default - the server's superPassword */
  readonly password?: string | null;
  /** @default - the server's host */
  readonly host?: string;
  /** @default - the server's port */
  readonly port?: number;
  /** @default - 'prefer', the spec default (test servers have no TLS, so this exercises the plain fallback) */
  readonly sslmode?: SslMode;
}

export interface TestDatabase {
  /** Label (lower case, digits, '_' and '-'): names the env variables. */
  readonly name: string;
  /** @default - true */
  readonly enabled?: boolean;
  readonly source: TestEndpoint;
  readonly destination: TestEndpoint;
}

export interface MakeRuntimeConfigOptions {
  readonly source: TestServer;
  readonly destination: TestServer;
  readonly databases: readonly TestDatabase[];
  /** The spec's `migration` section (input form: any subset, defaults fill the rest). */
  readonly migration?: NonNullable<MigrationSpecInput['migration']>;
  /** The spec's `job.storage` (Kubernetes quantities). @default - the spec defaults (dumps 30Gi) */
  readonly storage?: { readonly dumps?: string; readonly logs?: string; readonly tmp?: string };
  /** The spec's `image` section. @default - the spec default image */
  readonly image?: NonNullable<MigrationSpecInput['image']>;
  /** Root for dumps/logs/tmp/tls dirs. @default - a fresh directory under os.tmpdir() */
  readonly workDir?: string;
}

export interface TestRuntimeConfig {
  readonly config: RuntimeConfig;
  /** Password variables only; merge over process.env where a full environment is needed. */
  readonly env: Record<string, string>;
  /** The directory holding dumps/, logs/, tmp/ and tls/. */
  readonly workDir: string;
  /** Removes workDir (only when this helper created it). */
  cleanup(): void;
}

const SECRET = { source: 'test-source-credentials', destination: 'test-destination-credentials' } as const;

export function makeRuntimeConfig(opts: MakeRuntimeConfigOptions): TestRuntimeConfig {
  const ownDir = opts.workDir === undefined;
  const workDir = opts.workDir ?? mkdtempSync(join(tmpdir(), 'dbm-runtime-'));
  const paths = workDirPaths(workDir);
  for (const dir of [paths.dumps, paths.logs, paths.tmp, paths.tls]) mkdirSync(dir, { recursive: true });

  const endpoint = (server: TestServer, ep: TestEndpoint, side: 'source' | 'destination', index: number) => ({
    host: ep.host ?? server.host,
    port: ep.port ?? server.port,
    database: ep.database,
    username: ep.username ?? server.superuser ?? 'postgres',
    password: { secret: SECRET[side], key: `db${index}-password` },
    ...(ep.sslmode ? { sslmode: ep.sslmode } : {}),
  });
  const raw: MigrationSpecInput = {
    namespace: 'db-migration-test',
    ...(opts.image ? { image: opts.image } : {}),
    ...(opts.storage ? { job: { storage: opts.storage } } : {}),
    ...(opts.migration ? { migration: opts.migration } : {}),
    databases: opts.databases.map((db, i) => ({
      name: db.name,
      enabled: db.enabled ?? true,
      source: endpoint(opts.source, db.source, 'source', i),
      destination: endpoint(opts.destination, db.destination, 'destination', i),
    })),
  };
  const cross = crossFieldIssues(raw);
  if (cross.length > 0) throw new Error(`test spec fails cross-field checks: ${cross.map((c) => c.message).join('; ')}`);
  const spec = migrationSpecSchema.parse(raw);
  const config = runtimeConfigSchema.parse(toRuntimeConfig(spec, paths));

  const env: Record<string, string> = {};
  opts.databases.forEach((db) => {
    for (const side of ['source', 'destination'] as const) {
      const server = side === 'source' ? opts.source : opts.destination;
      const password = db[side].password === undefined ? server.superPassword : db[side].password;
      if (password !== null && password !== undefined && password !== '') env[passwordEnvName(db.name, side)] = password;
    }
  });
  return {
    config,
    env,
    workDir,
    cleanup: () => { if (ownDir) rmSync(workDir, { recursive: true, force: true }); },
  };
}
