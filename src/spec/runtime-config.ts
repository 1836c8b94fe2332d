/**
 * The runtime config: what the runner reads from the `<name>-config` ConfigMap (or, on a workstation, what
 * `migrate` builds from the spec). It is the spec with defaults merged into every database, passwords replaced
 * by the names of the environment variables that carry them, and CA certificates by file paths. It holds no
 * secret value, and the runner re-validates it with this schema so a hand-edited ConfigMap is checked too.
 */
import * as z from 'zod/mini';
import { quantityValue, SSL_MODES } from './formats';
import { imageReference } from './image';
import type { DatabaseSpec, MigrationSpec, SecretKeyRef } from './schema';
import { migrationSettingsSchema } from './schema';

/** Where things live inside the Job's container. */
export const CONTAINER_PATHS = {
  config: '/etc/db-migration/config',
  configFile: '/etc/db-migration/config/config.json',
  runnerDir: '/opt/db-migration',
  /** The name the runner runs under (stack traces); the runner's ConfigMaps hold it compressed, in parts. */
  runner: '/opt/db-migration/runner.js',
  /** What node starts: it puts the runner together from its parts, checks them and runs it. */
  runnerLoader: '/opt/db-migration/load-runner.js',
  entrypoint: '/opt/db-migration/entrypoint.sh',
  /** The init container's script that copies node into the node-runtime volume. */
  copyNodeRuntime: '/opt/db-migration/copy-node-runtime.sh',
  /** The node-runtime volume: node, its libraries and their dynamic loader, copied from image.runtime. */
  nodeRuntime: '/opt/db-migration-node',
  dumps: '/var/lib/db-migration/dumps',
  logs: '/var/log/db-migration',
  tmp: '/tmp',
  tls: '/etc/db-migration/tls',
  terminationLog: '/dev/termination-log',
} as const;

/**
 * Size limit of the node-runtime emptyDir. The official node 24 binary is ~120 MB, its libraries ~4 MB; the limit
 * leaves room for a larger future node without letting a wrong image fill the node's disk.
 */
export const NODE_RUNTIME_VOLUME_LIMIT = '256Mi';

/**
 * Node options the runner always starts with (the Job's entrypoint.sh and `db-migration migrate` alike), to keep
 * its memory well under 100 MiB (measured as the process's peak RSS, VmHWM, on pgbench scale 50 and 200 tables):
 * - a 1 MiB young generation: COPY data passes through in socket-sized buffers that die young, and with V8's
 *   default (16 MiB semi-spaces) they pile up between scavenges (107 → 92 MiB streaming 5 million rows);
 * - no optimizing tier above Maglev (`--max-opt=2`; Node 20 then runs Sparkplug code): TurboFan's compiled code
 *   and compilation zones cost ~25 MiB, for work that is not the runner's bottleneck (the servers are). Streaming
 *   pgbench scale 50: 94 → 69 MiB, 200 tables: 98 → 76 MiB, at the same wall time (the relay loop takes ~0.5 s
 *   more CPU per 5 million rows).
 */
export const RUNNER_NODE_OPTIONS = ['--max-semi-space-size=1', '--max-opt=2'] as const;

const nonEmpty = () => z.string().check(z.minLength(1));

const resolvedEndpointSchema = z.strictObject({
  host: nonEmpty(),
  port: z.number().check(z.int(), z.minimum(1), z.maximum(65535)),
  database: nonEmpty(),
  username: nonEmpty(),
  sslmode: z.enum(SSL_MODES),
  passwordEnv: z.string().check(z.regex(/^[A-Z_][A-Z0-9_]*$/)),
  caCertFile: z.optional(nonEmpty()),
});

export const runtimeConfigSchema = z.strictObject({
  apiVersion: z.literal('db-migration/v1'),
  kind: z.literal('RuntimeConfig'),
  name: nonEmpty(),
  namespace: nonEmpty(),
  image: nonEmpty(),
  // Every field of the section has a default, so a hand-edited config may leave any of them out, as the spec may.
  migration: migrationSettingsSchema,
  storage: z.strictObject({ dumpsBytes: z.number().check(z.positive()), logsBytes: z.number().check(z.positive()) }),
  paths: z.strictObject({
    dumps: nonEmpty(),
    logs: nonEmpty(),
    tmp: nonEmpty(),
    terminationLog: z.optional(nonEmpty()),
  }),
  databases: z.array(z.strictObject({
    name: nonEmpty(),
    enabled: z.boolean(),
    source: resolvedEndpointSchema,
    destination: resolvedEndpointSchema,
  })).check(z.minLength(1)),
});

export type RuntimeConfig = z.infer<typeof runtimeConfigSchema>;
export type ResolvedEndpoint = z.infer<typeof resolvedEndpointSchema>;
export type RuntimeDatabase = RuntimeConfig['databases'][number];
export type Side = 'source' | 'destination';

/** A password or CA certificate the Job must read from a Secret. */
export interface SecretUse {
  readonly database: string;
  readonly side: Side;
  readonly kind: 'password' | 'caCert';
  readonly ref: SecretKeyRef;
  /** Environment variable (passwords) or file path (CA certificates) the runner reads it from. */
  readonly target: string;
}

/** The environment variable that carries a database's password for one side. */
export function passwordEnvName(database: string, side: Side): string {
  return `DBM_${database.toUpperCase().replace(/-/g, '_')}_${side === 'source' ? 'SOURCE' : 'DEST'}_PASSWORD`;
}

/** Where a CA certificate from a Secret is mounted (one directory per Secret, one file per key). */
export function caCertPath(ref: SecretKeyRef, tlsDir: string = CONTAINER_PATHS.tls): string {
  return `${tlsDir}/${ref.secret}/${ref.key}`;
}

/** Endpoint of one side, with defaults merged in. Assumes the spec passed cross-field checks. */
export function mergedEndpoint(spec: MigrationSpec, db: DatabaseSpec, side: Side) {
  const merged = { ...spec.defaults[side], ...stripUndefined(db[side]) };
  return merged as typeof merged & { host: string; database: string; username: string; password: SecretKeyRef };
}

/** Every Secret value the Job needs, with where it goes. */
export function secretUses(spec: MigrationSpec, tlsDir: string = CONTAINER_PATHS.tls): SecretUse[] {
  const uses: SecretUse[] = [];
  for (const db of spec.databases.filter((d) => d.enabled)) {
    for (const side of ['source', 'destination'] as const) {
      const ep = mergedEndpoint(spec, db, side);
      uses.push({ database: db.name, side, kind: 'password', ref: ep.password, target: passwordEnvName(db.name, side) });
      if (ep.caCert && needsCa(ep.sslmode)) {
        uses.push({ database: db.name, side, kind: 'caCert', ref: ep.caCert, target: caCertPath(ep.caCert, tlsDir) });
      }
    }
  }
  return uses;
}

export function needsCa(sslmode: string): boolean {
  return sslmode === 'verify-ca' || sslmode === 'verify-full';
}

export interface RuntimePathOverrides {
  readonly dumps?: string;
  readonly logs?: string;
  readonly tmp?: string;
  readonly tls?: string;
  readonly terminationLog?: string;
}

/** The layout of a work directory for a run outside the Job (a workstation, the tests). */
export function workDirPaths(workDir: string): Required<RuntimePathOverrides> {
  return {
    dumps: `${workDir}/dumps`,
    logs: `${workDir}/logs`,
    tmp: `${workDir}/tmp`,
    tls: `${workDir}/tls`,
    terminationLog: `${workDir}/termination-log`,
  };
}

/** Builds the runtime config from a validated spec. Container paths unless overridden (workstation runs). */
export function toRuntimeConfig(spec: MigrationSpec, paths: RuntimePathOverrides = {}): RuntimeConfig {
  const tls = paths.tls ?? CONTAINER_PATHS.tls;
  const endpoint = (db: DatabaseSpec, side: Side) => {
    const ep = mergedEndpoint(spec, db, side);
    return {
      host: ep.host,
      port: ep.port,
      database: ep.database,
      username: ep.username,
      sslmode: ep.sslmode,
      passwordEnv: passwordEnvName(db.name, side),
      ...(ep.caCert && needsCa(ep.sslmode) ? { caCertFile: caCertPath(ep.caCert, tls) } : {}),
    };
  };
  return {
    apiVersion: 'db-migration/v1',
    kind: 'RuntimeConfig',
    name: spec.name,
    namespace: spec.namespace,
    image: imageReference(spec.image),
    migration: spec.migration,
    storage: {
      dumpsBytes: quantityValue(spec.job.storage.dumps),
      logsBytes: quantityValue(spec.job.storage.logs),
    },
    paths: {
      dumps: paths.dumps ?? CONTAINER_PATHS.dumps,
      logs: paths.logs ?? CONTAINER_PATHS.logs,
      tmp: paths.tmp ?? CONTAINER_PATHS.tmp,
      ...(paths.terminationLog !== undefined ? { terminationLog: paths.terminationLog } : { terminationLog: CONTAINER_PATHS.terminationLog }),
    },
    databases: spec.databases.map((db) => ({
      name: db.name,
      enabled: db.enabled,
      source: endpoint(db, 'source'),
      destination: endpoint(db, 'destination'),
    })),
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
