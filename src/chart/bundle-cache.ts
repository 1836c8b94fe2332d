/**
 * The runner bundle kept on disk between runs, so that every `db-migration` command does not spend a third of a
 * second in esbuild. An entry is reused only when nothing that can change the bundle has changed, byte for byte:
 * - every file under the checkout's src/, not only those the last build read: a new file can change what an import
 *   resolves to (`./x.tsx` or `./x/index.ts` beside `./x.ts`);
 * - every other file the last build read (esbuild's metafile inputs: the dependencies in node_modules);
 * - package.json, package-lock.json, node_modules/.package-lock.json (npm rewrites it on every install) and
 *   tsconfig.json;
 * - esbuild's version and the build options, entry point included.
 * One file per entry point in node_modules/.cache/db-migration/, written whole to a temporary file and renamed, so a
 * reader sees a complete entry or none. Whatever goes wrong with the cache means a build, never a failure.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';

/** Bump when the entry layout or what the key covers changes. */
const FORMAT = 1;

/** The files beside src/ that decide how it builds. */
const PACKAGE_FILES = ['package.json', 'package-lock.json', join('node_modules', '.package-lock.json'), 'tsconfig.json'];

/** An entry's first line; the bundle follows it (kept out of the JSON, which would take longer to parse than to hash). */
interface Header {
  readonly format: number;
  readonly key: string;
  /** Absolute paths of the files outside src/ the build read. */
  readonly inputs: string[];
  /** Of the bundle that follows. */
  readonly sha256: string;
}

export interface BundleCache {
  /** The stored bundle, when none of its inputs changed; otherwise undefined. */
  read(): string | undefined;
  /** Stores a bundle and the files it was built from (absolute paths); skipped when src/ changed during the build. */
  write(code: string, inputs: readonly string[]): void;
}

/**
 * The cache for one entry point of the checkout at `root`, or undefined when the entry point is not under its src/
 * (the key could not cover what it imports) or src/ cannot be read. `settings` is everything else that shapes the
 * bundle (esbuild's version, the build options).
 */
export function openBundleCache(root: string, entryPoint: string, settings: unknown): BundleCache | undefined {
  const src = join(root, 'src');
  if (!isInside(src, entryPoint)) return undefined;
  const dir = join(root, 'node_modules', '.cache', 'db-migration');
  const file = join(dir, `runner-${sha256(entryPoint).slice(0, 16)}.cache`);
  const treeKey = () => checkoutKey(root, src, settings);
  let tree: string;
  try {
    tree = treeKey();
  } catch {
    return undefined;
  }
  return {
    read() {
      try {
        const text = readFileSync(file, 'utf8');
        const newline = text.indexOf('\n');
        const header = JSON.parse(text.slice(0, newline)) as Header;
        if (header.format !== FORMAT || !Array.isArray(header.inputs) || header.key !== inputsKey(tree, header.inputs)) return undefined;
        const code = text.slice(newline + 1);
        return sha256(code) === header.sha256 ? code : undefined;
      } catch {
        return undefined;
      }
    },
    write(code, inputs) {
      let tmp: string | undefined;
      try {
        // An edit during the build may or may not be in `code`: store nothing rather than pair it with either state.
        if (treeKey() !== tree) return;
        const outside = [...new Set(inputs)].filter((f) => !isInside(src, f)).sort();
        const header: Header = { format: FORMAT, key: inputsKey(tree, outside), inputs: outside, sha256: sha256(code) };
        mkdirSync(dir, { recursive: true });
        tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
        writeFileSync(tmp, `${JSON.stringify(header)}\n${code}`);
        renameSync(tmp, file);
      } catch {
        if (tmp) rmSync(tmp, { force: true });
      }
    },
  };
}

/** Hash of the settings, the package files and every file under src/ (path and content). */
function checkoutKey(root: string, src: string, settings: unknown): string {
  const hash = createHash('sha256').update(`db-migration runner bundle ${FORMAT}\0${JSON.stringify(settings)}\0`);
  for (const name of PACKAGE_FILES) hash.update(`${name}\0${contentHash(join(root, name), true)}\0`);
  for (const path of filesUnder(src)) hash.update(`${relative(root, path)}\0${contentHash(path, false)}\0`);
  return hash.digest('hex');
}

/** The checkout's key extended with the content of the other files a build read (throws when one is gone). */
function inputsKey(tree: string, inputs: readonly string[]): string {
  const hash = createHash('sha256').update(`${tree}\0`);
  for (const path of inputs) hash.update(`${path}\0${contentHash(path, false)}\0`);
  return hash.digest('hex');
}

function contentHash(path: string, mayBeAbsent: boolean): string {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch (err) {
    if (mayBeAbsent && (err as NodeJS.ErrnoException).code === 'ENOENT') return 'absent';
    throw err;
  }
}

/** Every file under `dir`, sorted; anything that is neither a file nor a directory (a symlink) makes it throw. */
function filesUnder(dir: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...filesUnder(path));
    else if (entry.isFile()) files.push(path);
    else throw new Error(`${path}: not a regular file or directory`);
  }
  return files.sort();
}

function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

function sha256(data: string): string {
  return createHash('sha256').update(data, 'utf8').digest('hex');
}
