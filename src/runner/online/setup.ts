/**
 * Folder online/: the engine of online mode: logical replication (publication, slot, subscription; this file
 * starts them), its health (slot blockers, slot WAL, apply), the run-wide coordinator and the operator's cutover
 * command (control.ts), the cutover's steps and the fence. Imports stream/ (the initial copy), checks/, postgres/,
 * report/; imported by phases/, checks/preflight (its pre-flight) and main.ts (--cleanup).
 *
 * Online mode's start for one database: publication, slot (its snapshot read by stream mode's parallel COPY),
 * then the subscription bound to the slot. Whatever it created is dropped again if it fails.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import type { StreamResult } from '../stream';
import { subscriptionConninfo } from './conninfo';
import { replicationName } from './names';
import {
  createPublication, createSlotWithSnapshot, createSubscription, dropDestinationObjects, dropReplication, dropSourceObjects, enableSubscription,
  readReplicationObjects,
} from './replication';
import { endQuietly, openDestinationAdmin, openSourceAdmin } from './admin-sessions';
import { watchSlotCreation } from './slot-wait';
import type { OnlineLog } from './online-log';
import { planPublication, type PublicationPlan } from './tables';

export interface ReplicationStart {
  readonly name: string;
  readonly plan: PublicationPlan;
  /** The slot's consistent point: replication starts here, the copy read the state just before it. */
  readonly startLsn: string;
  readonly copy: StreamResult;
}

export interface StartOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly log: OnlineLog;
  /** The initial copy (stream mode) in the given exported snapshot. */
  readonly copy: (snapshot: string) => Promise<StreamResult>;
  /** While the slot's creation waits, a line naming what it waits for at least this often. */
  readonly progressIntervalMs: number;
  /** Stops the wait for the slot (the creation is cancelled). @default - never */
  readonly signal?: AbortSignal;
}

/** Removes this database's replication objects; returns what it removed. Never throws for a missing destination database. */
export async function removeReplication(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const source = await openSourceAdmin(db.source, env, config.migration.timeouts.connect);
  const destination = await openDestinationIfExists(db, config, env).catch(async (err: unknown) => {
    await endQuietly(source);
    throw err;
  });
  try {
    return await dropReplication(source, destination, replicationName(config.name, db.name));
  } finally {
    await endQuietly(source, destination);
  }
}

/** removeReplication's destination side alone (the subscription), for when the source does not answer. */
export async function removeFromDestination(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const destination = await openDestinationIfExists(db, config, env);
  try {
    return await dropDestinationObjects(destination, replicationName(config.name, db.name));
  } finally {
    await endQuietly(destination);
  }
}

/** removeReplication's source side alone (slot and publication), for when the destination does not answer. */
export async function removeFromSource(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const source = await openSourceAdmin(db.source, env, config.migration.timeouts.connect);
  try {
    return await dropSourceObjects(source, replicationName(config.name, db.name));
  } finally {
    await endQuietly(source);
  }
}

/** The destination database's admin session; undefined when the database does not exist (nothing to remove there). */
async function openDestinationIfExists(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv): Promise<Client | undefined> {
  return openDestinationAdmin(db.destination, env, config.migration.timeouts.connect).catch((err: { code?: string }) => {
    if (err.code === '3D000') return undefined;
    throw err;
  });
}

export async function startReplication(db: RuntimeDatabase, config: RuntimeConfig, opts: StartOptions): Promise<ReplicationStart> {
  const { env, log } = opts;
  const name = replicationName(config.name, db.name);
  const t = config.migration.timeouts.connect;
  const leftovers = await removeReplication(db, config, env);
  if (leftovers.length) log('warn', `removed what an earlier attempt left before starting again: ${leftovers.join(', ')}`);
  const admin = await openSourceAdmin(db.source, env, t);
  let created = false;
  try {
    const plan = await planPublication(admin, config);
    await createPublication(admin, name, plan.replicated);
    created = true;
    const slot = await createSlotWithSnapshot(db.source, env, name, t, (pid, started, creating) => watchSlotCreation(pid, started, creating, {
      admin, name, log, intervalMs: opts.progressIntervalMs, limitSeconds: config.migration.online.slotWaitSeconds, signal: opts.signal,
    }));
    log('info', `publication and logical replication slot ${name} created on the source (${plan.replicated.length} tables published`
      + `${plan.atCutover.length ? `, ${plan.atCutover.length} copied at cutover` : ''}); replication starts at LSN ${slot.lsn}, `
      + `the copy reads the slot's snapshot ${slot.snapshot}`);
    let copy: StreamResult;
    try {
      copy = await opts.copy(slot.snapshot);
    } finally {
      await slot.close();
    }
    const destination = await openDestinationAdmin(db.destination, env, t);
    try {
      await createSubscription(destination, name, subscriptionConninfo(db.source, env));
      await enableSubscription(destination, name);
    } finally {
      await endQuietly(destination);
    }
    log('info', `subscription ${name} created on the destination, bound to the slot: replication from LSN ${slot.lsn} runs`);
    return { name, plan, startLsn: slot.lsn, copy };
  } catch (err) {
    if (created) {
      const removed = await removeReplication(db, config, env).catch((e: Error) => [`(cleanup failed: ${e.message})`]);
      log('info', `removed what this attempt created: ${removed.join(', ') || 'nothing'}`);
    }
    throw err;
  } finally {
    await endQuietly(admin);
  }
}

/** Whether a run can pick up replication an earlier attempt left running: slot, publication and subscription all exist. */
export async function replicationExists(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv): Promise<boolean> {
  const name = replicationName(config.name, db.name);
  const t = config.migration.timeouts.connect;
  const source: Client = await openSourceAdmin(db.source, env, t);
  const destination = await openDestinationAdmin(db.destination, env, t).catch(() => undefined);
  try {
    const o = await readReplicationObjects(source, destination, name);
    return o.publication && o.slot && o.subscription;
  } finally {
    await endQuietly(source, destination);
  }
}
