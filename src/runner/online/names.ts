/**
 * Names of online mode's replication objects, predictable from the spec: the publication (source database), the
 * logical replication slot (source server, so it carries the database's name) and the subscription (destination
 * database) all share one name, `dbm_<migration>_<database>`, so an operator can find and remove them by hand.
 */
import { createHash } from 'node:crypto';

/** PostgreSQL's identifier limit (NAMEDATALEN - 1); slot names also allow only [a-z0-9_]. */
const MAX_NAME = 63;

/** The name of the publication, slot and subscription of one database of one migration. */
export function replicationName(migration: string, database: string): string {
  const base = `dbm_${migration}_${database}`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
  if (base.length <= MAX_NAME) return base;
  // Too long: a prefix and a hash of the whole, so two long names never collide.
  const hash = createHash('sha256').update(`${migration}\0${database}`).digest('hex').slice(0, 10);
  return `${base.slice(0, MAX_NAME - hash.length - 1)}_${hash}`;
}

/** Every name this migration's objects may carry on a server (one per database), for leftover checks. */
export const REPLICATION_PREFIX = 'dbm_';
