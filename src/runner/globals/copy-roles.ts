/**
 * Folder globals/: what lives outside a database: roles (planned from pg_dumpall, created on the destination;
 * this file) and per-database settings. Imports postgres/ and checks/; imported by phases/ and checks/preflight.
 *
 * Roles on the destination (`migration.roles`): the roles a migrated database needs are created there before
 * the restore, so pg_restore can set owners, GRANTs and policies instead of silently losing them.
 *
 * Rules: a role that exists on the destination is never altered (reported "exists, left as is"); a missing
 * one is created from the source's definition as pg_dumpall reads it, with only the attributes the
 * destination user may grant (the others are named in warnings); memberships are granted only to roles this
 * run created, and only when missing. Passwords are carried when the source user can read pg_authid, and never
 * appear in a message, warning or log line.
 */
import type { Client } from 'pg';
import type { ResolvedEndpoint, RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { connect, connectFirstAvailable, MAINTENANCE_DATABASES, sqlstate } from '../postgres/connection';
import { statementError } from './database-settings';
import { classifyError } from '../postgres/errors';
import {
  createRoleSql, dumpRoles, ROLE_FLAGS, roleSettingSql, type DumpallRoles, type RoleDefinition, type RoleFlag, type RoleMembership,
} from './dumpall';
import { planRoles, type PlannedRole, type RolePlan, type RolesMode } from './role-plan';
import { displayIdent, quoteIdent, quoteLiteral } from '../postgres/sql';

export { parseDumpallRoles, tokenizeStatements } from './dumpall';
export type { DumpallRoles, RoleDefinition, RoleFlag, RoleMembership, RoleSetting } from './dumpall';
export { planRoles, planRolesFrom } from './role-plan';
export type { PlannedRole, PlanRolesOptions, RolePlan, RoleReason, RolesMode } from './role-plan';

/** The warning given when pg_authid could not be read on the source. */
export const NO_PASSWORDS_WARNING = 'roles created without passwords: set them on the destination';

export interface RoleWarning {
  /** The role it is about, when one. */
  readonly role?: string;
  readonly message: string;
  /** SQL an administrator can run to finish the job (never with a password). */
  readonly sql?: string;
}

export interface SkippedRole {
  readonly role: string;
  readonly reason: string;
}

export interface SkippedMembership extends RoleMembership {
  readonly reason: string;
  readonly sql: string;
}

export interface RoleMigrationResult {
  readonly mode: RolesMode;
  readonly plan: RolePlan;
  /** Created on the destination by this call. */
  readonly created: string[];
  /** Already on the destination: exists, left as is. */
  readonly existing: string[];
  /** Planned but not created (see warnings for why and the SQL). */
  readonly skipped: SkippedRole[];
  readonly memberships: {
    readonly granted: RoleMembership[];
    /** Already in place on the destination. */
    readonly present: RoleMembership[];
    readonly skipped: SkippedMembership[];
  };
  /** Roles the destination user was made a member of, so pg_restore can make them owners. */
  readonly selfGranted: string[];
  /** carried: password verifiers copied; not-readable: the source user cannot read them (see warnings). */
  readonly passwords: 'carried' | 'not-readable' | 'not-needed';
  readonly warnings: RoleWarning[];
}

export interface MigrateRolesOptions {
  /** Directory of pg_dumpall. @default - $PG_BIN from env, else PATH */
  readonly binDir?: string;
  /** A plan from {@link planRoles}. @default - planned here */
  readonly plan?: RolePlan;
  /** Every password variable of the config, kept out of pg_dumpall's environment. @default - those of config */
  readonly passwordVars?: readonly string[];
  /** Time allowed for pg_dumpall. @default - migration.timeouts.dump */
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /**
   * Make a non-superuser destination user a member of the owner roles it creates: PostgreSQL lets only
   * members give objects to a role, so without this pg_restore cannot set their owners.
   * @default - true unless restore.noOwner
   */
  readonly grantOwnersToSelf?: boolean;
}

/** Facts about the destination user that decide what it may create. */
interface Creator {
  readonly name: string;
  readonly superuser: boolean;
  readonly createrole: boolean;
  readonly flags: Record<RoleFlag, boolean>;
  readonly version: number;
}

/**
 * Creates the roles the plan names on the destination (cluster-wide, so call it once per destination server
 * and database before the restore; repeated calls find the roles and change nothing).
 */
export async function migrateRoles(
  config: RuntimeConfig, db: RuntimeDatabase, env: NodeJS.ProcessEnv, opts: MigrateRolesOptions = {},
): Promise<RoleMigrationResult> {
  const m = config.migration;
  const connectTimeoutSeconds = m.timeouts.connect;
  const source = await connect(db.source, env, { readOnly: true, connectTimeoutSeconds });
  let plan: RolePlan;
  let canReadPasswords: boolean;
  try {
    plan = opts.plan ?? await planRoles(config, db, env, { client: source });
    canReadPasswords = (await source.query<{ ok: boolean }>(
      `SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT') AS ok`)).rows[0].ok;
  } finally {
    await source.end().catch(() => undefined);
  }
  const result: RoleMigrationResult = {
    mode: plan.mode, plan, created: [], existing: [], skipped: [],
    memberships: { granted: [], present: [], skipped: [] }, selfGranted: [], passwords: 'not-needed', warnings: [],
  };
  if (plan.roles.length === 0) return result;

  const dumped = await dumpRoles(db.source, { ...process.env, ...env }, {
    binDir: opts.binDir ?? (env.PG_BIN || undefined),
    noPasswords: !canReadPasswords,
    connectTimeoutSeconds,
    passwordVars: opts.passwordVars ?? [...new Set(config.databases.flatMap((d) => [d.source.passwordEnv, d.destination.passwordEnv]))],
    timeoutMs: opts.timeoutMs ?? m.timeouts.dump * 1000,
    signal: opts.signal,
    tmpDir: config.paths.tmp,
  });
  for (const p of dumped.problems) result.warnings.push({ message: `a statement of pg_dumpall --roles-only could not be read: ${p}` });

  const dest = await connectAnyDatabase(db.destination, env, connectTimeoutSeconds);
  try {
    await applyRoles(dest, plan, dumped, result, opts.grantOwnersToSelf ?? !m.restore.noOwner);
  } finally {
    await dest.end().catch(() => undefined);
  }

  const loginCreated = result.created.filter((r) => dumped.roles.get(r)?.flags.LOGIN);
  (result as { passwords: RoleMigrationResult['passwords'] }).passwords = canReadPasswords ? 'carried' : loginCreated.length > 0 ? 'not-readable' : 'not-needed';
  if (!canReadPasswords && loginCreated.length > 0) {
    result.warnings.push({
      message: `${NO_PASSWORDS_WARNING} (source user ${displayIdent(db.source.username)} cannot read pg_authid, so pg_dumpall ran with `
        + `--no-role-passwords): ${loginCreated.map(displayIdent).join(', ')}`,
    });
  }
  return result;
}

async function applyRoles(dest: Client, plan: RolePlan, dumped: DumpallRoles, result: RoleMigrationResult, grantOwnersToSelf: boolean): Promise<void> {
  const creator = await destinationUser(dest);
  const planned = new Map(plan.roles.map((r) => [r.name, r]));
  const wantedNames = [...new Set([...planned.keys(), ...dumped.memberships.map((x) => x.role)])];
  const existing = await existingRoles(dest, wantedNames);

  // 1. Roles.
  for (const role of plan.roles) {
    if (existing.has(role.name)) { result.existing.push(role.name); continue; }
    const def = dumped.roles.get(role.name);
    if (!def) {
      result.skipped.push({ role: role.name, reason: 'not in the output of pg_dumpall --roles-only (dropped on the source since planning?)' });
      result.warnings.push({ role: role.name, message: `role ${displayIdent(role.name)} was planned but pg_dumpall did not return it: not created` });
      continue;
    }
    await createRole(dest, creator, role, def, result);
  }
  const created = new Set(result.created);

  // 2. The destination user joins the owner roles it created (PostgreSQL 15 gives a CREATEROLE creator no membership).
  if (grantOwnersToSelf && !creator.superuser) {
    for (const name of result.created) {
      const reasons = planned.get(name)?.reasons ?? [];
      if (!reasons.includes('owner') && !reasons.includes('database-owner')) continue;
      const sql = `GRANT ${quoteIdent(name)} TO ${quoteIdent(creator.name)}`;
      try {
        await dest.query(sql);
        result.selfGranted.push(name);
      } catch (err) {
        rethrowTransient(err);
        result.warnings.push({
          role: name, sql: `${sql};`,
          message: `cannot make user ${displayIdent(creator.name)} a member of ${displayIdent(name)} (${statementError(err)}), so pg_restore cannot give it objects`,
        });
      }
    }
  }

  // 3. Memberships of the planned roles, for the roles this run created.
  const nowExisting = await existingRoles(dest, wantedNames);
  const present = await presentMemberships(dest, dumped.memberships.filter((x) => planned.has(x.member)));
  for (const ms of dumped.memberships) {
    if (!planned.has(ms.member)) continue;
    const sql = `GRANT ${quoteIdent(ms.role)} TO ${quoteIdent(ms.member)}${ms.admin ? ' WITH ADMIN OPTION' : ''}`;
    const skip = (reason: string) => result.memberships.skipped.push({ ...ms, reason, sql: `${sql};` });
    if (!nowExisting.has(ms.member) || !nowExisting.has(ms.role)) {
      const missing = !nowExisting.has(ms.member) ? ms.member : ms.role;
      skip(`role ${displayIdent(missing)} does not exist on the destination`);
      continue;
    }
    if (present.has(membershipKey(ms))) { result.memberships.present.push(ms); continue; }
    if (!created.has(ms.member)) {
      skip(`role ${displayIdent(ms.member)} existed on the destination and is left as is`);
      continue;
    }
    try {
      await dest.query(sql);
      result.memberships.granted.push(ms);
    } catch (err) {
      rethrowTransient(err);
      skip(statementError(err));
      result.warnings.push({ role: ms.member, sql: `${sql};`, message: `cannot grant membership in ${displayIdent(ms.role)} to ${displayIdent(ms.member)}: ${statementError(err)}` });
    }
  }
}

async function createRole(dest: Client, creator: Creator, role: PlannedRole, def: RoleDefinition, result: RoleMigrationResult): Promise<void> {
  const who = displayIdent(creator.name);
  const name = displayIdent(role.name);
  if (!creator.superuser && !creator.createrole) {
    result.skipped.push({ role: role.name, reason: `user ${who} has neither SUPERUSER nor CREATEROLE` });
    result.warnings.push({
      role: role.name, sql: `${createRoleSql(def, def.flags, false)};`,
      message: `cannot create role ${name}: user ${who} has neither SUPERUSER nor CREATEROLE; create it as an administrator`,
    });
    return;
  }
  const flags: Partial<Record<RoleFlag, boolean>> = { ...def.flags };
  for (const f of ROLE_FLAGS) {
    if (!flags[f] || mayGrant(creator, f)) continue;
    flags[f] = false;
    result.warnings.push({
      role: role.name, sql: `ALTER ROLE ${quoteIdent(role.name)} ${f};`,
      message: `role ${name} created without ${f}: user ${who} may not grant it (${f === 'SUPERUSER' || creator.version < 160000 ? 'only a superuser may' : `it does not have ${f} itself`}); an administrator can add it`,
    });
  }
  try {
    await dest.query(createRoleSql(def, flags, true));
  } catch (err) {
    if (sqlstate(err) === '42710' || sqlstate(err) === '23505') { // created meanwhile (another database of this run)
      result.existing.push(role.name);
      return;
    }
    rethrowTransient(err);
    result.skipped.push({ role: role.name, reason: statementError(err) });
    result.warnings.push({ role: role.name, sql: `${createRoleSql(def, flags, false)};`, message: `cannot create role ${name}: ${statementError(err)}` });
    return;
  }
  result.created.push(role.name);
  const extras = [
    ...def.settings.map((s) => roleSettingSql(role.name, s)),
    ...(def.comment !== undefined ? [`COMMENT ON ROLE ${quoteIdent(role.name)} IS ${quoteLiteral(def.comment)}`] : []),
  ];
  for (const sql of extras) {
    try {
      await dest.query(sql);
    } catch (err) {
      rethrowTransient(err);
      result.warnings.push({ role: role.name, sql: `${sql};`, message: `role ${name} created, but this failed: ${statementError(err)}` });
    }
  }
}

/**
 * Whether the destination user may give a new role this attribute. PostgreSQL 15: SUPERUSER, REPLICATION and
 * BYPASSRLS only a superuser; a CREATEROLE user everything else. PostgreSQL 16 and later: a CREATEROLE user
 * may grant CREATEDB, REPLICATION and BYPASSRLS only when it has them itself.
 */
function mayGrant(c: Creator, flag: RoleFlag): boolean {
  if (c.superuser) return true;
  switch (flag) {
    case 'SUPERUSER': return false;
    case 'REPLICATION':
    case 'BYPASSRLS': return c.version >= 160000 && c.flags[flag];
    case 'CREATEDB': return c.version < 160000 || c.flags.CREATEDB;
    default: return true;
  }
}

async function destinationUser(client: Client): Promise<Creator> {
  const res = await client.query<Record<string, unknown>>(`
    SELECT current_user AS name, current_setting('server_version_num')::int AS version,
           rolsuper, rolcreatedb, rolcreaterole, rolinherit, rolcanlogin, rolreplication, rolbypassrls
    FROM pg_roles WHERE rolname = current_user`);
  const r = res.rows[0];
  return {
    name: r.name as string,
    version: r.version as number,
    superuser: r.rolsuper as boolean,
    createrole: r.rolcreaterole as boolean,
    flags: {
      SUPERUSER: r.rolsuper as boolean, CREATEDB: r.rolcreatedb as boolean, CREATEROLE: r.rolcreaterole as boolean,
      INHERIT: r.rolinherit as boolean, LOGIN: r.rolcanlogin as boolean, REPLICATION: r.rolreplication as boolean,
      BYPASSRLS: r.rolbypassrls as boolean,
    },
  };
}

async function existingRoles(client: Client, names: readonly string[]): Promise<Set<string>> {
  const res = await client.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname = ANY($1::text[])', [names]);
  return new Set(res.rows.map((r) => r.rolname));
}

const membershipKey = (x: { role: string; member: string }) => JSON.stringify([x.role, x.member]);

async function presentMemberships(client: Client, wanted: readonly RoleMembership[]): Promise<Set<string>> {
  if (wanted.length === 0) return new Set();
  const res = await client.query<{ role: string; member: string }>(`
    SELECT r.rolname AS role, m.rolname AS member
    FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member
    WHERE m.rolname = ANY($1::text[])`, [[...new Set(wanted.map((x) => x.member))]]);
  return new Set(res.rows.map(membershipKey));
}

export interface RoleCreationOutlook {
  /** Planned roles missing on the destination: {@link migrateRoles} creates them (when `canCreate`). */
  readonly create: string[];
  /** Planned roles already on the destination (left as is). */
  readonly existing: string[];
  /** The destination user is a superuser or has CREATEROLE. */
  readonly canCreate: boolean;
  readonly superuser: boolean;
  /** When it cannot create roles: the SQL an administrator runs to allow it. */
  readonly fix?: string;
}

/**
 * For pre-flight: which planned roles the role step will create on this destination, and whether its user
 * may. Roles in `create` will exist before the restore, and (unless restore.noOwner, and for owner roles)
 * the destination user will be a member of them.
 */
export async function rolesToCreate(dest: Client, plan: RolePlan): Promise<RoleCreationOutlook> {
  const creator = await destinationUser(dest);
  const names = plan.roles.map((r) => r.name);
  const existing = await existingRoles(dest, names);
  const canCreate = creator.superuser || creator.createrole;
  return {
    create: names.filter((n) => !existing.has(n)),
    existing: names.filter((n) => existing.has(n)),
    canCreate,
    superuser: creator.superuser,
    ...(canCreate ? {} : { fix: `ALTER ROLE ${quoteIdent(creator.name)} CREATEROLE;` }),
  };
}

/** Log lines for a result: what was created, what was left as is, and every warning. */
export function describeRoleResult(r: RoleMigrationResult): Array<{ level: 'info' | 'warn' | 'ok'; text: string }> {
  if (r.mode === 'none') return [];
  const list = (xs: readonly string[]) => xs.map(displayIdent).join(', ');
  const lines: Array<{ level: 'info' | 'warn' | 'ok'; text: string }> = [];
  lines.push({ level: 'ok', text: `roles (${r.mode}): ${r.plan.roles.length} planned, ${r.created.length} created, ${r.existing.length} existing, ${r.skipped.length} skipped` });
  if (r.created.length) lines.push({ level: 'info', text: `created: ${list(r.created)}` });
  if (r.existing.length) lines.push({ level: 'info', text: `exists, left as is: ${list(r.existing)}` });
  if (r.memberships.granted.length) {
    lines.push({ level: 'info', text: `memberships granted: ${r.memberships.granted.map((x) => `${displayIdent(x.role)} to ${displayIdent(x.member)}`).join(', ')}` });
  }
  for (const s of r.memberships.skipped) lines.push({ level: 'info', text: `membership ${displayIdent(s.role)} to ${displayIdent(s.member)} not granted: ${s.reason} (${s.sql})` });
  if (r.selfGranted.length) {
    lines.push({ level: 'warn', text: `user is now a member of ${list(r.selfGranted)} (so the restore can set owners); revoke after the migration if unwanted` });
  }
  for (const w of r.warnings) lines.push({ level: 'warn', text: `${w.message}${w.sql ? `\n  fix: ${w.sql.replace(/\n/g, '\n  ')}` : ''}` });
  return lines;
}

/** A session on the destination server: its database, else a maintenance database (the database may not exist yet). */
function connectAnyDatabase(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number): Promise<Client> {
  return connectFirstAvailable(ep, env, [ep.database, ...MAINTENANCE_DATABASES], { readOnly: false, connectTimeoutSeconds });
}


/** A lost connection or a server going down is not a verdict on one statement: let the phase retry. */
function rethrowTransient(err: unknown): void {
  if (classifyError(err).transient) throw err;
}
