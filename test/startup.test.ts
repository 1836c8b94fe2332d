/**
 * What a command costs before it does any work: the CLI loads only the module of the command it runs (cdk8s is
 * for synth alone), through the bin's own require hook.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/repo';

const EXAMPLE = join(REPO, 'migration.yaml');

/** Runs src/cli/main.ts's main() under tsx/cjs, as bin/db-migration.js does, and lists the packages it loaded. */
function packagesLoadedBy(args: string[]): { code: number; stderr: string; packages: string[] } {
  const script = `
    require('./src/cli/main.ts').main(JSON.parse(process.argv[1]), { out() {}, err: (l) => process.stderr.write(l + '\\n') })
      .then((code) => {
        const packages = Object.keys(require.cache).map((f) => /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f)?.[1]).filter(Boolean);
        process.stdout.write(JSON.stringify({ code, packages: [...new Set(packages)].sort() }));
      });`;
  const res = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', script, JSON.stringify(args)], { cwd: REPO, encoding: 'utf8' });
  expect(res.status, res.stderr).toBe(0);
  return { ...JSON.parse(res.stdout), stderr: res.stderr };
}

describe('the CLI loads only the command it runs', () => {
  it('given migrate, when it runs, then neither cdk8s nor cdk8s-plus-28 nor constructs is loaded', () => {
    const res = packagesLoadedBy(['migrate', '--spec', EXAMPLE]);
    // migrate's module ran: it is what asks for --secrets
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('migrate needs --secrets FILE');
    expect(res.packages).toContain('zod');
    expect(res.packages.filter((p) => ['cdk8s', 'cdk8s-plus-28', 'constructs'].includes(p))).toEqual([]);
  });

  it('given synth, when it runs, then cdk8s is loaded (the probe above can see it)', () => {
    const res = packagesLoadedBy(['synth', '--spec', join(REPO, 'no-such-spec.yaml')]);
    expect(res.code).toBe(2);
    expect(res.packages).toEqual(expect.arrayContaining(['cdk8s', 'cdk8s-plus-28', 'constructs']));
  });

  it('given validate or images, when they run, then cdk8s is not loaded', () => {
    for (const command of ['validate', 'images']) {
      const res = packagesLoadedBy([command, '--spec', EXAMPLE]);
      expect(res.code, command).toBe(0);
      expect(res.packages.filter((p) => p.startsWith('cdk8s') || p === 'constructs'), command).toEqual([]);
    }
  });
});
