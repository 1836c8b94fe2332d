/**
 * What went wrong, and whether trying again can help. Works on node-postgres errors (SQLSTATE codes), Node
 * socket errors (errno codes) and the stderr text of pg_dump / pg_restore / psql (libpq messages), so the
 * retry logic and the messages people read agree whichever way a phase failed.
 */

export interface ErrorClass {
  /** True when retrying the same step later can succeed (server starting, network blip, slots full). */
  readonly transient: boolean;
  /** Short cause, e.g. "connection refused" or "password authentication failed". */
  readonly reason: string;
}

interface Rule {
  readonly transient: boolean;
  readonly reason: string;
  /** What to do about it: the second half of {@link humanError}'s sentence. */
  readonly advice: string;
  readonly sqlstate?: RegExp;
  readonly errno?: readonly string[];
  readonly text?: RegExp;
}

/**
 * Ordered: the first rule that matches wins, and permanent causes come before transient ones, because libpq
 * output can mention both (e.g. "::1 refused, 127.0.0.1 password authentication failed").
 */
const RULES: readonly Rule[] = [
  {
    transient: false, reason: 'password authentication failed', sqlstate: /^28P01$/,
    text: /password authentication failed|authentication failed for user/i,
    advice: 'check the password in the Secret the spec names and that the role exists with that password',
  },
  {
    transient: false, reason: 'connection not allowed by pg_hba.conf', sqlstate: /^28000$/,
    text: /no pg_hba\.conf entry|invalid authorization specification/i,
    advice: 'allow this client in the server\'s pg_hba.conf (or its managed-service firewall) for this user and database',
  },
  {
    transient: false, reason: 'role does not exist', text: /role "[^"]*" does not exist/i,
    advice: 'create the role on that server or fix the username in the spec',
  },
  {
    transient: false, reason: 'database does not exist', sqlstate: /^3D000$/, text: /database "[^"]*" does not exist/i,
    advice: 'create the database or fix the database name in the spec',
  },
  {
    transient: false, reason: 'insufficient privilege', sqlstate: /^42501$/, text: /permission denied|must be owner of|must be superuser/i,
    advice: 'grant the missing privilege to the migration user (the pre-flight report gives the exact GRANT)',
  },
  {
    transient: false, reason: 'object does not exist', sqlstate: /^(42P01|42704|3F000|42883)$/,
    text: /(relation|schema|type|function) "?[^"\n]*"? does not exist/i,
    advice: 'the object is missing on that server: check the schema filters and that the source matches what the spec expects',
  },
  {
    transient: false, reason: 'host name does not resolve', errno: ['ENOTFOUND'],
    text: /could not translate host name .*(Name or service not known|nodename nor servname)|getaddrinfo ENOTFOUND/i,
    advice: 'check the host in the spec: the name does not exist in DNS as seen from the Job (use the full service name, e.g. db.namespace.svc.cluster.local)',
  },
  {
    transient: false, reason: 'server does not support TLS',
    text: /server does not support SSL|SSL was required|does not support SSL connections/i,
    advice: 'the server does not offer TLS: enable ssl on the server, or set sslmode to prefer or disable in the spec',
  },
  {
    transient: false, reason: 'TLS certificate rejected',
    errno: ['DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'],
    text: /certificate verify failed|self[- ]signed certificate|does not match host name|Hostname\/IP does not match|certificate has expired|unable to verify the first certificate/i,
    advice: 'give the CA that signed the server certificate in caCert (and for verify-full connect with a host name the certificate names)',
  },
  {
    transient: false, reason: 'client tools older than the server',
    text: /server version mismatch|aborting because of server version mismatch|unsupported version .* in file header/i,
    advice: 'use an image with PostgreSQL client tools at least as new as the source server',
  },
  {
    transient: false, reason: 'out of disk space', sqlstate: /^53100$/, errno: ['ENOSPC'], text: /No space left on device|could not extend file/i,
    advice: 'give the dumps volume (job.storage.dumps) or the destination server more space',
  },
  // Transient from here on.
  {
    transient: true, reason: 'too many connections', sqlstate: /^53300$/,
    text: /too many clients already|remaining connection slots are reserved|too many connections for (role|database)/i,
    advice: 'the server has no free connection slots; lower dump/restore jobs or wait for other clients to disconnect',
  },
  {
    transient: true, reason: 'server is starting up', sqlstate: /^57P03$/,
    text: /database system is (starting up|in recovery mode|not yet accepting connections|not accepting connections)/i,
    advice: 'the server is starting or recovering; it is retried, and if it persists check the server',
  },
  {
    transient: true, reason: 'server shut down the session', sqlstate: /^57P0[12]$/,
    text: /terminating connection due to administrator command|database system is shutting down|terminating connection because of crash/i,
    advice: 'the server was restarted or the session was terminated; it is retried',
  },
  {
    transient: true, reason: 'lock not available', sqlstate: /^55P03$/, text: /could not obtain lock on relation|lock timeout/i,
    advice: 'another session holds a conflicting lock; it is retried, or raise dump.lockWaitTimeoutSeconds',
  },
  {
    transient: true, reason: 'serialization failure', sqlstate: /^(40001|40P01)$/,
    advice: 'a concurrent transaction conflicted; it is retried',
  },
  {
    transient: true, reason: 'connection refused', errno: ['ECONNREFUSED'], text: /Connection refused|ECONNREFUSED/i,
    advice: 'nothing accepts connections at that host and port: check the host and port in the spec and that the server is running',
  },
  {
    // A session that stopped getting answers (keepalive or tcp_user_timeout gave up, or tcp-watchdog.ts), not a connect.
    transient: true, reason: 'network timeout', errno: ['ENETWORKTIMEOUT'],
    text: /could not (receive|send) data from server: Connection timed out|read ETIMEDOUT|write ETIMEDOUT|network timeout: /i,
    advice: 'the network stopped carrying this connection (a partition, a node or firewall dropping packets) for migration.timeouts.network seconds; it is retried',
  },
  {
    transient: true, reason: 'connection timed out',
    text: /timeout expired|Connection timed out|ETIMEDOUT|connection timeout/i,
    advice: 'the server did not answer in time: check network policies and firewalls between the Job and the server, or raise migration.timeouts.connect',
  },
  {
    transient: true, reason: 'connection reset', errno: ['ECONNRESET', 'EPIPE'],
    text: /Connection reset by peer|ECONNRESET|server closed the connection unexpectedly|Connection terminated unexpectedly|encountered a connection error and is not queryable|could not receive data from server|could not send data to server|SSL SYSCALL error/i,
    advice: 'the connection dropped; it is retried',
  },
  {
    transient: true, reason: 'temporary DNS failure', errno: ['EAI_AGAIN'], text: /Temporary failure in name resolution|EAI_AGAIN/i,
    advice: 'DNS did not answer; it is retried, and if it persists check the cluster DNS',
  },
  {
    transient: true, reason: 'network unreachable', errno: ['EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN'],
    text: /No route to host|Network is unreachable|EHOSTUNREACH|ENETUNREACH/i,
    advice: 'no route to the server: check network policies and that the host is right',
  },
  {
    transient: true, reason: 'connection failure', sqlstate: /^08/,
    advice: 'the connection failed; it is retried',
  },
];

interface ErrorFacts {
  readonly sqlstate?: string;
  readonly errnos: readonly string[];
  readonly text: string;
  readonly headline: string;
}

/** Transient (retry may help) or permanent, with a short reason. */
export function classifyError(err: unknown): ErrorClass {
  const facts = factsOf(err);
  const rule = match(facts);
  if (rule) return { transient: rule.transient, reason: rule.reason };
  return { transient: false, reason: facts.sqlstate ? `SQLSTATE ${facts.sqlstate}` : 'unexpected error' };
}

/** One actionable sentence, no stack trace: what failed, and what to do about it. */
export function humanError(err: unknown): string {
  return `${capitalize(errorClause(err))}.`;
}

/** {@link humanError} as a clause to embed in a longer message: lower-case start, no final period. */
export function errorClause(err: unknown): string {
  const facts = factsOf(err);
  const rule = match(facts);
  const what = facts.headline || (rule ? rule.reason : 'unknown error');
  const sentence = (rule ? `${what.replace(/[.\s]+$/, '')}: ${rule.advice}` : what).replace(/[.\s]+$/, '');
  return /^[A-Z][a-z]/.test(sentence) ? sentence.charAt(0).toLowerCase() + sentence.slice(1) : sentence;
}

function match(facts: ErrorFacts): Rule | undefined {
  // A SQLSTATE is the most precise signal; then errno codes; then the text.
  if (facts.sqlstate) {
    const bySqlstate = RULES.find((r) => r.sqlstate?.test(facts.sqlstate!));
    if (bySqlstate) return bySqlstate;
  }
  const byErrno = RULES.find((r) => r.errno?.some((c) => facts.errnos.includes(c)));
  if (byErrno) return byErrno;
  return RULES.find((r) => r.text?.test(facts.text));
}

function factsOf(err: unknown): ErrorFacts {
  const texts: string[] = [];
  const errnos: string[] = [];
  let sqlstate: string | undefined;
  let headline = '';
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number) => {
    if (e === undefined || e === null || seen.has(e) || depth > 5) return;
    seen.add(e);
    if (typeof e === 'string') {
      texts.push(e);
      if (!headline) headline = headlineOf(e);
      return;
    }
    if (typeof e !== 'object') {
      texts.push(String(e));
      return;
    }
    const o = e as Record<string, unknown>;
    const code = typeof o.code === 'string' ? o.code : undefined;
    if (code && isSqlstate(code, o)) sqlstate ??= code;
    else if (code) errnos.push(code);
    // Output of a child process (pg_dump etc.) is usually more telling than the wrapper's message.
    if (typeof o.stderr === 'string' && o.stderr.trim()) {
      texts.push(o.stderr);
      if (!headline) headline = headlineOf(o.stderr);
    }
    if (typeof o.message === 'string' && o.message) {
      texts.push(o.message);
      if (!headline) headline = headlineOf(o.message);
    }
    if (typeof o.detail === 'string') texts.push(o.detail);
    if (Array.isArray(o.errors)) for (const inner of o.errors) visit(inner, depth + 1);
    visit(o.cause, depth + 1);
  };
  visit(err, 0);
  if (!headline && errnos.length > 0) headline = errnos[0];
  return { sqlstate, errnos, text: texts.join('\n'), headline };
}

/** SQLSTATEs are five characters of digits and upper-case letters; no class starts with E (errno codes do). */
function isSqlstate(code: string, o: Record<string, unknown>): boolean {
  return /^[0-9A-Z]{5}$/.test(code) && (!code.startsWith('E') || typeof o.severity === 'string');
}

/** The line that says what happened: the first libpq error/FATAL line, without the tool's prefix. */
function headlineOf(text: string): string {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const line = lines.find((l) => /error:|FATAL:|fatal:|ERROR:/.test(l)) ?? lines[0] ?? '';
  const cleaned = line
    .replace(/^(pg_dump|pg_restore|psql|pg_dumpall)(: (error|fatal|warning))?:\s*/i, '')
    .replace(/^(error|fatal):\s*/i, '')
    .replace(/\b(FATAL|ERROR):\s+/g, '');
  const plain = NODE_MESSAGES.reduce((t, [re, to]) => t.replace(re, to), cleaned);
  return plain.length > 300 ? `${plain.slice(0, 297)}...` : plain;
}

/** Node's terse socket messages, said plainly. */
const NODE_MESSAGES: ReadonlyArray<[RegExp, string]> = [
  [/^connect ECONNREFUSED (\S+)$/, 'connection to $1 refused'],
  [/^connect ETIMEDOUT (\S+)$/, 'connection to $1 timed out'],
  [/^connect (EHOSTUNREACH|ENETUNREACH) (\S+)$/, 'no route to $2'],
  [/^getaddrinfo ENOTFOUND (\S+)$/, 'host name "$1" does not resolve'],
  [/^getaddrinfo EAI_AGAIN (\S+)$/, 'DNS lookup of "$1" failed temporarily'],
  [/^read ECONNRESET$/, 'connection reset by the server'],
  [/^timeout expired$/, 'connection timed out'],
];

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
