/** What pre-flight reports: problems found before any data moves, and facts about each database. */
import type { Side } from '../../../spec/runtime-config';

export type PreflightSeverity = 'error' | 'warning';

/** Names of the checks, stable for tests and log filters. */
export type PreflightCheck =
  | 'password' // the password variable is missing
  | 'connect' // the server cannot be reached or refuses the login
  | 'connect-privilege' // no CONNECT on the database
  | 'client-version' // pg_dump / pg_restore missing or older than the source server
  | 'server-version' // destination older than the source
  | 'schema-usage' // no USAGE on a schema that is dumped
  | 'schema-missing' // dump.schemas names a schema the source does not have
  | 'select-privilege' // tables that cannot be read
  | 'sequence-privilege' // sequences whose state cannot be read
  | 'row-security' // tables whose row-level security would make pg_dump fail
  | 'destination-database' // the destination database does not exist (created, or cannot be)
  | 'create-privilege' // no CREATE on the destination database
  | 'schema-privilege' // no USAGE/CREATE on an existing destination schema
  | 'destination-empty' // the destination has objects and restore.clean is off
  | 'owner-roles' // roles owning source objects are missing on the destination (restore.noOwner false)
  | 'owner-membership' // the destination user cannot assign ownership to those roles
  | 'acl-roles' // roles holding privileges are missing on the destination (restore.noAcl false)
  | 'disk-space' // the dump will not fit
  | 'connections' // not enough free connection slots
  // online mode
  | 'wal-level' // the source's wal_level is not logical
  | 'replication-slots' // no free replication slot or WAL sender on the source
  | 'replication-privilege' // the source user may not create a replication slot
  | 'publication-privilege' // the source user may not create the publication (CREATE, table ownership)
  | 'fence-privilege' // fence: readOnly needs the database's owner and pg_signal_backend
  | 'replica-identity' // tables without a primary key or replica identity
  | 'not-replicated' // large objects, unlogged and excluded tables: copied at cutover
  | 'wal-retention' // the slot holds WAL until the cutover
  | 'replication-leftovers' // replication objects of an earlier attempt
  | 'open-transactions' // long-open and prepared transactions on the source server would hold up the slot's creation
  | 'subscription-privilege'; // the destination user may not create a subscription

export interface PreflightProblem {
  readonly database: string;
  readonly server: Side;
  /** user@host:port/database */
  readonly endpoint: string;
  readonly check: PreflightCheck;
  /** What is missing, in one sentence. */
  readonly message: string;
  /** SQL that fixes it (run by an administrator), when SQL can. Several statements are separated by newlines. */
  readonly fix?: string;
  readonly severity: PreflightSeverity;
}

export interface DatabasePreflight {
  readonly database: string;
  /** server_version_num of the source, when it could be reached. */
  readonly sourceVersion?: number;
  /** server_version of the source (e.g. "15.4"), when it could be reached. */
  readonly sourceVersionText?: string;
  readonly destinationVersion?: number;
  readonly destinationVersionText?: string;
  /** pg_database_size of the source database. */
  readonly sourceSizeBytes?: number;
  /** Estimated dump size (the database size: an upper bound for an uncompressed directory dump). */
  readonly estimatedDumpBytes?: number;
  /** Tables (including leaf partitions) in the dumped schemas of the source. */
  readonly tables?: number;
  /** Whether the destination database exists; undefined when the server could not be asked. */
  readonly destinationExists?: boolean;
  /** The destination database does not exist and the destination user may create it. */
  readonly willCreateDestination?: boolean;
  /** Schemas the dump covers. */
  readonly schemas?: readonly string[];
  readonly problems: readonly PreflightProblem[];
  /** No error-level problem for this database. */
  readonly ok: boolean;
}

export interface ClientToolVersion {
  readonly tool: 'pg_dump' | 'pg_restore';
  /** Path that was run. */
  readonly path: string;
  /** e.g. "15.4"; undefined when the tool could not be run. */
  readonly version?: string;
  /** Like server_version_num: 150004, 90600. */
  readonly versionNum?: number;
  /** Why it could not be run. */
  readonly error?: string;
}

export interface PreflightReport {
  /** No error-level problem in any enabled database. */
  readonly ok: boolean;
  readonly databases: readonly DatabasePreflight[];
  /** Every problem, database by database, in check order. */
  readonly problems: readonly PreflightProblem[];
  readonly tools: readonly ClientToolVersion[];
}
