/**
 * Destination checks: the database exists (or will be created), the user may create what the restore
 * creates, it is empty unless restore.clean, the roles the dump names exist, and free connections.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../../spec/runtime-config';
import { MAINTENANCE_DATABASES } from '../../postgres/connection';
import { readDestinationState, type DestinationState } from '../progress-marker';
import { rolesToCreate } from '../../globals/copy-roles';
import { quoteIdent } from '../../postgres/sql';
import { checkConnectionSlots } from './capacity';
import { listSchemas, listUserObjects, type UserObject } from './catalog-queries';
import { capList, connectOrReport, endQuietly, plural, Reporter } from './reporter';
import type { SourceFacts } from './source';

export interface DestinationFacts {
  readonly version?: number;
  readonly versionText?: string;
  readonly exists?: boolean;
  readonly willCreate?: boolean;
}

export async function checkDestination(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, r: Reporter, source: SourceFacts | undefined,
): Promise<DestinationFacts> {
  const m = config.migration;
  const ep = db.destination;
  const opts = { readOnly: false, connectTimeoutSeconds: m.timeouts.connect };
  const attempt = await connectOrReport(r, ep, env, { ...opts, allowMissingDatabase: true });
  if (attempt.missingDatabase) return checkMissingDatabase(db, config, env, r, source);
  const client = attempt.client;
  if (!client) return {};
  try {
    const who = quoteIdent(ep.username);
    const version = await serverVersion(client);
    if (source) compareVersions(r, source, version);

    const existing = new Map((await listSchemas(client)).map((s) => [s.name, s]));
    const dumped = source?.schemas ?? [];
    const missingSchemas = dumped.filter((s) => !existing.has(s));
    // pg_restore runs CREATE SCHEMA for schemas the destination lacks, and --clean drops and re-creates them.
    const needsCreateOnDb = missingSchemas.length > 0 || (m.restore.clean && dumped.some((s) => s !== 'public'));
    const canCreate = await client.query<{ ok: boolean }>(`SELECT has_database_privilege(current_database(), 'CREATE') AS ok`);
    if (needsCreateOnDb && !canCreate.rows[0].ok) {
      const which = missingSchemas.length > 0 ? `, which the restore needs to create ${plural(missingSchemas.length, 'schema')} (${capList(missingSchemas.map(quoteIdent))})` : ', which restore.clean needs to re-create schemas';
      r.error('create-privilege', `user ${who} has no CREATE privilege on database ${quoteIdent(ep.database)}${which}`,
        `GRANT CREATE ON DATABASE ${quoteIdent(ep.database)} TO ${who};`);
    }
    for (const name of dumped.filter((s) => existing.has(s))) {
      const s = existing.get(name)!;
      const lacking = [...(s.usage ? [] : ['USAGE']), ...(s.create ? [] : ['CREATE'])];
      if (lacking.length > 0) {
        r.error('schema-privilege', `user ${who} has no ${lacking.join(' or ')} privilege on schema ${quoteIdent(name)}, where the restore creates objects`,
          `GRANT ${lacking.join(', ')} ON SCHEMA ${quoteIdent(name)} TO ${who};`);
      }
    }

    // A database an earlier attempt of db-migration filled carries its marker: not foreign data. Whether it is
    // skipped, reset or refused is decided from the marker after pre-flight (see progress-marker.ts).
    const state = await readDestinationState(client, ep.database);
    if (!state.marker) {
      const objects = m.restore.clean ? [] : await listUserObjects(client);
      if (objects.length > 0) reportNonEmpty(r, objects, state);
      else if (!m.restore.clean) reportUnmarkable(r, state);
    }
    if (source) await checkRoles(client, r, source, m.restore);
    const need = destinationConnections(m);
    await checkConnectionSlots(client, r, need.count, need.why, { databaseLimits: true });
    return { ...version, exists: true, willCreate: false };
  } finally {
    await endQuietly(client);
  }
}

/** The database is missing: fine when this user may create it (reported as a warning), an error otherwise. */
async function checkMissingDatabase(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, r: Reporter, source: SourceFacts | undefined,
): Promise<DestinationFacts> {
  const ep = db.destination;
  const who = quoteIdent(ep.username);
  const create = `CREATE DATABASE ${quoteIdent(ep.database)} OWNER ${who};`;
  let client: Client | undefined;
  for (const maintenance of MAINTENANCE_DATABASES) {
    const probe = new Reporter(r.database, r.server, { ...ep, database: maintenance });
    client = (await connectOrReport(probe, { ...ep, database: maintenance }, env, {
      readOnly: false, connectTimeoutSeconds: config.migration.timeouts.connect,
    })).client;
    if (client) break;
  }
  if (!client) {
    r.error('destination-database', `database ${quoteIdent(ep.database)} does not exist, and user ${who} cannot connect to `
      + `${MAINTENANCE_DATABASES.join(' or ')} to show it may create it: create it first`, create);
    return { exists: false, willCreate: false };
  }
  try {
    const version = await serverVersion(client);
    if (source) compareVersions(r, source, version);
    const res = await client.query<{ ok: boolean }>(`SELECT rolcreatedb OR rolsuper AS ok FROM pg_roles WHERE rolname = current_user`);
    const willCreate = res.rows[0]?.ok === true;
    if (willCreate) {
      r.warning('destination-database', `database ${quoteIdent(ep.database)} does not exist; user ${who} has CREATEDB, so it will be created`);
    } else {
      r.error('destination-database', `database ${quoteIdent(ep.database)} does not exist and user ${who} may not create it (no CREATEDB)`, create);
    }
    // A database the user creates is owned by it, so only roles and the server-wide limits remain to check.
    if (source) await checkRoles(client, r, source, config.migration.restore);
    const need = destinationConnections(config.migration);
    await checkConnectionSlots(client, r, need.count, need.why, { databaseLimits: false });
    return { ...version, exists: false, willCreate };
  } finally {
    await endQuietly(client);
  }
}

/**
 * Sessions the migration opens on the destination at once. Dump mode: pg_restore's workers and leader. Stream
 * mode: the copy.jobs COPY sessions stay open while pg_restore restores post-data with restore.jobs workers.
 */
function destinationConnections(m: RuntimeConfig['migration']): { count: number; why: string } {
  if (m.mode === 'stream') return { count: m.copy.jobs + m.restore.jobs, why: `copy.jobs ${m.copy.jobs} + restore.jobs ${m.restore.jobs}` };
  return { count: m.restore.jobs + 1, why: `restore.jobs ${m.restore.jobs} + 1` };
}

async function serverVersion(client: Client): Promise<{ version: number; versionText: string }> {
  const v = await client.query<{ num: number; text: string }>(
    `SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS text`);
  return { version: v.rows[0].num, versionText: v.rows[0].text };
}

function compareVersions(r: Reporter, source: SourceFacts, dest: { version: number; versionText: string }): void {
  const major = (n: number) => (n >= 100000 ? Math.floor(n / 10000) : Math.floor(n / 100) / 100);
  if (major(dest.version) < major(source.version)) {
    r.warning('server-version', `the destination (PostgreSQL ${dest.versionText}) is older than the source (PostgreSQL ${source.versionText}): `
      + 'objects using newer features may fail to restore');
  }
}

/** The runner cannot record its progress on this database: a half-restore would not be recognized later. */
function reportUnmarkable(r: Reporter, state: DestinationState): void {
  const db = quoteIdent(r.ep.database);
  const who = quoteIdent(r.ep.username);
  const consequence = 'so the runner cannot record its progress on it: if this run is interrupted while restoring, '
    + 'a re-run will refuse the half-filled database (drop and re-create it empty, or set restore.clean: true, then run again)';
  if (!state.canMark) {
    r.warning('destination-empty', `database ${db} is owned by ${quoteIdent(state.owner ?? '?')}, not by user ${who}, ${consequence}`,
      `ALTER DATABASE ${db} OWNER TO ${who};`);
  } else if (state.foreignComment !== undefined) {
    r.warning('destination-empty', `database ${db} has a comment, which the runner does not overwrite, ${consequence}`,
      `COMMENT ON DATABASE ${db} IS NULL;`);
  }
}

function reportNonEmpty(r: Reporter, objects: UserObject[], state: DestinationState): void {
  if (objects.length === 0) return;
  const counts = new Map<string, number>();
  for (const o of objects) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1);
  const summary = [...counts].map(([kind, n]) => plural(n, kind, kind === 'materialized view' ? 'materialized views' : `${kind}s`)).join(', ');
  const names = objects.map((o) => `${o.schema}.${o.name}`);
  r.error('destination-empty', `database ${quoteIdent(r.ep.database)} is not empty (${summary}: ${capList(names, 5)}): `
    + 'restore into an empty database, or set restore.clean: true to replace existing objects'
    + (state.canMark && state.foreignComment === undefined ? ''
      : ` (it carries no db-migration marker${state.canMark ? '' : ` and user ${quoteIdent(r.ep.username)} does not own it`}, so even if an `
        + 'interrupted attempt of this migration filled it, that cannot be recognized: drop and re-create it empty, or set restore.clean: true)'));
}

/**
 * Roles the restore names must exist: owners unless restore.noOwner, grantees unless restore.noAcl. With
 * migration.roles, the roles its step will create before the restore count as present (and, for owner roles
 * unless noOwner, the user becomes a member of them) when the destination user may create roles; when it may
 * not, the problems stay and their fix includes granting CREATEROLE.
 */
async function checkRoles(client: Client, r: Reporter, source: SourceFacts, restore: RuntimeConfig['migration']['restore']): Promise<void> {
  const wanted = [...new Set([...(restore.noOwner ? [] : source.roles.owners), ...(restore.noAcl ? [] : source.roles.grantees)])];
  if (wanted.length === 0) return;
  const res = await client.query<{ rolname: string; member: boolean }>(
    `SELECT rolname, pg_has_role(current_user, oid, 'USAGE') AS member FROM pg_roles WHERE rolname = ANY($1::text[])`, [wanted]);
  const present = new Map(res.rows.map((x) => [x.rolname, x.member]));
  let roleStepFix: string | undefined;
  if (source.rolePlan && source.rolePlan.roles.length > 0) {
    const outlook = await rolesToCreate(client, source.rolePlan);
    if (outlook.canCreate) {
      const owners = new Set(source.rolePlan.roles.filter((x) => x.reasons.includes('owner') || x.reasons.includes('database-owner')).map((x) => x.name));
      // The role step creates these and (unless noOwner) makes the user a member of the owner roles it creates.
      for (const name of outlook.create) present.set(name, outlook.superuser || (!restore.noOwner && owners.has(name)));
    } else {
      roleStepFix = `${outlook.fix} -- lets migration.roles (${source.rolePlan.mode}) create the missing roles`;
    }
  }
  const createRoles = (roles: string[]) => [...(roleStepFix ? [roleStepFix] : []), ...roles.map((x) => `CREATE ROLE ${quoteIdent(x)};`)].join('\n');
  if (!restore.noOwner) {
    const missing = source.roles.owners.filter((x) => !present.has(x));
    if (missing.length > 0) {
      r.error('owner-roles', `${plural(missing.length, 'role')} owning objects in the source ${missing.length === 1 ? 'is' : 'are'} missing: `
        + `${capList(missing.map(quoteIdent))} (restore.noOwner is false, so pg_restore sets owners)`
        + `${roleStepFix ? `; migration.roles cannot create ${missing.length === 1 ? 'it' : 'them'}: user ${quoteIdent(r.ep.username)} has neither SUPERUSER nor CREATEROLE` : ''}`,
      createRoles(missing));
    }
    const who = quoteIdent(r.ep.username);
    const notMember = source.roles.owners.filter((x) => present.has(x) && !present.get(x) && x !== r.ep.username);
    if (notMember.length > 0) {
      r.error('owner-membership', `user ${who} is not a member of ${capList(notMember.map(quoteIdent))}, so it cannot make `
        + `${notMember.length === 1 ? 'that role' : 'those roles'} owner of restored objects (restore.noOwner is false)`,
        notMember.map((x) => `GRANT ${quoteIdent(x)} TO ${who};`).join('\n'));
    }
  }
  if (!restore.noAcl) {
    const missing = source.roles.grantees.filter((x) => !present.has(x) && (restore.noOwner || !source.roles.owners.includes(x)));
    if (missing.length > 0) {
      r.warning('acl-roles', `${plural(missing.length, 'role')} holding privileges in the source ${missing.length === 1 ? 'is' : 'are'} missing: `
        + `${capList(missing.map(quoteIdent))} (their GRANTs will fail; set restore.noAcl: true to skip privileges)`, createRoles(missing));
    }
  }
}
