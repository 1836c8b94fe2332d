/**
 * Online mode's sessions. The source "admin" session is the runner's only read-write session on the source: it
 * creates and drops the publication and slot and sets the fence; it turns off default_transaction_read_only for
 * itself, so it still works once the fence has made the database read-only.
 */
import type { Client } from 'pg';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { connect } from '../postgres/connection';

export async function openSourceAdmin(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number): Promise<Client> {
  const client = await connect(ep, env, { readOnly: false, connectTimeoutSeconds, applicationName: 'db-migration online' });
  await client.query('SET default_transaction_read_only = off; SET statement_timeout = 0; SET lock_timeout = 0; SET idle_in_transaction_session_timeout = 0');
  return client;
}

/** A destination session for the subscription and the cutover's writes. */
export async function openDestinationAdmin(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv, connectTimeoutSeconds: number): Promise<Client> {
  const client = await connect(ep, env, { readOnly: false, connectTimeoutSeconds, applicationName: 'db-migration online' });
  await client.query('SET statement_timeout = 0; SET lock_timeout = 0');
  return client;
}

export { endQuietly } from '../postgres/connection';
