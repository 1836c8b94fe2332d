/** Regenerates migration.schema.json and the README's spec reference from the zod schema. `npm run schema`. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { specJsonSchemaText } from '../src/spec/json-schema';
import { REFERENCE_BEGIN, REFERENCE_END, specReferenceMarkdown } from '../src/spec/reference';

const root = join(__dirname, '..');
writeFileSync(join(root, 'migration.schema.json'), specJsonSchemaText());
console.log('wrote migration.schema.json');

const readmePath = join(root, 'README.md');
const readme = readFileSync(readmePath, 'utf8');
const begin = readme.indexOf(REFERENCE_BEGIN);
const end = readme.indexOf(REFERENCE_END);
if (begin < 0 || end < begin) throw new Error('README.md has no spec-reference markers');
writeFileSync(readmePath, `${readme.slice(0, begin + REFERENCE_BEGIN.length)}\n${specReferenceMarkdown()}\n${readme.slice(end)}`);
console.log('updated the spec reference in README.md');
