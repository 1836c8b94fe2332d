/**
 * The JSON Schema of the spec, generated from the zod schema (the single source of truth), for editors that
 * use the YAML language server (`# yaml-language-server: $schema=./migration.schema.json`).
 */
import * as z from 'zod/mini';
import { migrationSpecSchema } from './schema';

export function specJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(migrationSpecSchema, {
    io: 'input',
    target: 'draft-7',
  }) as Record<string, unknown>;
  return {
    ...schema,
    $id: 'https://db-migration.dev/migration.schema.json',
    title: 'db-migration spec (migration.yaml)',
  };
}

export function specJsonSchemaText(): string {
  return `${JSON.stringify(specJsonSchema(), null, 2)}\n`;
}
