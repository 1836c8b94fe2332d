/**
 * Which schemas a dump covers: the same selection pg_dump makes from `--schema` / `--exclude-schema`
 * patterns (dump.schemas / dump.excludeSchemas are passed to pg_dump verbatim), so pre-flight checks and
 * verification look at exactly what is copied.
 */
import type { RuntimeConfig } from '../../spec/runtime-config';

type DumpOptions = Pick<RuntimeConfig['migration']['dump'], 'schemas' | 'excludeSchemas'>;

/** Schemas pg_dump never dumps as user data. */
export function isSystemSchema(name: string): boolean {
  return name === 'information_schema' || name.startsWith('pg_');
}

/**
 * A pg_dump name pattern as a regular expression: unquoted letters fold to lower case, "double quotes" keep
 * case and make * and ? literal, `*` matches any text and `?` one character (psql's patterns, without the
 * dot that separates schema from object).
 */
export function patternToRegExp(pattern: string): RegExp {
  let out = '';
  let quoted = false;
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch === '"') {
      if (quoted && pattern[i + 1] === '"') { out += '"'; i++; continue; }
      quoted = !quoted;
      continue;
    }
    if (!quoted && ch === '*') out += '.*';
    else if (!quoted && ch === '?') out += '.';
    else {
      const c = quoted ? ch : ch.replace(/[A-Z]/g, (u) => u.toLowerCase());
      out += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^(?:${out})$`, 'u');
}

/** True when pg_dump with these options dumps the schema. */
export function schemaMatcher(dump: DumpOptions): (schema: string) => boolean {
  const include = dump.schemas.map(patternToRegExp);
  const exclude = dump.excludeSchemas.map(patternToRegExp);
  return (schema) => !isSystemSchema(schema)
    && (include.length === 0 || include.some((r) => r.test(schema)))
    && !exclude.some((r) => r.test(schema));
}
