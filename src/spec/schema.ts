/**
 * The migration spec (`migration.yaml`): the single source of truth for its types, defaults and the
 * generated JSON Schema (`migration.schema.json`). Every default here is the value operators used with the
 * hand-written manifests this tool replaces.
 *
 * zod/mini (see formats.ts): `z.optional(x)`, `z._default(x, v)` and `x.check(...)` in place of full zod's methods.
 */
import * as z from 'zod/mini';
import {
  described as d, dnsLabel, dnsSubdomain, FORBIDDEN_EXTRA_ARG, INT32_MAX, labelValue, nonNegativeInt, positiveInt, qualifiedName, quantity,
  SSL_MODES,
} from './formats';

const secretKeyShape = {
  secret: d(dnsSubdomain(), 'Name of an existing Secret in the migration namespace.'),
  key: d(z.string().check(
    z.regex(/^[-._a-zA-Z0-9]+$/, { message: 'must be a Secret key (letters, digits, "-", "_" and ".")' }),
    z.maxLength(253),
  ), 'Key inside that Secret.'),
};

/** A key of an existing Kubernetes Secret. The only way a password or certificate enters the spec. */
export const secretKeyRef = d(z.strictObject(secretKeyShape), 'Reference to a key of an existing Kubernetes Secret: { secret: NAME, key: KEY }.');

const LITERAL_PASSWORD =
  'a literal password is not allowed (passwords come only from Kubernetes Secrets: use { secret: NAME, key: KEY })';

/** A password: a Secret reference. A literal string is refused with a message that shows the right form. */
export const passwordRef = d(z.strictObject(secretKeyShape, {
  error: (issue) => (issue.code === 'invalid_type' && (typeof issue.input === 'string' || typeof issue.input === 'number')
    ? LITERAL_PASSWORD
    : undefined),
}), 'Password: a { secret, key } reference to an existing Secret, never a literal.');

const IDENTIFIER_MAX = { message: 'must be at most 63 bytes (a PostgreSQL identifier)' };

/** Connection settings of one server; every field may also come from `defaults`. */
const endpointFields = {
  host: d(z.string().check(z.minLength(1), z.maxLength(253), z.regex(/^[^\s/:@]+$|^\[[0-9a-fA-F:]+\]$/, {
    message: 'must be a host name or IP address (no scheme, port or credentials)',
  })), 'Host name or IP address of the server.'),
  port: d(positiveInt('a TCP port (1-65535)', { value: 65535, message: 'must be a TCP port (1-65535)' }), 'TCP port.'),
  database: d(z.string().check(z.minLength(1), z.maxLength(63, IDENTIFIER_MAX)), 'Database name on this server.'),
  username: d(z.string().check(z.minLength(1), z.maxLength(63, IDENTIFIER_MAX)), 'Role to log in as.'),
  password: d(passwordRef, 'Password: a { secret, key } reference, never a literal.'),
  sslmode: d(z.enum(SSL_MODES, { message: `must be one of ${SSL_MODES.join(', ')}` }), 'libpq sslmode.'),
  caCert: d(z.optional(secretKeyRef), 'CA certificate (PEM) for sslmode verify-ca / verify-full, from a Secret; mounted read-only.'),
} as const;

const endpointSchema = z.strictObject({
  host: z.optional(endpointFields.host),
  port: z.optional(endpointFields.port),
  database: endpointFields.database,
  username: z.optional(endpointFields.username),
  password: z.optional(endpointFields.password),
  sslmode: z.optional(endpointFields.sslmode),
  caCert: endpointFields.caCert,
});

const endpointDefaults = z.strictObject({
  host: z.optional(endpointFields.host),
  port: z._default(endpointFields.port, 5432),
  username: z.optional(endpointFields.username),
  password: z.optional(endpointFields.password),
  sslmode: z._default(endpointFields.sslmode, 'prefer'),
  caCert: endpointFields.caCert,
});

/** Labels the chart sets on every object; they select the Job's pods, so the spec may not override them. */
export const RESERVED_LABELS = [
  'app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component',
  'app.kubernetes.io/managed-by', 'app.kubernetes.io/version',
];

const DB_LABEL = /^[a-z0-9][a-z0-9_-]*$/;

const databaseSchema = z.strictObject({
  name: d(z.string().check(z.maxLength(48, { message: 'must be at most 48 characters' }), z.regex(DB_LABEL, {
    message: 'must start with a lower-case letter or digit and contain only lower-case letters, digits, "_" and "-"',
  })), 'Label used in logs, reports and environment variable names.'),
  enabled: d(z._default(z.boolean(), true), 'Set false to skip this database.'),
  source: d(endpointSchema, 'The server to copy from (merged over defaults.source).'),
  destination: d(endpointSchema, 'The server to copy to (merged over defaults.destination).'),
});

const extraArgs = (description: string) => d(z._default(z.array(z.string().check(z.refine((a) => !FORBIDDEN_EXTRA_ARG.test(a), {
  message: 'must not set connection options or passwords (host, port, user, database and password come from the spec)',
}))), []), description);

const resourceList = (cpu: string, memory: string) => z.prefault(z.strictObject({
  cpu: d(z._default(quantity('250m or 1'), cpu), 'CPU (a Kubernetes quantity).'),
  memory: d(z._default(quantity('256Mi or 1Gi'), memory), 'Memory (a Kubernetes quantity).'),
}), {});

const toleration = z.strictObject({
  key: d(z.optional(z.string()), 'Taint key.'),
  operator: d(z.optional(z.enum(['Exists', 'Equal'])), 'Exists or Equal.'),
  value: d(z.optional(z.string()), 'Taint value (with Equal).'),
  effect: d(z.optional(z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'])), 'Taint effect to tolerate.'),
  tolerationSeconds: d(z.optional(z.number().check(z.int())), 'For NoExecute: how long the pod stays bound.'),
});

export const IMAGE_DEFAULTS = {
  repository: 'ghcr.io/aleph-alpha/shared-images/pharia-helper',
  tag: 'latest',
} as const;

/**
 * The image node is copied from when the helper image has none: the official Node.js image of a maintained LTS
 * line (Node.js 24: security support until April 2028), Debian-based (glibc), fully qualified so that
 * `image.registry` rewrites it like any other image and no short-name resolution is involved.
 */
export const NODE_RUNTIME_DEFAULTS = {
  repository: 'docker.io/library/node',
  tag: '24-bookworm-slim',
} as const;

/** `{}` is a valid value of the section: every field has a default. */
const section = <T extends z.ZodMiniObject>(schema: T, description?: string) => {
  const withDefaults = z.prefault(schema, {} as z.input<T>);
  return description === undefined ? withDefaults : d(withDefaults, description);
};

const imageRepository = (fallback: string, description: string) => d(z._default(z.string().check(z.minLength(1),
  z.regex(/^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, {
    message: 'must be an image repository such as ghcr.io/org/image (lower case, no tag)',
  })), fallback), description);
const imageTag = (fallback: string, description: string) => d(z._default(
  z.string().check(z.regex(/^[\w][\w.-]{0,127}$/, { message: 'must be an image tag such as 1.2.3 or latest' })), fallback), description);
const imageDigest = () => d(z.optional(z.string().check(z.regex(/^sha256:[a-f0-9]{64}$/, { message: 'must be sha256:<64 hex digits>' }))),
  'Image digest; when set it pins the image instead of the tag.');

const nodeRuntimeSchema = z.strictObject({
  enabled: d(z._default(z.boolean(), true), 'Bring node along: an init container copies node, with the libraries it needs, from this image '
    + 'into the pod, and the runner uses it when the helper image has no node >= 20 (the seed\'s helper image has none). '
    + 'false: no init container; the helper image must have node >= 20 (as image/Dockerfile\'s has).'),
  repository: imageRepository(NODE_RUNTIME_DEFAULTS.repository, 'Image with node on PATH, glibc-based (the official Debian node images).'),
  tag: imageTag(NODE_RUNTIME_DEFAULTS.tag, 'Image tag: a maintained Node.js LTS line, 20 or newer.'),
  digest: imageDigest(),
});

const imageSchema = z.strictObject({
  repository: imageRepository(IMAGE_DEFAULTS.repository, 'Image repository with PostgreSQL client tools (and node >= 20, unless image.runtime brings it).'),
  tag: imageTag(IMAGE_DEFAULTS.tag, 'Image tag.'),
  digest: imageDigest(),
  registry: d(z._default(z.string().check(z.regex(/^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(\/[a-z0-9._-]+)*$/, {
    message: 'must be a registry host such as your-registry.company.com (optionally with :port or /path), or ""',
  })), ''), 'Airgapped registry: replaces the registry host of every image (the helper image and image.runtime). "" keeps it.'),
  pullPolicy: d(z._default(z.enum(['Always', 'IfNotPresent', 'Never']), 'IfNotPresent'), 'imagePullPolicy (of both images).'),
  pullSecrets: d(z._default(z.array(dnsSubdomain()), []), 'Names of existing image pull Secrets (for both images).'),
  runtime: section(nodeRuntimeSchema, 'Where node comes from when the helper image has none.'),
});

const jobSchema = z.strictObject({
  activeDeadlineSeconds: d(z.optional(positiveInt()), 'Hard limit for the whole Job, in seconds (Job spec.activeDeadlineSeconds). '
    + '@default 7200; in online mode migration.online.waitSeconds + timeouts.dump + timeouts.restore + timeouts.verify, so the Job outlives the wait for the cutover'),
  backoffLimit: d(z._default(nonNegativeInt(undefined, INT32_MAX), 2), 'Pod retries before the Job fails (Job spec.backoffLimit); a retried pod resumes safely.'),
  ttlSecondsAfterFinished: d(z._default(nonNegativeInt(undefined, INT32_MAX), 86400), 'Seconds a finished Job (and its pod logs) is kept (Job spec.ttlSecondsAfterFinished).'),
  resources: section(z.strictObject({
    requests: resourceList('250m', '256Mi'),
    limits: resourceList('1000m', '1Gi'),
  }), 'Container resources.'),
  storage: section(z.strictObject({
    dumps: d(z._default(quantity('30Gi'), '30Gi'), 'emptyDir size limit for dumps.'),
    logs: d(z._default(quantity('1Gi'), '1Gi'), 'emptyDir size limit for logs.'),
    tmp: d(z._default(quantity('256Mi'), '256Mi'), 'emptyDir size limit for /tmp.'),
  }), 'emptyDir size limits.'),
  nodeSelector: d(z._default(z.record(qualifiedName(), labelValue()), {}), 'Pod nodeSelector.'),
  tolerations: d(z._default(z.array(toleration), []), 'Pod tolerations.'),
  priorityClassName: d(z.optional(z.string()), 'Pod priorityClassName.'),
  securityContext: section(z.strictObject({
    runAsUser: d(z._default(positiveInt('a non-root UID (1 or more)'), 1000), 'Pod runAsUser (never 0).'),
    runAsGroup: d(z._default(positiveInt('a GID (1 or more)'), 1000), 'Pod runAsGroup.'),
    fsGroup: d(z._default(positiveInt('a GID (1 or more)'), 1000), 'Pod fsGroup: owner group of the volumes.'),
  }), 'Pod identity; always non-root.'),
  networkPolicy: section(z.strictObject({
    enabled: d(z._default(z.boolean(), false), 'When on: no ingress; egress only to the database ports and DNS.'),
  })),
  annotations: d(z._default(z.record(qualifiedName(), z.string()), {}), 'Extra annotations on the pod template.'),
  parallelism: d(z.optional(positiveInt(undefined, { value: 100 })),
    'Scale out: an Indexed Job whose pods each migrate one database, this many at once. @default - one pod migrates every database'),
  backoffLimitPerIndex: d(z.optional(nonNegativeInt(undefined, INT32_MAX)),
    'With parallelism: retries per database (index) instead of for the whole Job; Kubernetes 1.28 needs the JobBackoffLimitPerIndex feature gate. '
    + 'backoffLimit is then raised to at least (enabled databases) × (backoffLimitPerIndex + 1), so it never ends the Job before a database has used its own retries.'),
});

/** A table without a primary key or usable replica identity, by "schema.table", and what online mode does with it. */
const keylessTableAction = z.enum(['exclude', 'replicaIdentityFull']);

/** Online mode's settings (`migration.online`). */
export const onlineSchema = z.strictObject({
  cutover: d(z._default(z.enum(['manual', 'auto']), 'manual'),
    'manual: once replication has caught up, wait for the operator\'s cutover command; auto: cut over as soon as every database is ready.'),
  fence: d(z._default(z.enum(['readOnly', 'none']), 'readOnly'),
    'readOnly: at cutover the source database is set to read-only for new transactions and its other sessions are ended; '
    + 'none: the operator has stopped the writers, and the runner checks that the source stopped changing.'),
  readyLagBytes: d(z._default(positiveInt(), 16 * 1024 * 1024),
    'Replication lag (bytes of WAL not yet applied on the destination) below which a database is ready to cut over.'),
  cutoverTimeoutSeconds: d(z._default(positiveInt(), 60),
    'Seconds the fenced source may wait for the destination to apply its last changes before the cutover fails and the fence is lifted.'),
  waitSeconds: d(z._default(positiveInt(), 7 * 24 * 3600),
    'Seconds to keep replicating while waiting for the cutover command (manual); then the run fails and removes its replication objects.'),
  slotWaitSeconds: d(z._default(positiveInt(), 3600),
    'Seconds the replication slot\'s creation may wait for transactions that hold a transaction id on the source server (any database, '
    + 'prepared transactions too) to end; the log names them and how to end them meanwhile. Then that database fails and what it created is removed.'),
  applyStallSeconds: d(z._default(positiveInt(), 3600),
    'Seconds the subscription\'s apply worker may fail or not run while the lag does not go down (a conflicting row or missing column on the '
    + 'destination, a privilege); the log names the cause to look for meanwhile. Then that database fails and its replication objects are removed.'),
  tablesWithoutKey: d(z._default(z.record(z.string().check(z.regex(/^[^.]+\.[^.]+$/, 'must be "schema.table"')), keylessTableAction), {}),
    'Tables without a primary key or replica identity, by "schema.table": exclude (not replicated; copied inside the write pause at cutover) '
    + 'or replicaIdentityFull (the operator has run ALTER TABLE ... REPLICA IDENTITY FULL on the source; pre-flight checks it). '
    + 'Any other such table makes pre-flight refuse online mode: publishing it would make UPDATE and DELETE fail on the source.'),
});

/** How the runner migrates: the `migration` section, which the runner re-validates in its runtime config. */
export const migrationSettingsSchema = z.strictObject({
  dryRun: d(z._default(z.boolean(), false), 'Pre-flight and plan only; no data moves.'),
  verbose: d(z._default(z.boolean(), false), 'Log commands and the tools\' own output.'),
  logFormat: d(z._default(z.enum(['text', 'json']), 'text'), 'text for people, json (one object a line) for log collectors.'),
  timeouts: section(z.strictObject({
    connect: d(z._default(positiveInt(), 10), 'Seconds to wait for a connection.'),
    dump: d(z._default(positiveInt(), 3600), 'Seconds per database for the dump.'),
    restore: d(z._default(positiveInt(), 3600), 'Seconds per database for the restore.'),
    verify: d(z._default(positiveInt(), 1800), 'Seconds per database for verification.'),
    network: d(z._default(positiveInt(undefined, { value: 3600 }), 60), 'Seconds a silent network (a partition, packets dropped without a reset) may keep a connection '
      + 'waiting before the phase fails as a network failure and is retried: TCP keepalives and a user timeout on every connection.'),
  })),
  retries: section(z.strictObject({
    attempts: d(z._default(positiveInt(), 3), 'Attempts for a phase that fails transiently.'),
    delaySeconds: d(z._default(nonNegativeInt(), 10), 'First delay; doubles each retry.'),
  })),
  dump: section(z.strictObject({
    jobs: d(z._default(positiveInt(undefined, { value: 64 }), 2), 'pg_dump parallel workers.'),
    compression: d(z._default(nonNegativeInt('a compression level from 0 to 9', { value: 9, message: 'must be a compression level from 0 to 9' }), 0),
      'pg_dump -Z level: 0 is fastest; higher needs less dump volume and more CPU.'),
    lockWaitTimeoutSeconds: d(z._default(positiveInt(), 60), 'pg_dump --lock-wait-timeout.'),
    schemas: d(z._default(z.array(z.string().check(z.minLength(1))), []), 'Only these schemas (empty: all).'),
    excludeSchemas: d(z._default(z.array(z.string().check(z.minLength(1))), []), 'Schemas to leave out.'),
    extraArgs: extraArgs('More pg_dump arguments.'),
  })),
  restore: section(z.strictObject({
    jobs: d(z._default(positiveInt(undefined, { value: 64 }), 2), 'pg_restore parallel workers.'),
    noOwner: d(z._default(z.boolean(), true), '--no-owner: objects belong to the destination user.'),
    noAcl: d(z._default(z.boolean(), false), '--no-acl: skip GRANT/REVOKE.'),
    clean: d(z._default(z.boolean(), false), '--clean --if-exists: allow a non-empty destination and replace its objects.'),
    extraArgs: extraArgs('More pg_restore arguments.'),
  })),
  verify: d(z._default(z.enum(['counts', 'checksums', 'none']), 'counts'),
    'counts: row counts, sequences and an object inventory; checksums: also a content checksum of every table; none.'),
  mode: d(z._default(z.enum(['dump', 'stream', 'online']), 'dump'),
    'dump: pg_dump to the dumps volume, then pg_restore; stream: table data streamed source to destination with COPY, nothing on disk; '
    + 'online: stream mode in a replication slot\'s snapshot, then logical replication while the source keeps writing, until a verified cutover.'),
  online: section(onlineSchema, 'Online mode (mode: online): replication, readiness and the cutover.'),
  cleanup: d(z._default(z.boolean(), false),
    'Instead of migrating, remove every replication object (online mode\'s publication, slot and subscription) earlier attempts left, list them, and exit.'),
  copy: section(z.strictObject({
    jobs: d(z._default(positiveInt(undefined, { value: 64 }), 2), 'Parallel COPY workers in stream mode.'),
    splitTablesLargerThan: d(z.optional(quantity('1Gi')),
      'Stream and online mode: a table larger than this (on disk) is copied in parts by several workers at once, split by its integer '
      + 'primary key or else by block ranges (ctid; a PostgreSQL 14+ source), all in the one snapshot. @default - tables are not split'),
  })),
  parallelDatabases: d(z._default(positiveInt(undefined, { value: 16 }), 1), 'Databases migrated at once within one pod.'),
  roles: d(z._default(z.enum(['none', 'referenced', 'all']), 'none'),
    'Roles created on the destination: none; referenced (owners and grantees of the migrated databases); all.'),
});

export const migrationSpecSchema = z.strictObject({
  $schema: d(z.optional(z.string()), 'Path or URL of the JSON Schema, for editors.'),
  name: d(z._default(dnsLabel(40), 'db-migration'), 'Prefix of every resource name (DNS-1123 label).'),
  namespace: d(dnsLabel(63), 'Namespace the Job runs in; the Secrets must exist there.'),
  labels: d(z._default(z.record(qualifiedName().check(z.refine((k) => !RESERVED_LABELS.includes(k), {
    message: `is set by db-migration itself and selects the Job's pods (reserved: ${RESERVED_LABELS.join(', ')})`,
  })), labelValue()), {}), 'Extra labels on every object.'),
  image: section(imageSchema, 'The helper image the Job runs.'),
  job: section(jobSchema, 'How the Kubernetes Job runs.'),
  migration: section(migrationSettingsSchema, 'How the runner migrates.'),
  defaults: section(z.strictObject({
    source: z.prefault(endpointDefaults, {}),
    destination: z.prefault(endpointDefaults, {}),
  }), 'Merged under every database\'s source and destination.'),
  databases: d(z.array(databaseSchema).check(z.minLength(1, { message: 'must list at least one database' })), 'The databases to migrate, in order.'),
});

/** The Job's activeDeadlineSeconds: the spec's, else 2 hours, else (online mode) long enough to wait for the cutover. */
export function jobDeadlineSeconds(spec: { job: { activeDeadlineSeconds?: number }; migration: z.output<typeof migrationSettingsSchema> }): number {
  if (spec.job.activeDeadlineSeconds !== undefined) return spec.job.activeDeadlineSeconds;
  const m = spec.migration;
  return m.mode === 'online' ? m.online.waitSeconds + m.timeouts.dump + m.timeouts.restore + m.timeouts.verify : 7200;
}

export type MigrationSpecInput = z.input<typeof migrationSpecSchema>;
export type MigrationSpec = z.output<typeof migrationSpecSchema>;
export type SecretKeyRef = z.infer<typeof secretKeyRef>;
export type DatabaseSpec = MigrationSpec['databases'][number];
export type SslMode = (typeof SSL_MODES)[number];
