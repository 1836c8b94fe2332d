/**
 * Helpers for the replication fault tests (test/online-*-faults.test.ts): which of a migration's replication objects
 * exist on either server, the data of two databases compared (materialized views left out: refreshed at cutover,
 * not replicated), the runner's JSON log lines, and sessions a test holds open on purpose.
 */
import { Client } from 'pg';
import { expect } from 'vitest';
import { fingerprint, type DatabaseFingerprint } from './compare';
import type { PgServer } from './pg-server';

/** Our replication objects that exist: slot (source server), publication (source database), subscription (destination server). */
export async function replicationObjects(source: PgServer, destination: PgServer, srcDb: string, name: string): Promise<string[]> {
  const [slots, pubs, subs] = await Promise.all([
    source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name = '${name}'`),
    source.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_publication WHERE pubname = '${name}'`, srcDb),
    // pg_subscription is a shared catalog: this sees the subscriptions of every destination database.
    destination.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_subscription WHERE subname = '${name}'`),
  ]);
  return [...(slots[0].n ? ['slot'] : []), ...(pubs[0].n ? ['publication'] : []), ...(subs[0].n ? ['subscription'] : [])];
}

/** Tables (materialized views left out: they are refreshed at cutover, not replicated) and sequences. */
export async function replicatedContents(server: PgServer, database: string): Promise<DatabaseFingerprint> {
  const fp = await fingerprint(server, database);
  const matviews = await server.query<{ n: string }>("SELECT format('%I.%I', schemaname, matviewname) AS n FROM pg_matviews", database);
  const tables = { ...fp.tables };
  for (const { n } of matviews) delete tables[n];
  return { tables, sequences: fp.sequences };
}

/** Every table and sequence of `dst` equals `src`'s. */
export async function expectSameData(source: PgServer, src: string, destination: PgServer, dst: string): Promise<void> {
  const [a, b] = await Promise.all([replicatedContents(source, src), replicatedContents(destination, dst)]);
  expect(Object.keys(a.tables).length).toBeGreaterThan(0);
  expect(b.tables).toEqual(a.tables);
  expect(b.sequences).toEqual(a.sequences);
}

/** The runner's JSON log lines (migration.logFormat: json) in `text`. */
export function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A superuser session on `database` with an application name, tracked in `track` (errors after it is ended are ignored). */
export async function session(server: PgServer, database: string, applicationName: string, track: Client[]): Promise<Client> {
  const c = new Client({ host: server.host, port: server.port, user: server.superuser, password: server.superPassword, database, application_name: applicationName });
  c.on('error', () => undefined);
  await c.connect();
  track.push(c);
  return c;
}

/** A session left idle in a transaction that holds a transaction id (it wrote a row); returns its pid. */
export async function idleInTransaction(server: PgServer, database: string, track: Client[]): Promise<number> {
  const c = await session(server, database, 'forgotten-pool', track);
  await c.query('BEGIN');
  await c.query('INSERT INTO public.scratch (note) VALUES (\'held\')');
  const [{ pid }] = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
  return pid;
}

/** A prepared transaction (it wrote a row) named `gid` in `database`. */
export async function preparedTransaction(server: PgServer, database: string, gid: string): Promise<void> {
  await server.query(`BEGIN; INSERT INTO public.scratch (note) VALUES ('prepared'); PREPARE TRANSACTION '${gid}'`, database);
}

/** Polls `check` every 100 ms until it is true, failing after `timeoutMs` with `what`. */
export async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs}ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
