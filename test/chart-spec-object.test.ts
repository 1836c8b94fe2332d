/**
 * MigrationChart given the spec as an object, as an app of one's own builds it: its objects equal synth's for the
 * same spec in a file, and an invalid spec fails with the CLI's messages, each naming its field path instead of a
 * line (the whole invalid-spec corpus of spec-errors.test.ts, as objects).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Testing } from 'cdk8s';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { MigrationChart, synthManifests } from '../src/chart';
import { SpecError } from '../src/spec/issues';
import { loadSpecFile } from '../src/spec/load';
import type { MigrationSpecInput } from '../src/spec/schema';

const ROOT = join(__dirname, '..');
const EXAMPLE = join(ROOT, 'migration.yaml');
const FULL = join(ROOT, 'test', 'fixtures', 'specs', 'full.yaml');
/** A fixed runner: these tests are about the spec, not the runner. */
const STAND_IN_BUNDLE = 'console.log("runner stand-in");\n';
const synth = (file: string) => synthManifests(loadSpecFile(file), { runnerBundle: STAND_IN_BUNDLE });

describe('a spec given as an object, from code', () => {
  const CORPUS = join(ROOT, 'test', 'fixtures', 'invalid-specs');
  const raw = (file: string) => parseAllDocuments(readFileSync(file, 'utf8'))[0].toJS() as MigrationSpecInput;

  it.each([['the example', EXAMPLE], ['full.yaml', FULL]])('given %s as an object, when the chart is built in an app, then its objects equal synth\'s for the file, one for one', (_label, file) => {
    const chart = new MigrationChart(Testing.app(), 'migration', { spec: raw(file), runnerBundle: STAND_IN_BUNDLE });
    expect(Testing.synth(chart)).toEqual(synth(file).objects);
    expect(chart.spec).toEqual(loadSpecFile(file));
  });

  it('given a migration.yaml, when the chart is made with fromSpecFile, then it equals synth\'s; an invalid file fails with its lines and columns', () => {
    const chart = MigrationChart.fromSpecFile(Testing.app(), 'migration', FULL, { runnerBundle: STAND_IN_BUNDLE });
    expect(Testing.synth(chart)).toEqual(synth(FULL).objects);
    const bad = join(CORPUS, '01-literal-password.yaml');
    expect(() => MigrationChart.fromSpecFile(Testing.app(), 'migration', bad)).toThrow(new RegExp(`^${bad}:\\d+:\\d+ databases\\[0\\]\\.source\\.password: a literal password is not allowed`));
  });

  const corpus = readdirSync(CORPUS).filter((f) => f.endsWith('.yaml')).sort();
  const representable = corpus.filter((f) => parseAllDocuments(readFileSync(join(CORPUS, f), 'utf8'))[0].errors.length === 0);

  it('has every invalid spec of the corpus as an object but the one that is not YAML', () => {
    expect(corpus.filter((f) => !representable.includes(f))).toEqual(['23-yaml-syntax.yaml']);
  });

  it.each(representable)('given %s as an object, when the chart is built, then it fails with the corpus\'s messages, each with its field path', (name) => {
    // the corpus's `# expect: LINE:COL field.path: message` lines, without the line and column
    const expected = readFileSync(join(CORPUS, name), 'utf8').split('\n').filter((l) => l.startsWith('# expect: '))
      .map((l) => `spec of MigrationChart "migration": ${l.slice('# expect: '.length).replace(/^\d+:\d+ /, '')}`);
    expect(expected.length).toBeGreaterThan(0);
    let error: unknown;
    try {
      new MigrationChart(Testing.app(), 'migration', { spec: raw(join(CORPUS, name)), runnerBundle: STAND_IN_BUNDLE });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SpecError);
    expect((error as SpecError).message.split('\n').sort()).toEqual([...expected].sort());
  });

  it('given a spec whose Job kubectl apply could not store, when the app synthesizes, then it refuses, naming the object, as db-migration synth does', () => {
    const spec = raw(EXAMPLE);
    const app = Testing.app();
    new MigrationChart(app, 'migration', {
      spec: { ...spec, job: { ...spec.job, annotations: { 'example.com/notes': 'x'.repeat(270_000) } } },
      runnerBundle: STAND_IN_BUNDLE,
    });
    expect(() => app.synth()).toThrow(
      /^Validation failed with the following errors:\n {2}\[migration\] Job\/db-migration cannot be applied with "kubectl apply": it would carry \d+ bytes of annotations .*more than Kubernetes' limit of 262144 bytes$/,
    );
  });
});
