/**
 * Online mode's replication objects, created and removed with PostgreSQL's own logical replication:
 * - on the source database, a publication of the migrated tables (created before the slot, so the slot's
 *   decoding sees it from its first change on);
 * - on the source server, a logical replication slot (pgoutput) created on a replication connection that exports
 *   its snapshot: the initial copy reads exactly that snapshot, and replication starts at the slot's consistent
 *   point, so nothing is copied twice or missed;
 * - on the destination database, a subscription bound to that slot (create_slot and copy_data off).
 * The runner writes nothing else to the source here; every object is dropped by {@link dropReplication}.
 */
import type { Client } from 'pg';
import { escapeIdentifier, escapeLiteral } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';
import { closeClient } from '../stream/snapshot-sessions';

export interface TableName {
  readonly schema: string;
  readonly name: string;
}

const ident = escapeIdentifier;

/** CREATE PUBLICATION for these tables (ONLY each: leaf tables are listed one by one). Needs a read-write session. */
export async function createPublication(source: Client, name: string, tables: readonly TableName[]): Promise<void> {
  const list = tables.map((t) => `ONLY ${ident(t.schema)}.${ident(t.name)}`).join(', ');
  await source.query(`CREATE PUBLICATION ${ident(name)}${tables.length ? ` FOR TABLE ${list}` : ''}`);
}

export interface CreatedSlot {
  /** Where replication starts: the slot's consistent point. */
  readonly lsn: string;
  /** The exported snapshot, importable while {@link close} has not been called. */
  readonly snapshot: string;
  /** Ends the replication connection (and with it the exported snapshot); the slot stays. */
  close(): Promise<void>;
}

/**
 * Watches a slot's creation from another session while it runs on the walsender `pid` (begun at `started`), until
 * `created` settles; throws to give up (having cancelled the creation).
 */
export type SlotCreationWatch = (pid: number, started: Date, created: Promise<unknown>) => Promise<void>;

/**
 * Creates the logical slot on a replication connection to the source database and keeps the connection open,
 * idle, so its exported snapshot stays importable. `watch` runs beside the creation (slot-wait.ts).
 */
export async function createSlotWithSnapshot(
  ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, name: string, connectTimeoutSeconds: number, watch?: SlotCreationWatch,
): Promise<CreatedSlot> {
  const repl = await connect(ep, env, { readOnly: true, connectTimeoutSeconds, replication: true, applicationName: 'db-migration slot' });
  try {
    const started = new Date();
    // The pre-15 syntax, which every supported server still accepts.
    const creating = repl.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${ident(name)} LOGICAL pgoutput EXPORT_SNAPSHOT`,
    );
    if (watch) {
      const watching = watch((repl as unknown as { processID: number }).processID, started, creating);
      watching.catch(() => undefined);
      // A creation the watcher cancelled fails with the watcher's reason, not the server's "canceling statement".
      await Promise.race([creating, watching]).catch(async (err: unknown) => { throw await watching.then(() => err, (why: unknown) => why); });
    }
    const row = (await creating).rows[0];
    return { lsn: row.consistent_point, snapshot: row.snapshot_name, close: () => closeClient(repl) };
  } catch (err) {
    await closeClient(repl);
    throw err;
  }
}

/**
 * CREATE SUBSCRIPTION bound to the existing slot, created disabled (enable it with {@link enableSubscription}).
 * `conninfo` holds the source password: PostgreSQL stores it in pg_subscription; it must never reach a log.
 */
export async function createSubscription(destination: Client, name: string, conninfo: string): Promise<void> {
  // The statement carries the password: keep it out of the server's log and pg_stat_statements where this
  // session may (superuser-only settings; without the privilege the server's own settings apply).
  for (const setting of ['log_statement = none', 'log_min_duration_statement = -1', 'log_min_error_statement = panic', 'pg_stat_statements.track_utility = off']) {
    await destination.query(`SET ${setting}`).catch(() => undefined);
  }
  await destination.query(`CREATE SUBSCRIPTION ${ident(name)} CONNECTION ${escapeLiteral(conninfo)} PUBLICATION ${ident(name)} `
    + `WITH (create_slot = false, slot_name = ${escapeLiteral(name)}, copy_data = false, enabled = false)`);
}

/** Whether a subscription `name` exists in `database` (default: the session's own database). */
export async function subscriptionExists(client: Client, name: string, database?: string): Promise<boolean> {
  const res = await client.query(
    'SELECT 1 FROM pg_catalog.pg_subscription WHERE subname = $1 AND subdbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = coalesce($2, current_database()))',
    [name, database ?? null],
  );
  return (res.rowCount ?? 0) > 0;
}

export async function enableSubscription(destination: Client, name: string): Promise<void> {
  await destination.query(`ALTER SUBSCRIPTION ${ident(name)} ENABLE`);
}

export interface ReplicationObjects {
  readonly publication: boolean;
  readonly slot: boolean;
  /** The slot is in use by a walsender (the subscription's apply worker is connected). */
  readonly slotActive: boolean;
  readonly subscription: boolean;
}

/** Which of the objects named `name` exist (source database and server, destination database). */
export async function readReplicationObjects(source: Client, destination: Client | undefined, name: string): Promise<ReplicationObjects> {
  const [pub, slot, sub] = await Promise.all([
    source.query('SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1', [name]),
    source.query<{ active: boolean }>('SELECT active FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [name]),
    destination ? subscriptionExists(destination, name) : Promise.resolve(false),
  ]);
  return { publication: (pub.rowCount ?? 0) > 0, slot: (slot.rowCount ?? 0) > 0, slotActive: slot.rows[0]?.active === true, subscription: sub };
}

/**
 * Drops the subscription without touching the source (its slot is dropped by {@link dropSlot}): disable, detach
 * the slot, drop. Returns whether there was one.
 */
export async function dropSubscription(destination: Client, name: string): Promise<boolean> {
  if (!await subscriptionExists(destination, name)) return false;
  await destination.query(`ALTER SUBSCRIPTION ${ident(name)} DISABLE`);
  await destination.query(`ALTER SUBSCRIPTION ${ident(name)} SET (slot_name = NONE)`);
  await destination.query(`DROP SUBSCRIPTION ${ident(name)}`);
  return true;
}

/**
 * Drops the slot on the source server. A walsender still using it (an apply worker that has not noticed the
 * subscription is gone) is ended first. Returns whether there was one.
 */
export async function dropSlot(source: Client, name: string, waitMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const res = await source.query<{ active_pid: number | null }>('SELECT active_pid FROM pg_catalog.pg_replication_slots WHERE slot_name = $1', [name]);
    if (!res.rowCount) return false;
    const pid = res.rows[0].active_pid;
    if (pid === null) {
      try {
        await source.query('SELECT pg_catalog.pg_drop_replication_slot($1)', [name]);
        return true;
      } catch (err) {
        // Taken by a walsender between the two statements (55006: object in use): try again.
        if ((err as { code?: string }).code !== '55006' || Date.now() > deadline) throw err;
      }
    } else {
      if (Date.now() > deadline) throw new Error(`replication slot ${name} is still in use by process ${pid}`);
      await source.query('SELECT pg_catalog.pg_terminate_backend($1)', [pid]);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function dropPublication(source: Client, name: string): Promise<boolean> {
  const res = await source.query('SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1', [name]);
  if (!res.rowCount) return false;
  await source.query(`DROP PUBLICATION ${ident(name)}`);
  return true;
}

/**
 * Removes every replication object named `name`: subscription (destination), slot and publication (source).
 * `destination` may be undefined when the destination database does not exist. Returns what was removed, as
 * "subscription x" / "replication slot x" / "publication x".
 */
export async function dropReplication(source: Client, destination: Client | undefined, name: string): Promise<string[]> {
  return [...await dropDestinationObjects(destination, name), ...await dropSourceObjects(source, name)];
}

/** The destination's part of dropReplication: the subscription (none when the database does not exist). */
export async function dropDestinationObjects(destination: Client | undefined, name: string): Promise<string[]> {
  return destination && await dropSubscription(destination, name) ? [`subscription ${name} (destination)`] : [];
}

/** The source's part of dropReplication: the slot, then the publication. */
export async function dropSourceObjects(source: Client, name: string): Promise<string[]> {
  const removed: string[] = [];
  if (await dropSlot(source, name)) removed.push(`replication slot ${name} (source)`);
  if (await dropPublication(source, name)) removed.push(`publication ${name} (source)`);
  return removed;
}
