/**
 * Reads on the source in a snapshot exported by another session (the dump's or the stream's), so what is read
 * is exactly what was copied. Dump mode reads the source side of verify with it, stream mode the checksums,
 * and online mode its own reads.
 */
import type { Client } from 'pg';
import type { RuntimeConfig, RuntimeDatabase } from '../../spec/runtime-config';
import { tableChecksums, withSnapshot, type TableChecksum } from '../checks/checksum';
import { connect } from '../postgres/connection';
import { cancelRunningQuery } from '../checks/verification';

/** Checksums of the source tables verify compares (its schema selection), read in `snapshot` (see inSourceSnapshot). */
export async function checksumsInSnapshot(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, snapshot: string, stop: AbortSignal,
): Promise<Map<string, TableChecksum>> {
  const m = config.migration;
  return inSourceSnapshot(db, config, env, snapshot, stop, 'db-migration checksums',
    (client) => tableChecksums(client, { schemas: m.dump.schemas, excludeSchemas: m.dump.excludeSchemas }));
}

/**
 * Runs `read` on a source session of its own that imports `snapshot`. Aborting `stop` cancels the running
 * query and ends the session.
 */
export async function inSourceSnapshot<T>(
  db: RuntimeDatabase, config: RuntimeConfig, env: NodeJS.ProcessEnv, snapshot: string, stop: AbortSignal, applicationName: string,
  read: (client: Client) => Promise<T>,
): Promise<T> {
  const client = await connect(db.source, env, { readOnly: true, connectTimeoutSeconds: config.migration.timeouts.connect, applicationName });
  let stopping: Promise<void> | undefined;
  const onStop = () => {
    stopping = cancelRunningQuery(client, db.source).then(() => client.end()).catch(() => undefined);
  };
  if (stop.aborted) onStop(); else stop.addEventListener('abort', onStop, { once: true });
  try {
    if (stop.aborted) throw new Error('stopped');
    await client.query('SET statement_timeout = 0');
    return await withSnapshot(client, snapshot, () => read(client));
  } finally {
    stop.removeEventListener('abort', onStop);
    if (stopping) await stopping;
    await client.end().catch(() => undefined);
  }
}
