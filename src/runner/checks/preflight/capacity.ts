/** Room for the dump on the dumps volume, and free connection slots for the parallel workers. */
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Client } from 'pg';
import { quoteIdent } from '../../postgres/sql';
import { connectionSlots } from './catalog-queries';
import type { Reporter } from './reporter';

/**
 * Checks the server has `need` free slots for this user and database once this check disconnects.
 * `why` names the setting that decides the need, e.g. "dump.jobs 2 + 1".
 */
export async function checkConnectionSlots(
  client: Client, r: Reporter, need: number, why: string, opts: { databaseLimits: boolean },
): Promise<void> {
  const s = await connectionSlots(client);
  const others = s.inUse - 1; // this check's own session ends before the work starts
  const serverFree = s.maxConnections - s.reservedForOthers - others;
  const whom = quoteIdent(r.ep.username);
  if (serverFree < need) {
    r.error('connections',
      `needs ${need} connections (${why}) but the server has ${Math.max(0, serverFree)} free `
      + `(max_connections ${s.maxConnections}, ${s.reservedForOthers} reserved, ${others} in use): `
      + 'lower the parallel jobs, wait for other clients to disconnect, or raise max_connections');
  }
  if (!s.isSuperuser && s.roleLimit >= 0) {
    const free = s.roleLimit - (s.roleInUse - 1);
    if (free < need) {
      r.error('connections',
        `needs ${need} connections (${why}) but role ${whom} has a connection limit of ${s.roleLimit} `
        + `with ${s.roleInUse - 1} in use`,
        `ALTER ROLE ${whom} CONNECTION LIMIT ${s.roleInUse - 1 + need};`);
    }
  }
  if (opts.databaseLimits && !s.isSuperuser && s.databaseLimit >= 0) {
    const free = s.databaseLimit - (s.databaseInUse - 1);
    if (free < need) {
      r.error('connections',
        `needs ${need} connections (${why}) but database ${quoteIdent(r.ep.database)} has a connection limit of `
        + `${s.databaseLimit} with ${s.databaseInUse - 1} in use`,
        `ALTER DATABASE ${quoteIdent(r.ep.database)} CONNECTION LIMIT ${s.databaseInUse - 1 + need};`);
    }
  }
}

/** Free bytes for an unprivileged writer on the file system holding `path` (or its nearest existing parent). */
export async function freeBytes(path: string): Promise<number> {
  let p = path;
  for (;;) {
    try {
      const st = await statfs(p);
      return st.bavail * st.bsize;
    } catch (err) {
      const parent = dirname(p);
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === p) throw err;
      p = parent;
    }
  }
}

/**
 * The dump must fit in the smaller of the free space on the dumps volume and its size limit (the emptyDir
 * sizeLimit: exceeding it gets the pod evicted even when the node has room).
 */
export async function checkDiskSpace(
  r: Reporter, sourceSizeBytes: number, dumps: { path: string; limitBytes: number; compression: number },
): Promise<number> {
  const free = await freeBytes(dumps.path);
  const room = Math.min(free, dumps.limitBytes);
  const estimate = sourceSizeBytes;
  if (estimate > room) {
    const limitedBy = dumps.limitBytes <= free
      ? `job.storage.dumps limit ${formatBytes(dumps.limitBytes)}`
      : `${formatBytes(free)} free on ${dumps.path}`;
    const message = `the dump needs about ${formatBytes(estimate)} (the source database size`
      + `${dumps.compression === 0 ? ', dump.compression 0' : ''}) but only ${formatBytes(room)} is available (${limitedBy}): `
      + `raise job.storage.dumps to at least ${formatBytes(Math.ceil(estimate * 1.2))}`
      + (dumps.compression === 0 ? ' or set dump.compression' : '');
    // A compressed dump is usually far smaller than the database, so only warn then.
    if (dumps.compression === 0) r.error('disk-space', message);
    else r.warning('disk-space', message);
  }
  return estimate;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
