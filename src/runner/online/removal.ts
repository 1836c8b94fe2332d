/**
 * Removing a database's replication objects after its migration failed, when one of the servers may not answer
 * (the destination stopped while its slot was invalidated, say): what can be removed is removed at once, the rest
 * as soon as its server answers again, for a bounded time, with a line every progress interval saying what waits.
 */
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { classifyError, errorClause } from '../postgres/errors';
import { formatDuration } from '../report/progress';
import { sleep } from '../postgres/retry';
import { replicationName } from './names';
import type { OnlineLog } from './online-log';
import { removeFromDestination, removeFromSource, removeReplication } from './setup';

export interface PatientRemoval {
  readonly log: OnlineLog;
  readonly intervalMs: number;
  /** How long to wait for a server that does not answer. */
  readonly limitMs: number;
  /** Aborting ends the wait after one more attempt. */
  readonly signal?: AbortSignal;
}

const RETRY_MS = 5000;

/** Removes subscription, slot and publication; returns what it removed. Throws with the SQL to run by hand when a server never answered. */
export async function removeReplicationPatiently(db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, o: PatientRemoval): Promise<string[]> {
  try {
    return await removeReplication(db, config, env);
  } catch (err) {
    if (!classifyError(err).transient) throw err;
  }
  const name = replicationName(config.name, db.name);
  const sides = {
    destination: () => removeFromDestination(db, config, env),
    source: () => removeFromSource(db, config, env),
  };
  const removed: string[] = [];
  const pending = new Set(Object.keys(sides) as (keyof typeof sides)[]);
  const deadline = Date.now() + o.limitMs;
  let lastLine = 0;
  for (;;) {
    let why = '';
    for (const side of [...pending]) {
      try {
        removed.push(...await sides[side]());
        pending.delete(side);
      } catch (err) {
        if (!classifyError(err).transient) throw err;
        why = `${side}: ${errorClause(err)}`;
      }
    }
    if (pending.size === 0) return removed;
    const left = [...pending].map((s) => (s === 'destination' ? `subscription ${name} on the destination` : `slot and publication ${name} on the source`));
    if (o.signal?.aborted || Date.now() >= deadline) {
      throw new Error(`could not remove ${left.join(' and ')} (${why})${removed.length ? `; removed ${removed.join(', ')}` : ''}: `
        + 'run `db-migration migrate --cleanup` once the server answers (or drop them by hand)');
    }
    if (Date.now() - lastLine >= o.intervalMs) {
      lastLine = Date.now();
      o.log('warn', `${removed.length ? `removed ${removed.join(', ')}; ` : ''}${left.join(' and ')} waits for its server to answer (${why}); `
        + `trying every ${RETRY_MS / 1000}s for up to ${formatDuration((deadline - Date.now()) / 1000)}`);
    }
    await sleep(RETRY_MS, o.signal).catch(() => undefined);
  }
}
