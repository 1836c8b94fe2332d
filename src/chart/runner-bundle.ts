/**
 * The runner as one JavaScript file, so that the Job needs no `npm install` and no image of our own: the bundle
 * travels in the `<name>-script` ConfigMap and any image with node and the PostgreSQL client tools can run it.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { BuildOptions, Message } from 'esbuild';
import { openBundleCache } from './bundle-cache';

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
   * The entry point to bundle.
   * @default - src/runner/main.ts of this package
   */
  readonly entryPoint?: string;
}

const cache = new Map<string, RunnerBundle>();

/**
 * Bundles the runner with esbuild (once per process and entry point). An entry point under the checkout's src/ is
 * built once per change: the bundle is kept in node_modules/.cache/db-migration/ (see bundle-cache.ts).
 */
export function bundleRunner(options: BundleRunnerOptions = {}): RunnerBundle {
  const entryPoint = resolve(options.entryPoint ?? join(packageRoot(), 'src', 'runner', 'main.ts'));
  const cached = cache.get(entryPoint);
  if (cached) return cached;
  if (!existsSync(entryPoint)) {
    throw new Error(`cannot bundle the runner: ${entryPoint} does not exist (run from a checkout of db-migration, which holds src/)`);
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
  const root = checkoutRoot();
  // esbuild's package.json, not esbuild itself: a cached bundle needs only its version.
  const esbuildVersion = (require('esbuild/package.json') as { version: string }).version;
  const diskCache = root === undefined ? undefined : openBundleCache(root, entryPoint, { esbuildVersion, build });
  let code = diskCache?.read();
  let inputs: string[] | undefined;
  if (code === undefined) ({ code, inputs } = runEsbuild(entryPoint, build));
  // How large it may be is decided where it is stored: the script ConfigMap keeps it compressed, and synth checks
  // that ConfigMap against what Kubernetes and `kubectl apply` accept (assertFitsConfigMap, last-applied.ts).
  const bytes = Buffer.byteLength(code, 'utf8');
  if (inputs) diskCache?.write(code, inputs);
  const bundle: RunnerBundle = { code, sha256: sha256Hex(code), bytes };
  cache.set(entryPoint, bundle);
  return bundle;
}

/** The bundle and the absolute paths of the files esbuild read to make it. */
function runEsbuild(entryPoint: string, build: BuildOptions & { write: false; metafile: true }): { code: string; inputs: string[] } {
  const { buildSync } = require('esbuild') as typeof import('esbuild');
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
      + `${CONFIGMAP_DATA_LIMIT_BYTES} bytes; make the runner bundle smaller`,
    );
  }
}

function packageRoot(): string {
  const root = checkoutRoot();
  if (root === undefined) throw new Error(`cannot bundle the runner: no db-migration checkout (package.json and src/runner/) above ${__dirname}`);
  return root;
}

/**
 * The checkout holding src/runner/main.ts: the nearest directory above this file with db-migration's package.json
 * and src/ (from src/chart under tsx; from lib/src/chart once compiled, where lib/package.json has no src/ beside it).
 */
function checkoutRoot(): string | undefined {
  let dir = __dirname;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(join(dir, 'src', 'runner')) && existsSync(pkg)
      && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'db-migration') return dir;
    const parent = dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}
