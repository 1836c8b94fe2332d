/**
 * SQL text helpers. Quoting uses node-postgres' own escapeIdentifier / escapeLiteral; values travel as query
 * parameters wherever a query takes them, so these are for SQL that people read and run (fixes in reports).
 */
import { escapeIdentifier, escapeLiteral } from 'pg';

/** "name", with embedded double quotes doubled. */
export function quoteIdent(name: string): string {
  return escapeIdentifier(name);
}

/** 'value', with quotes (and backslashes, using E'' syntax) escaped. */
export function quoteLiteral(value: string): string {
  return escapeLiteral(value);
}

/** "schema"."name". */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/** schema.name for messages: quoted only where a reader would need it to tell where the name ends. */
export function displayName(schema: string, name: string): string {
  return `${displayIdent(schema)}.${displayIdent(name)}`;
}

export function displayIdent(name: string): string {
  return /^[\p{L}_][\p{L}\p{N}_$]*$/u.test(name) && name === name.toLowerCase() ? name : quoteIdent(name);
}

/**
 * Collapses runs of whitespace outside quoted literals and identifiers, so formatting differences between
 * server versions do not count while a changed string literal still does.
 */
export function normalizeSql(text: string | null): string | null {
  if (text === null) return null;
  let out = '';
  let quote: string | null = null;
  let pendingSpace = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote) {
      out += ch;
      if (ch === quote) {
        if (text[i + 1] === quote) { out += text[++i]; continue; }
        quote = null;
      }
      continue;
    }
    if (/\s/.test(ch)) { pendingSpace = out.length > 0; continue; }
    if (pendingSpace) { out += ' '; pendingSpace = false; }
    if (ch === '\'' || ch === '"') quote = ch;
    out += ch;
  }
  return out;
}
