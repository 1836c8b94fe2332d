/**
 * The JSON Schema of the spec, generated from the zod schema (the single source of truth), for editors that
 * use the YAML language server (`# yaml-language-server: $schema=./migration.schema.json`).
 */
import { z } from 'zod';
import { migrationSpecSchema, passwordRef, secretKeyRef } from './schema';

export function specJsonSchema(): Record<string, unknown> {
  const refSchema = z.toJSONSchema(secretKeyRef, { io: 'input' }) as Record<string, unknown>;
  delete refSchema.$schema;
  const schema = z.toJSONSchema(migrationSpecSchema, {
    io: 'input',
    target: 'draft-7',
    override: (ctx) => {
      // The password check is code (it refuses literals with a helpful message); to editors it is a Secret ref.
      if (ctx.zodSchema === passwordRef) Object.assign(ctx.jsonSchema, refSchema);
    },
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
