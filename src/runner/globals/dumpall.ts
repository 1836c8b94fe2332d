/**
 * Role definitions from `pg_dumpall --roles-only`, read statement by statement into data.
 *
 * pg_dumpall is the one reader of roles that knows every server version's catalogs and, when allowed, the
 * password verifiers in pg_authid. Its SQL is not replayed: it is tokenized (quotes, comments, psql
 * meta-commands such as \restrict), each statement is recognised by its shape, and the parts that matter
 * (attributes, password, role settings, comment, memberships) become a {@link RoleDefinition}. The
 * destination then gets statements this module renders itself, for exactly the roles the plan names, with the
 * attributes the destination user may grant. Statements it does not know are counted, never run.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ResolvedEndpoint } from '../../spec/runtime-config';
import { libpqEnv, passwordFor } from '../postgres/connection';
import { runTool } from '../postgres/exec';
import { dbnameArg, toolPath } from '../plan';
import { displayIdent, quoteIdent, quoteLiteral } from '../postgres/sql';

/** The boolean role attributes, as CREATE ROLE spells them. */
export const ROLE_FLAGS = ['SUPERUSER', 'CREATEDB', 'CREATEROLE', 'INHERIT', 'LOGIN', 'REPLICATION', 'BYPASSRLS'] as const;
export type RoleFlag = (typeof ROLE_FLAGS)[number];

/** One `ALTER ROLE r SET name TO value` (a setting for every database). `valueSql` is ready to embed. */
export interface RoleSetting {
  readonly name: string;
  readonly valueSql: string;
}

export interface RoleDefinition {
  readonly name: string;
  /** Attributes pg_dumpall gave; one it did not mention is absent. */
  readonly flags: Partial<Record<RoleFlag, boolean>>;
  /** -1 or absent: no limit. */
  readonly connectionLimit?: number;
  /** The stored verifier (SCRAM-SHA-256$... or md5...). Never logged or reported. */
  readonly password?: string;
  readonly validUntil?: string;
  readonly comment?: string;
  readonly settings: RoleSetting[];
}

export interface RoleMembership {
  /** The role granted. */
  readonly role: string;
  /** The role that receives it. */
  readonly member: string;
  readonly admin: boolean;
}

export interface DumpallRoles {
  readonly roles: Map<string, RoleDefinition>;
  readonly memberships: RoleMembership[];
  /** Statements recognised neither as role definitions nor as session settings (e.g. GRANT SET ON PARAMETER). */
  readonly ignored: number;
  /** Statements that looked like role statements but could not be read; no SQL text (it may hold a password). */
  readonly problems: string[];
}

// ---------------------------------------------------------------------------------------------- tokenizer

export type TokenKind = 'word' | 'ident' | 'string' | 'number' | 'punct';

export interface Token {
  readonly kind: TokenKind;
  /** word: lower-cased; ident/string: unescaped; number/punct: as written. */
  readonly value: string;
}

/**
 * Splits SQL text into statements of tokens. Understands '...' (doubled quotes), E'...' (backslash escapes),
 * "..." identifiers, $tag$...$tag$ strings, -- and nested /* *\/ comments, and psql meta-commands (a line
 * starting with a backslash where a statement would start). A statement ends at a semicolon outside quotes.
 * Throws on an unterminated quote or comment.
 */
export function tokenizeStatements(text: string): Token[][] {
  const statements: Token[][] = [];
  let current: Token[] = [];
  let i = 0;
  const n = text.length;
  const isWordStart = (c: string) => /[A-Za-z_\u0080-\uffff]/.test(c);
  const isWordPart = (c: string) => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
  while (i < n) {
    const c = text[i];
    if (/\s/.test(c)) { i++; continue; }
    if (c === '-' && text[i + 1] === '-') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && text[i + 1] === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (text[i] === '/' && text[i + 1] === '*') { depth++; i += 2; } else if (text[i] === '*' && text[i + 1] === '/') { depth--; i += 2; } else i++;
      }
      if (depth > 0) throw new Error('unterminated /* comment');
      continue;
    }
    if (c === '\\' && current.length === 0) { // psql meta-command: runs to the end of the line
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    if (c === ';') {
      if (current.length > 0) statements.push(current);
      current = [];
      i++;
      continue;
    }
    if ((c === 'E' || c === 'e') && text[i + 1] === "'") {
      const [value, end] = readEscapeString(text, i + 2);
      current.push({ kind: 'string', value });
      i = end;
      continue;
    }
    if (c === "'") {
      const [value, end] = readQuoted(text, i + 1, "'");
      current.push({ kind: 'string', value });
      i = end;
      continue;
    }
    if (c === '"') {
      const [value, end] = readQuoted(text, i + 1, '"');
      current.push({ kind: 'ident', value });
      i = end;
      continue;
    }
    if (c === '$') {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 70));
      if (m) {
        const close = text.indexOf(m[0], i + m[0].length);
        if (close < 0) throw new Error('unterminated dollar-quoted string');
        current.push({ kind: 'string', value: text.slice(i + m[0].length, close) });
        i = close + m[0].length;
        continue;
      }
    }
    if (/[0-9]/.test(c) || (c === '.' && /[0-9]/.test(text[i + 1] ?? ''))) {
      const m = /^[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?/.exec(text.slice(i, i + 64))!;
      current.push({ kind: 'number', value: m[0] });
      i += m[0].length;
      continue;
    }
    if (isWordStart(c)) {
      let j = i + 1;
      while (j < n && isWordPart(text[j])) j++;
      current.push({ kind: 'word', value: text.slice(i, j).toLowerCase() });
      i = j;
      continue;
    }
    current.push({ kind: 'punct', value: c });
    i++;
  }
  if (current.length > 0) statements.push(current);
  return statements;
}

function readQuoted(text: string, start: number, quote: string): [string, number] {
  let out = '';
  let i = start;
  for (;;) {
    const close = text.indexOf(quote, i);
    if (close < 0) throw new Error(`unterminated ${quote === '"' ? 'quoted identifier' : 'string literal'}`);
    out += text.slice(i, close);
    if (text[close + 1] === quote) { out += quote; i = close + 2; continue; }
    return [out, close + 1];
  }
}

function readEscapeString(text: string, start: number): [string, number] {
  let out = '';
  let i = start;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\') {
      const next = text[i + 1] ?? '';
      const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f' };
      out += simple[next] ?? next;
      i += 2;
      continue;
    }
    if (c === "'") {
      if (text[i + 1] === "'") { out += "'"; i += 2; continue; }
      return [out, i + 1];
    }
    out += c;
    i++;
  }
  throw new Error('unterminated string literal');
}

// ------------------------------------------------------------------------------------------------- parser

const isWord = (t: Token | undefined, ...words: string[]): boolean => t?.kind === 'word' && words.includes(t.value);
const isName = (t: Token | undefined): boolean => t?.kind === 'word' || t?.kind === 'ident';

/** Reads pg_dumpall output into role definitions and memberships. */
export function parseDumpallRoles(text: string): DumpallRoles {
  const roles = new Map<string, RoleDefinition>();
  const memberships: RoleMembership[] = [];
  const problems: string[] = [];
  let ignored = 0;
  const role = (name: string): RoleDefinition & { flags: Partial<Record<RoleFlag, boolean>> } => {
    let r = roles.get(name);
    if (!r) { r = { name, flags: {}, settings: [] }; roles.set(name, r); }
    return r as RoleDefinition & { flags: Partial<Record<RoleFlag, boolean>> };
  };

  for (const st of tokenizeStatements(text)) {
    const [a, b, c, d] = st;
    try {
      if (isWord(a, 'set', 'reset') || isWord(a, 'select')) continue; // session settings of the script itself
      if (isWord(a, 'create') && isWord(b, 'role', 'user', 'group') && isName(c)) {
        role(c!.value);
        if (st.length > 3) parseRoleOptions(role(c!.value), st.slice(isWord(d, 'with') ? 4 : 3));
        continue;
      }
      if (isWord(a, 'alter') && isWord(b, 'role', 'user') && isName(c)) {
        if (isWord(d, 'with')) { parseRoleOptions(role(c!.value), st.slice(4)); continue; }
        if (isWord(d, 'set')) { role(c!.value).settings.push(parseSetting(st.slice(4))); continue; }
        if (isWord(d, 'in')) { ignored++; continue; } // IN DATABASE ... SET: per-database, see database-settings
        if (d?.kind === 'word') { parseRoleOptions(role(c!.value), st.slice(3)); continue; }
      }
      if (isWord(a, 'comment') && isWord(b, 'on') && isWord(c, 'role') && isName(d) && isWord(st[4], 'is')) {
        const v = st[5];
        const r = role(d!.value) as { comment?: string };
        if (v?.kind === 'string') r.comment = v.value;
        continue;
      }
      if (isWord(a, 'grant') && !st.some((t) => isWord(t, 'on'))) {
        memberships.push(...parseMembership(st));
        continue;
      }
      ignored++;
    } catch (err) {
      // The message names the role at most; the statement may carry a password verifier.
      problems.push(`${isName(c) ? `role ${displayIdent(c!.value)}: ` : ''}${(err as Error).message}`);
    }
  }
  return { roles, memberships, ignored, problems };
}

function parseRoleOptions(r: RoleDefinition & { flags: Partial<Record<RoleFlag, boolean>> }, toks: Token[]): void {
  const m = r as { connectionLimit?: number; password?: string; validUntil?: string };
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    if (t.kind !== 'word') throw new Error(`unexpected ${t.kind} in role options`);
    const upper = t.value.toUpperCase();
    const flag = ROLE_FLAGS.find((f) => f === upper || `NO${f}` === upper);
    if (flag) { r.flags[flag] = upper === flag; continue; }
    if (t.value === 'connection' && isWord(toks[i + 1], 'limit')) {
      let j = i + 2;
      let sign = 1;
      if (toks[j]?.kind === 'punct' && toks[j].value === '-') { sign = -1; j++; }
      if (toks[j]?.kind !== 'number') throw new Error('CONNECTION LIMIT without a number');
      m.connectionLimit = sign * Number(toks[j].value);
      i = j;
      continue;
    }
    if (t.value === 'encrypted' || t.value === 'unencrypted') continue;
    if (t.value === 'password') {
      const v = toks[i + 1];
      if (v?.kind === 'string') m.password = v.value;
      else if (!isWord(v, 'null')) throw new Error('PASSWORD without a value');
      i++;
      continue;
    }
    if (t.value === 'valid' && isWord(toks[i + 1], 'until') && toks[i + 2]?.kind === 'string') {
      m.validUntil = toks[i + 2].value;
      i += 2;
      continue;
    }
    throw new Error(`unknown role option ${upper}`);
  }
}

/** `name TO value[, value...]` (or `=`), as pg_dumpall writes role settings. */
function parseSetting(toks: Token[]): RoleSetting {
  const names: string[] = [];
  let i = 0;
  while (i < toks.length && isName(toks[i])) {
    names.push(toks[i].value);
    i++;
    if (toks[i]?.kind === 'punct' && toks[i].value === '.') i++; else break;
  }
  if (names.length === 0) throw new Error('SET without a setting name');
  const sep = toks[i];
  if (!(isWord(sep, 'to') || (sep?.kind === 'punct' && sep.value === '='))) throw new Error('SET without TO');
  const values: string[] = [];
  let sign = '';
  for (const v of toks.slice(i + 1)) {
    if (v.kind === 'punct' && v.value === ',') continue;
    if (v.kind === 'punct' && v.value === '-') { sign = '-'; continue; }
    if (v.kind === 'string') values.push(quoteLiteral(v.value));
    else if (v.kind === 'number') values.push(`${sign}${v.value}`);
    else if (v.kind === 'ident') values.push(quoteIdent(v.value));
    else if (v.kind === 'word') values.push(v.value);
    else throw new Error(`unexpected "${v.value}" in a setting value`);
    sign = '';
  }
  if (values.length === 0) throw new Error('SET without a value');
  return { name: names.join('.'), valueSql: values.join(', ') };
}

/** GRANT a[, b] TO m[, n] [WITH ADMIN OPTION | WITH ADMIN|INHERIT|SET TRUE|FALSE, ...] [GRANTED BY g] */
function parseMembership(st: Token[]): RoleMembership[] {
  const to = st.findIndex((t) => isWord(t, 'to'));
  if (to < 2) throw new Error('GRANT without TO');
  const list = (toks: Token[]) => toks.filter((t) => !(t.kind === 'punct' && t.value === ',')).map((t) => {
    if (!isName(t)) throw new Error('unexpected token in a GRANT role list');
    return t.value;
  });
  const granted = list(st.slice(1, to));
  let end = st.length;
  const withAt = st.findIndex((t, k) => k > to && isWord(t, 'with'));
  const byAt = st.findIndex((t, k) => k > to && isWord(t, 'granted'));
  if (withAt > 0) end = withAt; else if (byAt > 0) end = byAt;
  const members = list(st.slice(to + 1, end));
  let admin = false;
  if (withAt > 0) {
    const opts = st.slice(withAt + 1, byAt > 0 ? byAt : st.length);
    for (let k = 0; k < opts.length; k++) {
      if (isWord(opts[k], 'admin') && (isWord(opts[k + 1], 'option', 'true'))) admin = true;
    }
  }
  return granted.flatMap((role) => members.map((member) => ({ role, member, admin })));
}

// --------------------------------------------------------------------------------------------- rendering

/**
 * `CREATE ROLE name WITH ...`. With `withPassword` false the PASSWORD clause is left out: that is the form
 * shown in warnings and logs.
 */
export function createRoleSql(def: RoleDefinition, flags: Partial<Record<RoleFlag, boolean>>, withPassword: boolean): string {
  const parts = ROLE_FLAGS.filter((f) => flags[f] !== undefined).map((f) => (flags[f] ? f : `NO${f}`));
  if (def.connectionLimit !== undefined && def.connectionLimit !== -1) parts.push(`CONNECTION LIMIT ${def.connectionLimit}`);
  if (withPassword && def.password !== undefined) parts.push(`PASSWORD ${quoteLiteral(def.password)}`);
  if (def.validUntil !== undefined) parts.push(`VALID UNTIL ${quoteLiteral(def.validUntil)}`);
  return `CREATE ROLE ${quoteIdent(def.name)}${parts.length ? ` WITH ${parts.join(' ')}` : ''}`;
}

export function roleSettingSql(role: string, s: RoleSetting): string {
  return `ALTER ROLE ${quoteIdent(role)} SET ${s.name.split('.').map(quoteIdent).join('.')} TO ${s.valueSql}`;
}

// ----------------------------------------------------------------------------------------------- running

export interface DumpallOptions {
  /** Directory of pg_dumpall. @default - PATH */
  readonly binDir?: string;
  /** Leave password verifiers out (--no-role-passwords): needed when the user cannot read pg_authid. */
  readonly noPasswords: boolean;
  readonly connectTimeoutSeconds: number;
  /** Every password variable of the config: kept out of the tool's environment. */
  readonly passwordVars?: readonly string[];
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
  /** Where the output file is written (a private directory, removed afterwards). @default os.tmpdir() */
  readonly tmpDir?: string;
}

/**
 * Runs `pg_dumpall --roles-only` against the source (read only, connected to the migrated database, so no
 * CONNECT on `postgres` is needed) and parses its output. The output goes to a file in a private directory
 * rather than through a pipe, so no line length limit applies; the file holds password verifiers and is
 * removed before this returns.
 */
export async function dumpRoles(source: ResolvedEndpoint, env: NodeJS.ProcessEnv, opts: DumpallOptions): Promise<DumpallRoles> {
  const dir = await mkdtemp(join(opts.tmpDir ?? tmpdir(), 'dbm-roles-'));
  const file = join(dir, 'roles.sql');
  try {
    const childEnv: NodeJS.ProcessEnv = {};
    const drop = new Set(opts.passwordVars ?? []);
    for (const [k, v] of Object.entries(env)) if (v !== undefined && !k.startsWith('PG') && !drop.has(k)) childEnv[k] = v;
    Object.assign(childEnv, libpqEnv(source, env, { readOnly: true, connectTimeoutSeconds: opts.connectTimeoutSeconds }));
    await runTool({
      cmd: toolPath('pg_dumpall', opts.binDir),
      args: [
        '--roles-only', '--no-password', '--no-security-labels',
        ...(opts.noPasswords ? ['--no-role-passwords'] : []),
        `--database=${dbnameArg(source.database)}`, `--file=${file}`,
      ],
      env: childEnv,
      phase: 'roles',
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      secrets: [passwordFor(source, env)],
    });
    return parseDumpallRoles(await readFile(file, 'utf8'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
