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
