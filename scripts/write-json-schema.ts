/** Regenerates migration.schema.json from the zod schema. `npm run schema`. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { specJsonSchemaText } from '../src/spec/json-schema';

const out = join(__dirname, '..', 'migration.schema.json');
writeFileSync(out, specJsonSchemaText());
console.log(`wrote ${out}`);
