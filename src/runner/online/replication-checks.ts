/**
 * Online mode's pre-flight, in addition to stream mode's: what logical replication needs on both servers, the
 * tables a publication would break, what is not replicated, and leftovers of earlier attempts. Each missing
 * piece is one problem with the setting or GRANT that fixes it. Read only on both sides.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { connectFirstAvailable, MAINTENANCE_DATABASES } from '../postgres/connection';
import { schemaMatcher } from '../checks/dumped-schemas';
import { displayName, quoteIdent } from '../postgres/sql';
import { capList, connectOrReport, endQuietly, plural, type Reporter } from '../checks/preflight/reporter';
import { replicationName } from './names';
import { subscriptionExists } from './replication';
import { blockerCount, describeBlockers, readSlotBlockers, rollbackPreparedSql, terminateSql } from './slot-blockers';
import { surveyTables } from './tables';

const CAP = 10;

export async function checkOnlineSource(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, r: Reporter): Promise<void> {
  const m = config.migration;
  const { client } = await connectOrReport(r, db.source, env, { readOnly: true, connectTimeoutSeconds: m.timeouts.connect });
  if (!client) return;
  try {
    await checkServerSettings(client, r);
    await checkSourcePrivileges(client, db, config, r);
    await checkTables(client, config, r);
    await reportRetention(client, r);
    await reportOpenTransactions(client, config, r);
    const name = replicationName(config.name, db.name);
    const left = await client.query<{ what: string }>(`
      SELECT 'publication ' || pubname AS what FROM pg_catalog.pg_publication WHERE pubname = $1
      UNION ALL SELECT 'replication slot ' || slot_name FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`, [name]);
    if (left.rowCount) {
      r.warning('replication-leftovers', `${left.rows.map((x) => x.what).join(' and ')} of an earlier attempt exist on the source: `
        + 'replication resumes from them when the destination was replicating, otherwise they are removed before the copy starts '
        + '(db-migration migrate --cleanup removes them now)');
    }
  } finally {
    await endQuietly(client);
  }
}

async function checkServerSettings(client: Client, r: Reporter): Promise<void> {
  const s = (await client.query<{ wal_level: string; slots: number; used: number; senders: number; active: number }>(`
    SELECT current_setting('wal_level') AS wal_level, current_setting('max_replication_slots')::int AS slots,
           (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS used,
           current_setting('max_wal_senders')::int AS senders,
           (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender')::int AS active`)).rows[0];
  if (s.wal_level !== 'logical') {
    r.error('wal-level', `wal_level is ${s.wal_level}; online mode needs logical (a server restart)`,
      'ALTER SYSTEM SET wal_level = logical;  -- then restart the source server');
  }
  if (s.used >= s.slots) {
    r.error('replication-slots', `all ${s.slots} replication slots (max_replication_slots) are in use; online mode needs one per database`,
      `ALTER SYSTEM SET max_replication_slots = ${s.slots + 10};  -- then restart the source server`);
  }
  if (s.active >= s.senders) {
    r.error('replication-slots', `all ${s.senders} WAL senders (max_wal_senders) are in use; the subscription needs one per database`,
      `ALTER SYSTEM SET max_wal_senders = ${s.senders + 10};  -- then restart the source server`);
  }
}

async function checkSourcePrivileges(client: Client, db: RuntimeDatabase, config: RuntimeConfig, r: Reporter): Promise<void> {
  const who = quoteIdent(db.source.username);
  const dbName = quoteIdent(db.source.database);
  const p = (await client.query<{ superuser: boolean; replication: boolean; create: boolean; owner: boolean; signal: boolean }>(`
    SELECT rolsuper AS superuser, rolreplication AS replication,
           has_database_privilege(current_database(), 'CREATE') AS "create",
           pg_has_role((SELECT datdba FROM pg_catalog.pg_database WHERE datname = current_database()), 'MEMBER') AS owner,
           pg_has_role('pg_signal_backend', 'MEMBER') AS signal
    FROM pg_catalog.pg_roles WHERE rolname = current_user`)).rows[0];
  if (!p.superuser && !p.replication) {
    r.error('replication-privilege', `user ${who} may not create a replication slot (neither REPLICATION nor superuser)`, `ALTER ROLE ${who} REPLICATION;`);
  }
  if (!p.superuser && !p.create) {
    r.error('publication-privilege', `user ${who} may not create a publication in database ${dbName} (no CREATE privilege)`,
      `GRANT CREATE ON DATABASE ${dbName} TO ${who};`);
  }
  if (config.migration.online.fence === 'readOnly' && !p.superuser) {
    if (!p.owner) {
      r.error('fence-privilege', `fence: readOnly sets database ${dbName} read-only at cutover, which needs its owner or a superuser; user ${who} is neither`,
        `ALTER DATABASE ${dbName} OWNER TO ${who};  -- or set migration.online.fence: none and stop the writers yourself`);
    }
    if (!p.signal) {
      r.error('fence-privilege', `fence: readOnly ends the database's other sessions at cutover, which needs pg_signal_backend for user ${who}`,
        `GRANT pg_signal_backend TO ${who};`);
    }
  }
}

async function checkTables(client: Client, config: RuntimeConfig, r: Reporter): Promise<void> {
  const m = config.migration;
  const tables = await surveyTables(client, schemaMatcher(m.dump));
  const listed = m.online.tablesWithoutKey;
  const who = quoteIdent((await client.query<{ u: string }>('SELECT current_user AS u')).rows[0].u);
  const refused = tables.keyless.filter((t) => listed[`${t.schema}.${t.name}`] === undefined && t.replicaIdentity !== 'full');
  if (refused.length > 0) {
    const names = refused.map((t) => displayName(t.schema, t.name));
    r.error('replica-identity', `${plural(refused.length, 'table has', 'tables have')} no primary key and no replica identity: ${capList(names, CAP)}. `
      + 'Published, UPDATE and DELETE on them would fail on the source; list each under migration.online.tablesWithoutKey '
      + '(exclude: copied inside the write pause at cutover; replicaIdentityFull: after you run the ALTER TABLE below)',
    refused.map((t) => `ALTER TABLE ${displayName(t.schema, t.name)} REPLICA IDENTITY FULL;`).join('\n'));
  }
  const notFull = tables.keyless.filter((t) => listed[`${t.schema}.${t.name}`] === 'replicaIdentityFull' && t.replicaIdentity !== 'full');
  for (const t of notFull) {
    r.error('replica-identity', `migration.online.tablesWithoutKey says ${t.schema}.${t.name}: replicaIdentityFull, but its replica identity is not FULL yet`,
      `ALTER TABLE ${displayName(t.schema, t.name)} REPLICA IDENTITY FULL;`);
  }
  const notOwned = tables.published.filter((t) => !t.owned);
  if (notOwned.length > 0) {
    r.error('publication-privilege', `user ${who} does not own ${plural(notOwned.length, 'table')} it must publish: `
      + `${capList(notOwned.map((t) => displayName(t.schema, t.name)), CAP)} (CREATE PUBLICATION ... FOR TABLE needs the owner or a superuser)`,
    'GRANT <each table\'s owner> TO ' + who + ';');
  }
  const atCutover = [...tables.unlogged, ...tables.keyless.filter((t) => listed[`${t.schema}.${t.name}`] === 'exclude')];
  if (atCutover.length > 0) {
    r.warning('not-replicated', `${plural(atCutover.length, 'table is', 'tables are')} not replicated (unlogged, or tablesWithoutKey: exclude): `
      + `${capList(atCutover.map((t) => displayName(t.schema, t.name)), CAP)}; copied inside the write pause at cutover, which grows with their size`);
  }
  if (tables.largeObjects > 0) {
    const named = capList(tables.largeObjectOids.map(String), CAP) + (tables.largeObjects > tables.largeObjectOids.length ? ` and ${tables.largeObjects - tables.largeObjectOids.length} more` : '');
    r.warning('not-replicated', `${plural(tables.largeObjects, 'large object')} on the source (OID ${named}): large objects are not replicated; `
      + 'those written or changed after the initial copy are copied inside the write pause at cutover');
  }
  for (const key of Object.keys(listed)) {
    if (!tables.keyless.some((t) => `${t.schema}.${t.name}` === key)) {
      r.warning('replica-identity', `migration.online.tablesWithoutKey lists ${key}, which is not a table without a primary key or replica identity on the source`);
    }
  }
}

/** A slot holds WAL until the cutover: how much the server lets it hold, and how much WAL is there now. */
async function reportRetention(client: Client, r: Reporter): Promise<void> {
  const keep = await client.query<{ v: string }>("SELECT current_setting('max_slot_wal_keep_size', true) AS v");
  const size = await client.query<{ n: string }>('SELECT sum(size)::text AS n FROM pg_catalog.pg_ls_waldir()').catch(() => undefined);
  const limit = keep.rows[0]?.v;
  const wal = size?.rows[0]?.n ? `${(Number(size.rows[0].n) / 1048576).toFixed(0)} MiB of WAL now` : 'WAL size unknown (pg_ls_waldir needs pg_monitor)';
  r.warning('wal-retention', `the replication slot holds the source's WAL until the cutover (${wal}; max_slot_wal_keep_size ${limit ?? 'unknown'}`
    + `${limit === '-1' ? ': unlimited, so pg_wal grows by what the source writes until the cutover; watch its free disk space' : ': a slot that falls further behind is invalidated and the run fails'})`);
}

/** Transactions open longer than this are named before the slot is created. */
const LONG_OPEN_SECONDS = 60;

/**
 * Transactions that would hold up the slot's creation if they are still open then: sessions (any database of the
 * source server) whose transaction holds a transaction id and has been open longer than a minute, and prepared
 * transactions, each with the statement that ends it.
 */
async function reportOpenTransactions(client: Client, config: RuntimeConfig, r: Reporter): Promise<void> {
  const b = await readSlotBlockers(client, { minAgeSeconds: LONG_OPEN_SECONDS, allPrepared: true });
  if (blockerCount(b) === 0) return;
  const some = b.prepared.length ? `${plural(b.prepared.length, 'prepared transaction')}${b.sessions.length ? ' and ' : ''}` : '';
  const what = `${some}${b.sessions.length ? `${plural(b.sessions.length, 'session')} with a transaction open longer than a minute` : ''}`;
  r.warning('open-transactions', `${what} on the source server: creating the replication slot waits until they end (up to `
    + `migration.online.slotWaitSeconds, ${config.migration.online.slotWaitSeconds}s): ${describeBlockers(b)}. Ending them is your call`,
  [...b.sessions.map((s) => `${terminateSql(s)};`), ...b.prepared.map((p) => `${rollbackPreparedSql(p)};  -- in database ${quoteIdent(p.database)}`)].join('\n'));
}

/** The destination user may create the subscription: superuser (15 and older) or pg_create_subscription (16+). */
export async function checkOnlineDestination(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, r: Reporter): Promise<void> {
  const m = config.migration;
  let client: Client | undefined;
  try {
    client = await connectFirstAvailable(db.destination, env, [db.destination.database, ...MAINTENANCE_DATABASES], { readOnly: true, connectTimeoutSeconds: m.timeouts.connect });
  } catch {
    return; // the destination checks have reported why
  }
  try {
    const who = quoteIdent(db.destination.username);
    const p = (await client.query<{ superuser: boolean; version: number; member: boolean | null }>(`
      SELECT rolsuper AS superuser, current_setting('server_version_num')::int AS version,
             CASE WHEN current_setting('server_version_num')::int >= 160000 THEN pg_has_role('pg_create_subscription', 'MEMBER') END AS member
      FROM pg_catalog.pg_roles WHERE rolname = current_user`)).rows[0];
    if (!p.superuser && p.version < 160000) {
      r.error('subscription-privilege', `user ${who} may not create a subscription: on PostgreSQL 15 and older that needs a superuser`,
        `ALTER ROLE ${who} SUPERUSER;  -- or migrate to a PostgreSQL 16+ destination, where pg_create_subscription suffices`);
    } else if (!p.superuser && !p.member) {
      r.error('subscription-privilege', `user ${who} may not create a subscription (not a member of pg_create_subscription)`,
        `GRANT pg_create_subscription TO ${who};`);
    }
    const name = replicationName(config.name, db.name);
    if (await subscriptionExists(client, name, db.destination.database).catch(() => false)) {
      r.warning('replication-leftovers', `subscription ${name} of an earlier attempt exists on the destination: replication resumes from it when `
        + 'the destination was replicating, otherwise it is removed before the copy starts (db-migration migrate --cleanup removes it now)');
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

