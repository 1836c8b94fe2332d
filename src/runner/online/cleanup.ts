/**
 * `migrate --cleanup` (and `migration.cleanup: true` in the Job): instead of migrating, removes every replication
 * object an earlier online attempt left (subscription on the destination, slot and publication on the source),
 * database by database, and says what it removed. Nothing else is touched (a fence is lifted only by the SQL the
 * summary printed: a source left read-only after a successful cutover is meant to stay so).
 */
import type { RuntimeConfig } from '../../spec/runtime-config';
import { configureNetwork, releaseNetwork } from '../postgres/connection';
import { humanError } from '../postgres/errors';
import type { Logger } from '../report/log';
import { replicationName } from './names';
import { removeReplication } from './setup';

/** Returns true when every database could be cleaned. */
export async function cleanupReplication(config: RuntimeConfig, env: NodeJS.ProcessEnv, logger: Logger): Promise<boolean> {
  configureNetwork(config.migration.timeouts.network, config.paths.tmp);
  const log = logger.child({ phase: 'cleanup' });
  let ok = true;
  try {
    for (const db of config.databases.filter((d) => d.enabled)) {
      const l = log.child({ database: db.name });
      try {
        const removed = await removeReplication(db, config, env);
        if (removed.length) l.ok(`removed ${removed.join(', ')}`);
        else l.ok(`nothing to remove: no publication, slot or subscription named ${replicationName(config.name, db.name)}`);
      } catch (err) {
        ok = false;
        l.error(`cannot remove the replication objects ${replicationName(config.name, db.name)}: ${humanError(err)}`);
      }
    }
  } finally {
    releaseNetwork();
  }
  return ok;
}
