/**
 * What a command costs before it does any work: the CLI loads only the module of the command it runs (cdk8s is
 * for synth alone), through the bin's own require hook; and the runner bundle is built once per change of its
 * inputs, then read from node_modules/.cache/db-migration/ by every later process, and so is its compressed form.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { brotliCompressSync, brotliDecompressSync, constants } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../src/chart/runner-bundle';
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

const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

/**
 * A checkout of its own: package.json, the real src/chart/runner-bundle.ts and the modules it needs, a two-file runner
 * (main.ts prints greeting.ts's text and a dependency's) and node_modules with esbuild and that dependency.
 */
function checkout(): { root: string; write(path: string, text: string): void } {
  const root = mkdtempSync(join(tmpdir(), 'dbm-bundle-cache-'));
  temps.push(root);
  const write = (path: string, text: string) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  };
  write('package.json', JSON.stringify({ name: 'db-migration' }));
  for (const file of ['runner-bundle.ts', 'bundle-cache.ts', 'package-info.ts', 'runner-compression.ts']) {
    mkdirSync(join(root, 'src', 'chart'), { recursive: true });
    copyFileSync(join(REPO, 'src', 'chart', file), join(root, 'src', 'chart', file));
  }
  write('src/runner/main.ts', `import { greeting } from './greeting';\nimport { suffix } from 'suffix';\nconsole.log(greeting + suffix);\n`);
  write('src/runner/greeting.ts', `export const greeting = 'hello v1';\n`);
  write('node_modules/suffix/package.json', JSON.stringify({ name: 'suffix', main: 'index.js' }));
  write('node_modules/suffix/index.js', `exports.suffix = ' (suffix v1)';\n`);
  symlinkSync(join(REPO, 'node_modules', 'esbuild'), join(root, 'node_modules', 'esbuild'));
  return { root, write };
}

/** bundleRunner() of that checkout, in a process of its own (as each `db-migration` run is), and what the bundle prints. */
function bundleIn(root: string): { code: string; prints: string } {
  const module = join(root, 'src', 'chart', 'runner-bundle.ts');
  const res = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', `process.stdout.write(require(${JSON.stringify(module)}).bundleRunner().code)`], { cwd: REPO, encoding: 'utf8' });
  expect(res.stderr).toBe('');
  expect(res.status).toBe(0);
  const run = spawnSync(process.execPath, ['-e', res.stdout], { encoding: 'utf8' });
  return { code: res.stdout, prints: `${run.stdout}${run.stderr}`.trim() };
}

const CACHE = (root: string) => join(root, 'node_modules', '.cache', 'db-migration');
const cacheFiles = (root: string) => readdirSync(CACHE(root));

/** Replaces the cached bundle by another, valid one: a process that returns it has not built. */
function plantInCache(root: string, code: string): void {
  const [file] = cacheFiles(root);
  const text = readFileSync(join(CACHE(root), file), 'utf8');
  const header = JSON.parse(text.slice(0, text.indexOf('\n')));
  writeFileSync(join(CACHE(root), file), `${JSON.stringify({ ...header, sha256: sha256Hex(code) })}\n${code}`);
}
const PLANTED = 'console.log("from the cache");\n';

describe('the runner bundle cache', () => {
  it('given unchanged inputs, when another process bundles, then it gets the cached bundle without building', () => {
    const { root } = checkout();
    const first = bundleIn(root);
    expect(first.prints).toBe('hello v1 (suffix v1)');
    expect(cacheFiles(root)).toEqual([expect.stringMatching(/^runner-[0-9a-f]{16}\.cache$/)]);
    plantInCache(root, PLANTED);
    expect(bundleIn(root).code).toBe(PLANTED);
  });

  it('given a changed runner source file, when bundled, then it is built again from the new source', () => {
    const { root, write } = checkout();
    bundleIn(root);
    plantInCache(root, PLANTED);
    write('src/runner/greeting.ts', `export const greeting = 'hello v2';\n`);
    const second = bundleIn(root);
    expect(second.prints).toBe('hello v2 (suffix v1)');
    // and the new build is what the cache now holds
    expect(cacheFiles(root)).toHaveLength(1);
    plantInCache(root, PLANTED);
    expect(bundleIn(root).code).toBe(PLANTED);
  });

  it('given a new file that changes what an import resolves to (not one the last build read), when bundled, then it is built again', () => {
    const { root, write } = checkout();
    bundleIn(root);
    plantInCache(root, PLANTED);
    // esbuild tries .tsx before .ts: './greeting' now means greeting.tsx
    write('src/runner/greeting.tsx', `export const greeting = 'hello tsx';\n`);
    expect(bundleIn(root).prints).toBe('hello tsx (suffix v1)');
  });

  it('given a changed dependency in node_modules and the same lockfiles, when bundled, then it is built again', () => {
    const { root, write } = checkout();
    bundleIn(root);
    plantInCache(root, PLANTED);
    write('node_modules/suffix/index.js', `exports.suffix = ' (suffix v2)';\n`);
    expect(bundleIn(root).prints).toBe('hello v1 (suffix v2)');
  });

  it('given a cache entry cut short, when bundled, then it is built again and the entry rewritten whole', () => {
    const { root } = checkout();
    const first = bundleIn(root);
    const [file] = cacheFiles(root);
    const whole = readFileSync(join(CACHE(root), file), 'utf8');
    writeFileSync(join(CACHE(root), file), whole.slice(0, whole.length - 10));
    expect(bundleIn(root).code).toBe(first.code);
    expect(readFileSync(join(CACHE(root), file), 'utf8')).toBe(whole);
  });

  it('given three processes bundling at once on an empty cache, when they finish, then each has the same whole bundle and so has the cache', async () => {
    const { root } = checkout();
    const module = join(root, 'src', 'chart', 'runner-bundle.ts');
    const script = `process.stdout.write(require(${JSON.stringify(module)}).bundleRunner().code)`;
    const codes = await Promise.all([1, 2, 3].map(() => new Promise<string>((done, fail) => {
      const child = spawn(process.execPath, ['-r', 'tsx/cjs', '-e', script], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => { out += chunk; });
      child.on('error', fail);
      child.on('close', (code) => (code === 0 ? done(out) : fail(new Error(`exit ${code}`))));
    })));
    expect(new Set(codes).size).toBe(1);
    expect(codes[0]).toContain('hello v1');
    // no temporary file left behind; the one entry is whole: a new process reads it rather than building
    expect(cacheFiles(root)).toHaveLength(1);
    plantInCache(root, PLANTED);
    expect(bundleIn(root).code).toBe(PLANTED);
  });

  it('given a cache directory that cannot be created, when bundled, then it bundles all the same, every time', () => {
    const { root } = checkout();
    writeFileSync(join(root, 'node_modules', '.cache'), 'a file where the cache directory would go\n');
    expect(bundleIn(root).prints).toBe('hello v1 (suffix v1)');
    expect(bundleIn(root).prints).toBe('hello v1 (suffix v1)');
  });
});

describe('the compressed runner on disk', () => {
  const CODE = `console.log(${JSON.stringify('compressed once '.repeat(200))});\n`;
  /** compressRunner(CODE) in a process of its own, from the checkout's src/chart/runner-compression.ts. */
  function compressIn(root: string): Buffer {
    const module = join(root, 'src', 'chart', 'runner-compression.ts');
    const script = `process.stdout.write(require(${JSON.stringify(module)}).compressRunner(${JSON.stringify(CODE)}).toString('base64'))`;
    const res = spawnSync(process.execPath, ['-r', 'tsx/cjs', '-e', script], { cwd: REPO, encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    return Buffer.from(res.stdout, 'base64');
  }
  const copies = (root: string) => cacheFiles(root).filter((f) => f.startsWith('compressed-'));

  it('given a runner compressed once, when another process compresses it, then it takes the copy on disk', () => {
    const { root } = checkout();
    const first = compressIn(root);
    expect(brotliDecompressSync(first).toString('utf8')).toBe(CODE);
    expect(copies(root)).toEqual([`compressed-${sha256Hex(CODE)}-brotli-${process.versions.brotli}.br`]);
    // another valid compression of the same runner, in its place: a process that returns it did not compress
    const planted = brotliCompressSync(Buffer.from(CODE), { params: { [constants.BROTLI_PARAM_QUALITY]: 1 } });
    expect(planted.equals(first)).toBe(false);
    writeFileSync(join(CACHE(root), copies(root)[0]), planted);
    expect(compressIn(root).equals(planted)).toBe(true);
  });

  it('given a copy on disk that does not unpack to the runner, when compressed, then it compresses again and replaces it', () => {
    const { root } = checkout();
    const first = compressIn(root);
    for (const wrong of [Buffer.from('not brotli at all'), brotliCompressSync(Buffer.from(`${CODE}// another runner\n`))]) {
      writeFileSync(join(CACHE(root), copies(root)[0]), wrong);
      expect(compressIn(root).equals(first)).toBe(true);
      expect(readFileSync(join(CACHE(root), copies(root)[0])).equals(first)).toBe(true);
    }
  });
});
