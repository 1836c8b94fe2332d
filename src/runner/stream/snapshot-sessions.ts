/**
 * The stream engine's database sessions: source sessions are read only and see the exported snapshot,
 * destination sessions are set up the way pg_restore sets up its own (so COPY parses what the source
 * printed). Closing never waits long on a server that stopped answering.
 */
import type { Client } from 'pg';
import { escapeLiteral } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';

/** Settings both sides share, as pg_dump and pg_restore use them: unambiguous text output and input. */
const COMMON_SETTINGS = [
  "SET DateStyle = 'ISO'",
  "SET IntervalStyle = 'postgres'",
  "SET TimeZone = 'UTC'",
  'SET extra_float_digits = 3', // exact floats from servers older than 12 too
  'SET statement_timeout = 0',
  'SET lock_timeout = 0',
  'SET idle_in_transaction_session_timeout = 0',
];

export interface SessionOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly connectTimeoutSeconds: number;
}

/** Opens a read-only source session and starts a REPEATABLE READ transaction on `snapshot`. */
export async function openSnapshotReader(ep: ResolvedEndpoint, snapshot: string, opts: SessionOptions): Promise<Client> {
  const client = await connect(ep, opts.env, { readOnly: true, connectTimeoutSeconds: opts.connectTimeoutSeconds });
  try {
    await client.query(COMMON_SETTINGS.join('; '));
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    // SET TRANSACTION SNAPSHOT takes no parameters; the id is quoted as a literal.
    await client.query(`SET TRANSACTION SNAPSHOT ${escapeLiteral(snapshot)}`);
    return client;
  } catch (err) {
    await closeClient(client);
    throw err;
  }
}

/** Opens a destination session for COPY, setval and ANALYZE. */
export async function openWriter(ep: ResolvedEndpoint, opts: SessionOptions): Promise<Client> {
  const client = await connect(ep, opts.env, { readOnly: false, connectTimeoutSeconds: opts.connectTimeoutSeconds });
  try {
    await client.query([
      ...COMMON_SETTINGS,
      // pg_restore's data sessions run with an empty search_path; check constraints and domains then
      // behave exactly as in a dump-mode restore.
      "SELECT pg_catalog.set_config('search_path', '', false)",
      // Durability of each COPY is not needed before the run ends: a destination crash fails the run anyway.
      'SET synchronous_commit = off',
    ].join('; '));
    return client;
  } catch (err) {
    await closeClient(client);
    throw err;
  }
}

/**
 * Ends a session, also in the middle of a COPY. A polite Terminate first; if the server does not close the
 * connection within `graceMs`, the socket is destroyed (the backend then exits and its transaction rolls back).
 */
export async function closeClient(client: Client, graceMs = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), graceMs); });
  const ended = client.end().then(() => 'ended' as const, () => 'ended' as const);
  const outcome = await Promise.race([ended, timedOut]);
  if (timer) clearTimeout(timer);
  if (outcome === 'timeout') socketOf(client)?.destroy();
}

/** Destroys the socket right away (abort path: no Terminate round trip behind a COPY in flight). */
export function destroyClient(client: Client): void {
  socketOf(client)?.destroy();
}

function socketOf(client: Client): { destroy(): void } | undefined {
  // node-postgres keeps the socket on the (untyped) connection; there is no public destroy().
  return (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream;
}
