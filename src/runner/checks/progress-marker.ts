/**
 * The progress marker: what a runner records ON THE DESTINATION about each database it fills, so a Job pod
 * killed at any point (deadline, eviction, node loss) can be followed by a new pod with empty volumes that
 * converges without manual steps.
 *
 * Where it lives: the COMMENT of the destination database (`COMMENT ON DATABASE "x" IS 'db-migration ...'`),
 * stored in the shared catalog pg_shdescription. That is a property of the database, not an object inside
 * it: nothing is added to its schemas, pg_dump without --create (what the runner and most backups run)
 * never copies it, and everyone may read it (`\l+` shows it, which tells a DBA what a half-filled database
 * is). Setting it needs ownership of the database, which the runner has whenever it created the database.
 *
 * Why not a custom setting (`ALTER DATABASE "x" SET db_migration.state = ...`): PostgreSQL 15 and later
 * refuse a placeholder setting from any non-superuser ("permission denied to set parameter"), which is the
 * migration user on every managed service, and a setting is also applied to every session of the database.
 *
 * States: `restoring` is written before pg_restore starts (so a half-restore is always recognizable), and
 * `verified` once verification passed. With the marker the runner knows, on a new attempt, whether a database
 * is complete (skip it), half-done by itself (reset it: drop and re-create it if it created it, else restore
 * with --clean --if-exists), or somebody else's (never touched unless restore.clean).
 */
import type { Client } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect, describeEndpoint } from '../postgres/connection';
import { quoteIdent, quoteLiteral } from '../postgres/sql';

export const MARKER_PREFIX = 'db-migration';

/**
 * restoring: the copy started (a re-run resets it); replicating: online mode's copy is complete and the
 * subscription runs (a re-run continues replication when its objects still exist); verified: done.
 */
export type MarkerState = 'restoring' | 'replicating' | 'verified';

/** Which source a copy came from: the cluster (system identifier), the database (oid) and its name. */
export interface SourceIdentity {
  /** pg_control_system().system_identifier; null when the function cannot be run. */
  readonly system: string | null;
  readonly oid: number;
  readonly database: string;
  /** user@host:port/database, for messages (and for the comparison when the system identifier is unknown). */
  readonly endpoint: string;
}

/** When the dump began: a lower bound of its snapshot (pg_dump takes its snapshot right after). */
export interface DumpPoint {
  readonly startedAt: string;
  /** WAL position at that moment (replay position on a standby); null when unknown. */
  readonly lsn: string | null;
}

export interface MigrationMarker {
  readonly v: 1;
  readonly state: MarkerState;
  /** The migration's name (config.name) and the database label of the spec. */
  readonly migration: string;
  readonly database: string;
  /** The runner created the destination database itself (so it may drop and re-create it). */
  readonly created: boolean;
  readonly source: SourceIdentity;
  readonly dump?: DumpPoint;
  /** migration.verify of the run that wrote `verified`. */
  readonly verify?: string;
  readonly updatedAt: string;
}

/** What the destination says about one database. */
export interface DestinationState {
  readonly exists: boolean;
  /** The current user owns the database (or is superuser): it may write the marker. */
  readonly canMark: boolean;
  readonly owner?: string;
  readonly marker?: MigrationMarker;
  /** A comment that is not ours (never overwritten). */
  readonly foreignComment?: string;
}

const MARKER_RE = /^db-migration (restoring|replicating|verified): (\{.*\})$/s;

/** The comment text: readable for people (`\l+`), parseable for the runner. */
export function formatMarker(m: MigrationMarker): string {
  return `${MARKER_PREFIX} ${m.state}: ${JSON.stringify(m)}`;
}

/** The marker in a database comment, or undefined when the comment is not one. */
export function parseMarker(comment: string | null | undefined): MigrationMarker | undefined {
  const match = comment ? MARKER_RE.exec(comment) : null;
  if (!match) return undefined;
  try {
    const m = JSON.parse(match[2]) as Partial<MigrationMarker>;
    if (m.v !== 1 || m.state !== match[1] || typeof m.created !== 'boolean' || !m.source || typeof m.source.oid !== 'number') return undefined;
    return m as MigrationMarker;
  } catch {
    return undefined;
  }
}

/** Whether two identities name the same source database. */
export function sameSource(a: SourceIdentity, b: SourceIdentity): boolean {
  if (a.oid !== b.oid || a.database !== b.database) return false;
  return a.system && b.system ? a.system === b.system : a.endpoint === b.endpoint;
}

export function describeSource(s: SourceIdentity): string {
  return `${s.endpoint} (system ${s.system ?? 'unknown'}, database oid ${s.oid})`;
}

/** The source's identity, and (when `dumpPoint`) the current time and WAL position. Read only. */
export async function readSourceIdentity(
  ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number,
): Promise<{ identity: SourceIdentity; point: DumpPoint }> {
  const client = await connect(ep, env, { readOnly: true, connectTimeoutSeconds, applicationName: 'db-migration' });
  try {
    const r = await client.query<{ oid: number; at: Date }>(
      'SELECT d.oid::int AS oid, now() AS at FROM pg_database d WHERE d.datname = current_database()');
    // Both may be refused to unprivileged users on some services: the marker then does without them.
    const system = await optional(client, 'SELECT system_identifier::text AS v FROM pg_control_system()');
    const lsn = await optional(client,
      'SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS v');
    return {
      identity: { system, oid: r.rows[0].oid, database: ep.database, endpoint: describeEndpoint(ep) },
      point: { startedAt: new Date(r.rows[0].at).toISOString(), lsn },
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function optional(client: Client, sql: string): Promise<string | null> {
  try {
    return (await client.query<{ v: string | null }>(sql)).rows[0]?.v ?? null;
  } catch {
    return null;
  }
}

/** Reads the destination database's state through any session on the destination server. */
export async function readDestinationState(client: Client, database: string): Promise<DestinationState> {
  const r = await client.query<{ owner: string; can_mark: boolean; comment: string | null }>(`
    SELECT pg_get_userbyid(d.datdba) AS owner,
           pg_has_role(d.datdba, 'USAGE') OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS can_mark,
           shobj_description(d.oid, 'pg_database') AS comment
    FROM pg_database d WHERE d.datname = $1`, [database]);
  const row = r.rows[0];
  if (!row) return { exists: false, canMark: false };
  const marker = parseMarker(row.comment);
  return {
    exists: true, canMark: row.can_mark, owner: row.owner,
    ...(marker ? { marker } : {}),
    ...(!marker && row.comment ? { foreignComment: row.comment } : {}),
  };
}

/** Writes the marker (replacing an earlier one of ours; never a foreign comment: the caller checks). */
export async function writeMarker(client: Client, database: string, marker: MigrationMarker): Promise<void> {
  await client.query(`COMMENT ON DATABASE ${quoteIdent(database)} IS ${quoteLiteral(formatMarker(marker))}`);
}

/** What a run does with one database, decided from the marker before anything moves. */
export type ResumeAction =
  | { readonly kind: 'fresh' }
  | { readonly kind: 'skip'; readonly reason: string; readonly marker: MigrationMarker }
  | { readonly kind: 'reset'; readonly marker: MigrationMarker; readonly note: string }
  /** Online mode: the copy is complete and replication ran; continue it (if its objects still exist, else reset). */
  | { readonly kind: 'continue'; readonly marker: MigrationMarker; readonly note: string }
  | { readonly kind: 'refuse'; readonly message: string };

export interface ResumeInput {
  readonly destination: DestinationState;
  readonly databaseName: string;
  readonly source: SourceIdentity;
  /** Continue an earlier attempt (always in the Job; `migrate --resume` on a workstation). */
  readonly resume: boolean;
  readonly clean: boolean;
  /** migration.mode is online: a `replicating` marker is continued rather than reset. @default false */
  readonly online?: boolean;
}

/**
 * The decision, from what the destination says:
 * - no database, or no marker: a fresh migration (pre-flight already refused a non-empty one without restore.clean);
 * - `verified` from the same source: skipped (resume) or refused with what to do (no resume);
 * - `verified` from another source: somebody else's data now: replaced only with restore.clean;
 * - `restoring`: a half-restore by an earlier attempt: reset and redone (resume) or refused (no resume).
 */
export function decideResume(input: ResumeInput): ResumeAction {
  const { destination: d, databaseName: db, resume } = input;
  const m = d.marker;
  if (!d.exists || !m) return { kind: 'fresh' };
  const when = `${m.updatedAt}${m.dump?.lsn ? `, source snapshot at or after LSN ${m.dump.lsn}` : ''}`;
  if (m.state === 'verified') {
    if (!sameSource(m.source, input.source)) {
      if (input.clean) return { kind: 'fresh' };
      return {
        kind: 'refuse',
        message: `database ${quoteIdent(db)} holds a verified copy of a different source (${describeSource(m.source)}, `
          + `not ${describeSource(input.source)}): set restore.clean: true to replace it, or drop it, or point the spec at another destination database`,
      };
    }
    const how = m.verify === 'none' ? 'migrated (verify: none)' : 'migrated and verified';
    if (resume) return { kind: 'skip', marker: m, reason: `already ${how} by an earlier attempt (${when})` };
    return {
      kind: 'refuse',
      message: `database ${quoteIdent(db)} was already ${how} by an earlier run (${when}): run with --resume to skip it, `
        + 'set enabled: false for it in the spec, or drop it to migrate it again',
    };
  }
  if (m.state === 'replicating' && input.online && resume && sameSource(m.source, input.source)) {
    return { kind: 'continue', marker: m, note: `an earlier attempt copied it and was replicating (${when}): replication continues from its slot` };
  }
  // 'restoring' (or 'replicating' outside online mode): an earlier attempt stopped between the start of its restore and the end of its verification.
  const how = m.created ? 'dropped and re-created (the earlier attempt created it)' : 'restored with --clean --if-exists';
  if (!resume) {
    return {
      kind: 'refuse',
      message: `database ${quoteIdent(db)} was left half-restored by an earlier attempt (started ${when}): run with --resume `
        + `to reset it (${how}) and migrate it again, or drop it`,
    };
  }
  const other = sameSource(m.source, input.source) ? '' : ` (it was restoring a dump of ${describeSource(m.source)})`;
  return { kind: 'reset', marker: m, note: `an earlier attempt left it half-restored (started ${when})${other}: it is ${how} and migrated again` };
}
