/**
 * The runner as one JavaScript file, so that the Job needs no `npm install` and no image of our own: the bundle
 * travels in the `<name>-runner-<n>` ConfigMaps and any image with node and the PostgreSQL client tools can run it.
 * A checkout bundles src/runner/main.ts with esbuild; the installed package has no source and no esbuild, and uses
 * the runner `npm pack` built into it (lib/runner.js.br, see scripts/build-package.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { BuildOptions, Message } from 'esbuild';
import { openBundleCache } from './bundle-cache';
import { checkoutRoot, packageRoot } from './package-info';
import { loadCompressedRunner } from './runner-compression';

/** Kubernetes rejects a ConfigMap whose data (keys plus values) exceeds 1 MiB. */
export const CONFIGMAP_DATA_LIMIT_BYTES = 1_048_576;

export interface RunnerBundle {
  /** The bundled JavaScript (CommonJS, node 20). */
  readonly code: string;
  /** Hex sha256 of `code`. */
  readonly sha256: string;
  /** UTF-8 size of `code` in bytes. */
  readonly bytes: number;
}

export interface BundleRunnerOptions {
  /**
   * The entry point to bundle (needs esbuild).
   * @default - src/runner/main.ts in a checkout; in the installed package, the runner it ships prebuilt
   */
  readonly entryPoint?: string;
}

/** Where the installed package keeps its runner, bundled and compressed when it was packed. */
export const PREBUILT_RUNNER_FILE = join('lib', 'runner.js.br');

const cache = new Map<string, RunnerBundle>();

/**
 * The runner (once per process and entry point): bundled with esbuild in a checkout, where an entry point under src/
 * is built once per change (the bundle is kept in node_modules/.cache/db-migration/, see bundle-cache.ts); the
 * prebuilt one in the installed package.
 */
export function bundleRunner(options: BundleRunnerOptions = {}): RunnerBundle {
  const root = checkoutRoot();
  if (options.entryPoint === undefined && root === undefined) return prebuiltRunner();
  const entryPoint = resolve(options.entryPoint ?? join(root!, 'src', 'runner', 'main.ts'));
  const cached = cache.get(entryPoint);
  if (cached) return cached;
  if (!existsSync(entryPoint)) {
    throw new Error(`cannot bundle the runner: ${entryPoint} does not exist`);
  }
  const build: BuildOptions & { write: false; metafile: true } = {
    entryPoints: [entryPoint],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    minify: true,
    sourcemap: false,
    write: false,
    logLevel: 'silent',
    legalComments: 'none',
    // pg's optional native binding: pg only requires it when `pg.native` is read, which the runner never does.
    // Kept as a plain require() so the bundle loads in images that do not have it.
    external: ['pg-native'],
    // Which files the build read, for the disk cache.
    metafile: true,
  };
  // esbuild's package.json, not esbuild itself: a cached bundle needs only its version.
  const diskCache = root === undefined ? undefined : openBundleCache(root, entryPoint, { esbuildVersion: esbuildVersion(), build });
  let code = diskCache?.read();
  let inputs: string[] | undefined;
  if (code === undefined) ({ code, inputs } = runEsbuild(entryPoint, build));
  // Any size is fine: it is compressed and split over as many ConfigMaps as it needs (runner-parts.ts).
  const bytes = Buffer.byteLength(code, 'utf8');
  if (inputs) diskCache?.write(code, inputs);
  const bundle: RunnerBundle = { code, sha256: sha256Hex(code), bytes };
  cache.set(entryPoint, bundle);
  return bundle;
}

/** The installed package's runner, from PREBUILT_RUNNER_FILE (its compressed bytes are used as they are). */
function prebuiltRunner(): RunnerBundle {
  const file = join(packageRoot(), PREBUILT_RUNNER_FILE);
  const cached = cache.get(file);
  if (cached) return cached;
  if (!existsSync(file)) {
    throw new Error(`the runner is missing: ${file} does not exist, nor does src/runner/ beside it (npm pack builds the one, a checkout has the other)`);
  }
  const code = loadCompressedRunner(readFileSync(file));
  const bundle: RunnerBundle = { code, sha256: sha256Hex(code), bytes: Buffer.byteLength(code, 'utf8') };
  cache.set(file, bundle);
  return bundle;
}

function esbuildVersion(): string {
  return (loadEsbuild('esbuild/package.json') as { version: string }).version;
}

/** esbuild, a devDependency: a checkout has it; an app that installed the package needs it only to bundle its own runner. */
function loadEsbuild(id: 'esbuild' | 'esbuild/package.json'): unknown {
  try {
    return require(id);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err;
    throw new Error('cannot bundle the runner: esbuild is not installed (npm install --save-dev esbuild to bundle a runner of your own)');
  }
}

/** The bundle and the absolute paths of the files esbuild read to make it. */
function runEsbuild(entryPoint: string, build: BuildOptions & { write: false; metafile: true }): { code: string; inputs: string[] } {
  const { buildSync } = loadEsbuild('esbuild') as typeof import('esbuild');
  try {
    const result = buildSync(build);
    // Metafile paths are relative to esbuild's working directory, the current one.
    return { code: result.outputFiles[0].text, inputs: Object.keys(result.metafile.inputs).map((p) => resolve(p)) };
  } catch (err) {
    const errors = (err as { errors?: Message[] }).errors ?? [];
    const where = (m: Message) => (m.location ? `${m.location.file}:${m.location.line}:${m.location.column + 1}: ` : '');
    const detail = errors.length > 0 ? errors.map((m) => `  ${where(m)}${m.text}`).join('\n') : `  ${(err as Error).message}`;
    throw new Error(`cannot bundle the runner (${entryPoint}):\n${detail}`);
  }
}

/** Hex sha256 of a UTF-8 string. */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/**
 * Fails when the data would exceed what Kubernetes accepts in one ConfigMap: keys plus values of data, and of
 * binaryData (base64 in the manifest; the decoded bytes count).
 */
export function assertFitsConfigMap(name: string, data: Record<string, string>, binaryData: Record<string, string> = {}): void {
  const entries: [string, number][] = [
    ...Object.entries(data).map(([k, v]): [string, number] => [k, Buffer.byteLength(v)]),
    ...Object.entries(binaryData).map(([k, v]): [string, number] => [k, Buffer.from(v, 'base64').length]),
  ];
  const bytes = entries.reduce((n, [k, size]) => n + Buffer.byteLength(k) + size, 0);
  if (bytes > CONFIGMAP_DATA_LIMIT_BYTES) {
    const sizes = entries.map(([k, size]) => `${k} ${size} bytes`).join(', ');
    throw new Error(
      `ConfigMap ${name} would hold ${bytes} bytes of data (${sizes}), more than the Kubernetes limit of `
      + `${CONFIGMAP_DATA_LIMIT_BYTES} bytes`,
    );
  }
}
