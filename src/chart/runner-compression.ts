/**
 * The runner travels brotli-compressed, at quality 11 (node's zlib has brotli built in, so the loader needs nothing
 * else). Measured on the runner bundle against gzip -9, which it replaced: 15 % smaller (97 KB against 114 KB for
 * 356 KB of JavaScript), unpacked in about the same time (1.2 ms against 1.0 ms, next to node's 40 ms start), but
 * about half a second to compress. So a compressed runner is made once: kept in memory per process and, in a
 * checkout, on disk beside the bundle cache (node_modules/.cache/db-migration/), where a later process takes it
 * only after unpacking it to the very same runner. The installed package ships it compressed (lib/runner.js.br).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, brotliDecompressSync, constants } from 'node:zlib';
import { checkoutRoot } from './package-info';

/** The runner's encoding: the loader unpacks it with zlib.brotliDecompressSync. */
export const RUNNER_ENCODING = 'br';

/** By the hex sha256 of the runner: its compressed bytes. */
const memo = new Map<string, Buffer>();

/** The runner compressed with brotli at quality 11 (made once per runner, see above). */
export function compressRunner(code: string): Buffer {
  const sha256 = createHash('sha256').update(code, 'utf8').digest('hex');
  let compressed = memo.get(sha256) ?? readCached(sha256);
  if (compressed === undefined) {
    const input = Buffer.from(code, 'utf8');
    compressed = brotliCompressSync(input, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: input.length },
    });
    writeCached(sha256, compressed);
  }
  memo.set(sha256, compressed);
  return compressed;
}

/** The runner's JavaScript from its compressed bytes. */
export function decompressRunner(compressed: Buffer): string {
  return brotliDecompressSync(compressed).toString('utf8');
}

/** Unpacks a runner compressed elsewhere (the package's prebuilt one), keeping those bytes as its compressed form. */
export function loadCompressedRunner(compressed: Buffer): string {
  const code = decompressRunner(compressed);
  memo.set(createHash('sha256').update(code, 'utf8').digest('hex'), compressed);
  return code;
}

/** The on-disk copy's file: per runner and per brotli version (another version may compress differently). */
function cacheFile(sha256: string): string | undefined {
  const root = checkoutRoot();
  return root === undefined ? undefined : join(root, 'node_modules', '.cache', 'db-migration', `compressed-${sha256}-brotli-${process.versions.brotli}.br`);
}

function readCached(sha256: string): Buffer | undefined {
  try {
    const file = cacheFile(sha256);
    if (file === undefined) return undefined;
    const compressed = readFileSync(file);
    return createHash('sha256').update(brotliDecompressSync(compressed)).digest('hex') === sha256 ? compressed : undefined;
  } catch {
    return undefined;
  }
}

/** Copies kept on disk: the newest few (the checkout's runner, and what tests compress beside it). */
const KEEP_ON_DISK = 4;

/** Written whole (temporary file, then rename); all but the newest few copies are removed. A failure only means no copy. */
function writeCached(sha256: string, compressed: Buffer): void {
  const file = cacheFile(sha256);
  if (file === undefined) return;
  const dir = join(file, '..');
  const tmp = `${file}.${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
  try {
    mkdirSync(dir, { recursive: true });
    writeFileSync(tmp, compressed);
    renameSync(tmp, file);
    const copies = readdirSync(dir).filter((f) => f.startsWith('compressed-') && f.endsWith('.br')).map((f) => join(dir, f));
    const newestFirst = copies.map((f) => ({ f, t: statSync(f).mtimeMs })).sort((a, b) => b.t - a.t).map((c) => c.f);
    for (const old of newestFirst.slice(KEEP_ON_DISK)) rmSync(old, { force: true });
  } catch {
    rmSync(tmp, { force: true });
  }
}
