/**
 * Large object contents. The schema archive's pre-data creates each large object (empty, with its owner,
 * ACL and comment), exactly as pg_restore does; this fills them from the snapshot in bounded chunks
 * (lo_get on the source, lo_put on the destination), since their data is not reachable with COPY.
 */
import type { Client } from 'pg';

/** Bytes per round trip; one chunk is in memory at a time. */
export const LARGE_OBJECT_CHUNK = 1024 * 1024;

export interface LargeObjectCopyOptions {
  readonly signal: AbortSignal;
  readonly onBytes?: (n: number) => void;
}

/** Copies the contents of the given large objects; returns the bytes copied. */
export async function copyLargeObjects(source: Client, destination: Client, oids: readonly number[], opts: LargeObjectCopyOptions): Promise<number> {
  let total = 0;
  for (const oid of oids) {
    await destination.query('BEGIN');
    for (let offset = 0; ; offset += LARGE_OBJECT_CHUNK) {
      opts.signal.throwIfAborted();
      const res = await source.query<{ data: Buffer }>('SELECT pg_catalog.lo_get($1::oid, $2::int8, $3::int4) AS data', [oid, offset, LARGE_OBJECT_CHUNK]);
      const data = res.rows[0].data;
      if (data.length > 0) {
        await destination.query('SELECT pg_catalog.lo_put($1::oid, $2::int8, $3::bytea)', [oid, offset, data]);
        total += data.length;
        opts.onBytes?.(data.length);
      }
      if (data.length < LARGE_OBJECT_CHUNK) break;
    }
    await destination.query('COMMIT');
  }
  return total;
}
