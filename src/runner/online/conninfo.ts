/**
 * The connection string the destination server uses to reach the source (CREATE SUBSCRIPTION ... CONNECTION).
 * PostgreSQL keeps it in pg_subscription (readable by superusers only) until the cutover drops the subscription;
 * it is never logged: messages use {@link describeConninfo}.
 */
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { passwordFor } from '../postgres/connection';

/** A libpq keyword/value string, each value single-quoted with ' and \ escaped. */
export function subscriptionConninfo(ep: ResolvedEndpoint, env: NodeJS.ProcessEnv): string {
  const pairs: Array<[string, string]> = [
    ['host', ep.host], ['port', String(ep.port)], ['dbname', ep.database], ['user', ep.username],
    ['password', passwordFor(ep, env)], ['sslmode', ep.sslmode],
  ];
  return pairs.map(([k, v]) => `${k}='${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`).join(' ');
}

/** The same without the password, for messages. */
export function describeConninfo(ep: ResolvedEndpoint): string {
  return `host=${ep.host} port=${ep.port} dbname=${ep.database} user=${ep.username} sslmode=${ep.sslmode}`;
}
