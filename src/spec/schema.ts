/**
 * The migration spec (`migration.yaml`): the single source of truth for its types, defaults and the
 * generated JSON Schema (`migration.schema.json`). Every default here is the value operators used with the
 * hand-written manifests this tool replaces.
 */
import { z } from 'zod';
import {
  dnsLabel, dnsSubdomain, FORBIDDEN_EXTRA_ARG, int32, labelValue, nonNegativeInt, positiveInt, qualifiedName, quantity, SSL_MODES,
} from './formats';

/** A key of an existing Kubernetes Secret. The only way a password or certificate enters the spec. */
export const secretKeyRef = z.strictObject({
  secret: dnsSubdomain().describe('Name of an existing Secret in the migration namespace.'),
  key: z
    .string()
    .regex(/^[-._a-zA-Z0-9]+$/, { message: 'must be a Secret key (letters, digits, "-", "_" and ".")' })
    .max(253)
    .describe('Key inside that Secret.'),
}).describe('Reference to a key of an existing Kubernetes Secret: { secret: NAME, key: KEY }.');

const LITERAL_PASSWORD =
  'a literal password is not allowed (passwords come only from Kubernetes Secrets: use { secret: NAME, key: KEY })';

/** A password: a Secret reference. A literal string is refused with a message that shows the right form. */
export const passwordRef = z.strictObject(secretKeyRef.shape, {
  error: (issue) => (issue.code === 'invalid_type' && (typeof issue.input === 'string' || typeof issue.input === 'number')
    ? LITERAL_PASSWORD
    : undefined),
}).describe('Password: a { secret, key } reference to an existing Secret, never a literal.');

/** Connection settings of one server; every field may also come from `defaults`. */
const endpointFields = {
  host: z.string().min(1).max(253).regex(/^[^\s/:@]+$|^\[[0-9a-fA-F:]+\]$/, {
    message: 'must be a host name or IP address (no scheme, port or credentials)',
  }).describe('Host name or IP address of the server.'),
  port: positiveInt('a TCP port (1-65535)').max(65535, { message: 'must be a TCP port (1-65535)' }).describe('TCP port.'),
  database: z.string().min(1).max(63, { message: 'must be at most 63 bytes (a PostgreSQL identifier)' }).describe('Database name on this server.'),
  username: z.string().min(1).max(63, { message: 'must be at most 63 bytes (a PostgreSQL identifier)' }).describe('Role to log in as.'),
  password: passwordRef.describe('Password: a { secret, key } reference, never a literal.'),
  sslmode: z.enum(SSL_MODES, { message: `must be one of ${SSL_MODES.join(', ')}` }).describe('libpq sslmode.'),
  caCert: secretKeyRef.optional().describe('CA certificate (PEM) for sslmode verify-ca / verify-full, from a Secret; mounted read-only.'),
} as const;

const endpointSchema = z.strictObject({
  host: endpointFields.host.optional(),
  port: endpointFields.port.optional(),
  database: endpointFields.database,
  username: endpointFields.username.optional(),
  password: endpointFields.password.optional(),
  sslmode: endpointFields.sslmode.optional(),
  caCert: endpointFields.caCert,
});

const endpointDefaults = z.strictObject({
  host: endpointFields.host.optional(),
  port: endpointFields.port.default(5432),
  username: endpointFields.username.optional(),
  password: endpointFields.password.optional(),
  sslmode: endpointFields.sslmode.default('prefer'),
  caCert: endpointFields.caCert,
});

/** Labels the chart sets on every object; they select the Job's pods, so the spec may not override them. */
export const RESERVED_LABELS = [
  'app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/component',
  'app.kubernetes.io/managed-by', 'app.kubernetes.io/version',
];

const DB_LABEL = /^[a-z0-9][a-z0-9_-]*$/;

const databaseSchema = z.strictObject({
  name: z.string().max(48, { message: 'must be at most 48 characters' }).regex(DB_LABEL, {
    message: 'must start with a lower-case letter or digit and contain only lower-case letters, digits, "_" and "-"',
  }).describe('Label used in logs, reports and environment variable names.'),
  enabled: z.boolean().default(true).describe('Set false to skip this database.'),
  source: endpointSchema.describe('The server to copy from (merged over defaults.source).'),
  destination: endpointSchema.describe('The server to copy to (merged over defaults.destination).'),
});

const extraArgs = z.array(z.string().refine((a) => !FORBIDDEN_EXTRA_ARG.test(a), {
  message: 'must not set connection options or passwords (host, port, user, database and password come from the spec)',
})).default([]);

const resourceList = (cpu: string, memory: string) => z.strictObject({
  cpu: quantity('250m or 1').default(cpu).describe('CPU (a Kubernetes quantity).'),
  memory: quantity('256Mi or 1Gi').default(memory).describe('Memory (a Kubernetes quantity).'),
});

const toleration = z.strictObject({
  key: z.string().optional().describe('Taint key.'),
  operator: z.enum(['Exists', 'Equal']).optional().describe('Exists or Equal.'),
  value: z.string().optional().describe('Taint value (with Equal).'),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional().describe('Taint effect to tolerate.'),
  tolerationSeconds: z.number().int().optional().describe('For NoExecute: how long the pod stays bound.'),
});

export const IMAGE_DEFAULTS = {
  repository: 'ghcr.io/aleph-alpha/shared-images/pharia-helper',
  tag: 'latest',
} as const;

export const migrationSpecSchema = z.strictObject({
  $schema: z.string().optional().describe('Path or URL of the JSON Schema, for editors.'),
  name: dnsLabel(40).default('db-migration').describe('Prefix of every resource name (DNS-1123 label).'),
  namespace: dnsLabel(63).describe('Namespace the Job runs in; the Secrets must exist there.'),
  labels: z.record(qualifiedName().refine((k) => !RESERVED_LABELS.includes(k), {
    message: `is set by db-migration itself and selects the Job's pods (reserved: ${RESERVED_LABELS.join(', ')})`,
  }), labelValue()).default({}).describe('Extra labels on every object.'),
  image: z.strictObject({
    repository: z.string().min(1).regex(/^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(\/[a-z0-9]+([._-][a-z0-9]+)*)*$/, {
      message: 'must be an image repository such as ghcr.io/org/image (lower case, no tag)',
    }).default(IMAGE_DEFAULTS.repository).describe('Image repository with node >= 20 and PostgreSQL client tools.'),
    tag: z.string().regex(/^[\w][\w.-]{0,127}$/, { message: 'must be an image tag such as 1.2.3 or latest' })
      .default(IMAGE_DEFAULTS.tag).describe('Image tag.'),
    digest: z.string().regex(/^sha256:[a-f0-9]{64}$/, { message: 'must be sha256:<64 hex digits>' }).optional()
      .describe('Image digest; when set it pins the image instead of the tag.'),
    registry: z.string().regex(/^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(\/[a-z0-9._-]+)*$/, {
      message: 'must be a registry host such as your-registry.company.com (optionally with :port or /path), or ""',
    }).default('').describe('Airgapped registry: replaces the registry host of every image. "" keeps it.'),
    pullPolicy: z.enum(['Always', 'IfNotPresent', 'Never']).default('IfNotPresent').describe('imagePullPolicy.'),
    pullSecrets: z.array(dnsSubdomain()).default([]).describe('Names of existing image pull Secrets.'),
  }).prefault({}).describe('The helper image the Job runs.'),
  job: z.strictObject({
    activeDeadlineSeconds: positiveInt().default(7200).describe('Hard limit for the whole Job, in seconds (Job spec.activeDeadlineSeconds).'),
    backoffLimit: int32(nonNegativeInt()).default(2).describe('Pod retries before the Job fails (Job spec.backoffLimit); a retried pod resumes safely.'),
    ttlSecondsAfterFinished: int32(nonNegativeInt()).default(86400).describe('Seconds a finished Job (and its pod logs) is kept (Job spec.ttlSecondsAfterFinished).'),
    resources: z.strictObject({
      requests: resourceList('250m', '256Mi').prefault({}),
      limits: resourceList('1000m', '1Gi').prefault({}),
    }).prefault({}).describe('Container resources.'),
    storage: z.strictObject({
      dumps: quantity('30Gi').default('30Gi').describe('emptyDir size limit for dumps.'),
      logs: quantity('1Gi').default('1Gi').describe('emptyDir size limit for logs.'),
      tmp: quantity('256Mi').default('256Mi').describe('emptyDir size limit for /tmp.'),
    }).prefault({}).describe('emptyDir size limits.'),
    nodeSelector: z.record(qualifiedName(), labelValue()).default({}).describe('Pod nodeSelector.'),
    tolerations: z.array(toleration).default([]).describe('Pod tolerations.'),
    priorityClassName: z.string().optional().describe('Pod priorityClassName.'),
    securityContext: z.strictObject({
      runAsUser: positiveInt('a non-root UID (1 or more)').default(1000).describe('Pod runAsUser (never 0).'),
      runAsGroup: positiveInt('a GID (1 or more)').default(1000).describe('Pod runAsGroup.'),
      fsGroup: positiveInt('a GID (1 or more)').default(1000).describe('Pod fsGroup: owner group of the volumes.'),
    }).prefault({}).describe('Pod identity; always non-root.'),
    networkPolicy: z.strictObject({
      enabled: z.boolean().default(false).describe('When on: no ingress; egress only to the database ports and DNS.'),
    }).prefault({}),
    annotations: z.record(qualifiedName(), z.string()).default({}).describe('Extra annotations on the pod template.'),
    parallelism: positiveInt().max(100).optional()
      .describe('Scale out: an Indexed Job whose pods each migrate one database, this many at once. @default - one pod migrates every database'),
    backoffLimitPerIndex: int32(nonNegativeInt()).optional()
      .describe('With parallelism: retries per database (index) instead of for the whole Job; Kubernetes 1.28 needs the JobBackoffLimitPerIndex feature gate. '
        + 'backoffLimit is then raised to at least (enabled databases) × (backoffLimitPerIndex + 1), so it never ends the Job before a database has used its own retries.'),
  }).prefault({}).describe('How the Kubernetes Job runs.'),
  migration: z.strictObject({
    dryRun: z.boolean().default(false).describe('Pre-flight and plan only; no data moves.'),
    verbose: z.boolean().default(false).describe('Log commands and the tools\' own output.'),
    logFormat: z.enum(['text', 'json']).default('text').describe('text for people, json (one object a line) for log collectors.'),
    timeouts: z.strictObject({
      connect: positiveInt().default(10).describe('Seconds to wait for a connection.'),
      dump: positiveInt().default(3600).describe('Seconds per database for the dump.'),
      restore: positiveInt().default(3600).describe('Seconds per database for the restore.'),
      verify: positiveInt().default(1800).describe('Seconds per database for verification.'),
    }).prefault({}),
    retries: z.strictObject({
      attempts: positiveInt().default(3).describe('Attempts for a phase that fails transiently.'),
      delaySeconds: nonNegativeInt().default(10).describe('First delay; doubles each retry.'),
    }).prefault({}),
    dump: z.strictObject({
      jobs: positiveInt().max(64).default(2).describe('pg_dump parallel workers.'),
      compression: nonNegativeInt('a compression level from 0 to 9').max(9, { message: 'must be a compression level from 0 to 9' }).default(0)
        .describe('pg_dump -Z level: 0 is fastest; higher needs less dump volume and more CPU.'),
      lockWaitTimeoutSeconds: positiveInt().default(60).describe('pg_dump --lock-wait-timeout.'),
      schemas: z.array(z.string().min(1)).default([]).describe('Only these schemas (empty: all).'),
      excludeSchemas: z.array(z.string().min(1)).default([]).describe('Schemas to leave out.'),
      extraArgs: extraArgs.describe('More pg_dump arguments.'),
    }).prefault({}),
    restore: z.strictObject({
      jobs: positiveInt().max(64).default(2).describe('pg_restore parallel workers.'),
      noOwner: z.boolean().default(true).describe('--no-owner: objects belong to the destination user.'),
      noAcl: z.boolean().default(false).describe('--no-acl: skip GRANT/REVOKE.'),
      clean: z.boolean().default(false).describe('--clean --if-exists: allow a non-empty destination and replace its objects.'),
      extraArgs: extraArgs.describe('More pg_restore arguments.'),
    }).prefault({}),
    verify: z.enum(['counts', 'checksums', 'none']).default('counts')
      .describe('counts: row counts, sequences and an object inventory; checksums: also a content checksum of every table; none.'),
    mode: z.enum(['dump', 'stream']).default('dump')
      .describe('dump: pg_dump to the dumps volume, then pg_restore; stream: table data streamed source to destination with COPY, nothing on disk.'),
    copy: z.strictObject({
      jobs: positiveInt().max(64).default(2).describe('Parallel COPY workers in stream mode.'),
    }).prefault({}),
    parallelDatabases: positiveInt().max(16).default(1).describe('Databases migrated at once within one pod.'),
    roles: z.enum(['none', 'referenced', 'all']).default('none')
      .describe('Roles created on the destination: none; referenced (owners and grantees of the migrated databases); all.'),
  }).prefault({}).describe('How the runner migrates.'),
  defaults: z.strictObject({
    source: endpointDefaults.prefault({}),
    destination: endpointDefaults.prefault({}),
  }).prefault({}).describe('Merged under every database\'s source and destination.'),
  databases: z.array(databaseSchema).min(1, { message: 'must list at least one database' }).describe('The databases to migrate, in order.'),
});

export type MigrationSpecInput = z.input<typeof migrationSpecSchema>;
export type MigrationSpec = z.output<typeof migrationSpecSchema>;
export type SecretKeyRef = z.infer<typeof secretKeyRef>;
export type DatabaseSpec = MigrationSpec['databases'][number];
export type SslMode = (typeof SSL_MODES)[number];
