/**
 * The bad-input corpus: each file in test/fixtures/invalid-specs states, in `# expect:` lines, the exact
 * errors synth must print (FILE:LINE:COL field.path: message). Every case must exit 2 and leave dist/ as it was.
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, runCliProcess } from './support/cli';

const CORPUS = join(__dirname, 'fixtures', 'invalid-specs');
const cases = readdirSync(CORPUS).filter((f) => f.endsWith('.yaml')).sort();

function existingDist(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dbm-dist-'));
  const dist = join(dir, 'dist');
  mkdirSync(dist);
  writeFileSync(join(dist, 'db-migration.k8s.yaml'), 'previous: manifests\n');
  return dist;
}

function distFiles(dist: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dist).map((f) => [f, readFileSync(join(dist, f), 'utf8')]));
}

describe('invalid specs', () => {
  it('has a corpus of at least 20 cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(20);
  });

  it.each(cases)('fails %s with its exact errors, exit 2, and dist/ untouched', async (name) => {
    // given a spec with known problems and a dist/ from an earlier synth
    const file = join(CORPUS, name);
    const expected = readFileSync(file, 'utf8').split('\n')
      .filter((l) => l.startsWith('# expect: '))
      .map((l) => `${file}:${l.slice('# expect: '.length)}`);
    expect(expected.length).toBeGreaterThan(0);
    const dist = existingDist();
    const before = distFiles(dist);

    // when synth runs on it
    const { code, stderr, stdout } = await runCli(['synth', '--spec', file, '--out', dist]);

    // then every problem is reported at once, exactly, and nothing was written
    expect(code).toBe(2);
    const reported = stderr.split('\n').filter((l) => l.startsWith(`${file}:`));
    expect(reported).toEqual(expected);
    expect(stderr).toContain(`nothing was written`);
    expect(stdout).toBe('');
    expect(distFiles(dist)).toEqual(before);
    expect(readdirSync(join(dist, '..'))).toEqual(['dist']);
  });

  it('fails a literal password without ever printing it', async () => {
    const file = join(CORPUS, '01-literal-password.yaml');
    const { code, stderr } = await runCli(['validate', '--spec', file]);
    expect(code).toBe(2);
    expect(stderr).toContain('use { secret: NAME, key: KEY }');
    expect(stderr).not.toContain('s3cr3t-literal');
  });

  it('fails with exit code 2 from the real command, for synth and validate alike', () => {
    const file = join(CORPUS, '04-duplicate-database.yaml');
    for (const command of ['synth', 'validate', 'images']) {
      const res = runCliProcess([command, '--spec', file, '--out', existingDist()]);
      expect(res.code).toBe(2);
      expect(res.stderr).toContain(`${file}:17:11 databases[1].name: duplicate database name "temporal"`);
      expect(res.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  });

  it('fails a missing spec file with a sentence, not a stack trace', async () => {
    const { code, stderr } = await runCli(['validate', '--spec', '/nonexistent/migration.yaml']);
    expect(code).toBe(2);
    expect(stderr).toContain('/nonexistent/migration.yaml:1:1 (top level): file not found');
  });

  it('fails unknown commands and options with exit 2', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    const res = await runCli(['synth', '--sepc', 'x.yaml']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("Unknown option '--sepc'");
  });

  it('fails migrate without a usable secrets file, from the real command, with exit 2 and a sentence', () => {
    const example = join(__dirname, '..', 'migration.yaml');
    const missing = runCliProcess(['migrate', '--spec', example, '--secrets', '/nonexistent/secrets.yaml']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('/nonexistent/secrets.yaml: cannot read the secrets file (ENOENT)');
    const none = runCliProcess(['migrate', '--spec', example]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('migrate needs --secrets FILE');
  });
});
