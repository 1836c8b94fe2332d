/** Collects problems for one side of one database, and connects with the failures turned into problems. */
import type { Client } from 'pg';
import type { ResolvedEndpoint, Side } from '../../../spec/runtime-config';
import { connect, describeEndpoint } from '../../postgres/connection';
import { classifyError, errorClause } from '../../postgres/errors';
import { quoteIdent } from '../../postgres/sql';
import type { PreflightCheck, PreflightProblem } from './preflight-types';

export class Reporter {
  readonly problems: PreflightProblem[] = [];
  readonly endpoint: string;

  constructor(readonly database: string, readonly server: Side, readonly ep: ResolvedEndpoint) {
    this.endpoint = describeEndpoint(ep);
  }

  error(check: PreflightCheck, message: string, fix?: string): void {
    this.add('error', check, message, fix);
  }

  warning(check: PreflightCheck, message: string, fix?: string): void {
    this.add('warning', check, message, fix);
  }

  private add(severity: PreflightProblem['severity'], check: PreflightCheck, message: string, fix?: string): void {
    this.problems.push({
      database: this.database, server: this.server, endpoint: this.endpoint, check, message,
      ...(fix ? { fix } : {}), severity,
    });
  }
}

export interface ConnectAttempt {
  readonly client?: Client;
  readonly error?: unknown;
  /** The database does not exist (SQLSTATE 3D000). */
  readonly missingDatabase?: boolean;
}

/**
 * Connects; on failure records why (password variable missing, CONNECT missing, refused, authentication...)
 * unless the database is missing and `allowMissingDatabase` (the destination may be created).
 */
export async function connectOrReport(
  r: Reporter,
  ep: ResolvedEndpoint,
  env: NodeJS.ProcessEnv,
  opts: { readOnly: boolean; connectTimeoutSeconds: number; allowMissingDatabase?: boolean },
): Promise<ConnectAttempt> {
  if (!env[ep.passwordEnv]) {
    r.error('password', `environment variable ${ep.passwordEnv} is not set: the Job maps it from the Secret named in the spec`);
    return { error: new Error('password missing') };
  }
  try {
    const client = await connect(ep, env, { readOnly: opts.readOnly, connectTimeoutSeconds: opts.connectTimeoutSeconds, applicationName: 'db-migration preflight' });
    return { client };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === '3D000') {
      if (!opts.allowMissingDatabase) r.error('connect', `database ${quoteIdent(ep.database)} does not exist`);
      return { error, missingDatabase: true };
    }
    if (code === '42501' && /database/i.test(String((error as Error).message))) {
      r.error('connect-privilege', `user ${quoteIdent(ep.username)} has no CONNECT privilege on database ${quoteIdent(ep.database)}`,
        `GRANT CONNECT ON DATABASE ${quoteIdent(ep.database)} TO ${quoteIdent(ep.username)};`);
      return { error };
    }
    const { reason } = classifyError(error);
    const pwHint = reason === 'password authentication failed' ? ` (password from ${ep.passwordEnv})` : '';
    r.error('connect', `cannot connect within ${opts.connectTimeoutSeconds}s: ${errorClause(error)}${pwHint}`);
    return { error };
  }
}

export { endQuietly } from '../../postgres/connection';

/** Names capped for a message: "a, b, c and 12 more". */
export function capList(names: readonly string[], cap = 10): string {
  if (names.length <= cap) return names.join(', ');
  return `${names.slice(0, cap).join(', ')} and ${names.length - cap} more`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
