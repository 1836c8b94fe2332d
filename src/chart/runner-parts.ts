/**
 * The runner, compressed (runner-compression.ts) and cut into parts of equal size, as many as it takes for each to
 * stay under RUNNER_PART_MAX_BYTES, with the manifest the loader checks them against (runner-loader.ts). However
 * large the runner grows, every part's ConfigMap stays far below what client-side `kubectl apply` can store.
 */
import { createHash } from 'node:crypto';
import { compressRunner, RUNNER_ENCODING } from './runner-compression';
import { LOAD_RUNNER_JS, RUNNER_FILE, RUNNER_LOADER_FILE, RUNNER_MANIFEST_FILE, type RunnerManifest } from './runner-loader';

/**
 * A part's compressed bytes, at most. Its ConfigMap holds them as base64 (4/3 as many), and kubectl apply stores
 * that again in the last-applied annotation: about 86 KiB of the 256 KiB of annotations Kubernetes allows, a third,
 * so that labels and annotations the spec adds have ample room.
 */
export const RUNNER_PART_MAX_BYTES = 64 * 1024;

export interface RunnerPart {
  /** File name beside the loader (the key in its ConfigMap's binaryData). */
  readonly file: string;
  /** The part's compressed bytes. */
  readonly data: Buffer;
}

export interface PackedRunner {
  /** What runner.json holds. */
  readonly manifest: RunnerManifest;
  /** In order: their concatenation is the compressed runner. */
  readonly parts: readonly RunnerPart[];
}

export interface PackRunnerOptions {
  /**
   * A part's compressed bytes, at most.
   * @default RUNNER_PART_MAX_BYTES
   */
  readonly maxPartBytes?: number;
  /**
   * Where part `n` (from 1) comes from, for the loader's messages.
   * @default - the loader names the file only
   */
  readonly partSource?: (n: number) => string;
  /**
   * What to do when a part is missing or wrong, for the loader's messages.
   * @default - none
   */
  readonly remedy?: string;
}

/** The file name of part `n` (from 1). */
export function runnerPartFile(n: number): string {
  return `${RUNNER_FILE}.${RUNNER_ENCODING}.${n}`;
}

/** The runner compressed and split, with its manifest. */
export function packRunner(code: string, options: PackRunnerOptions = {}): PackedRunner {
  const compressed = compressRunner(code);
  const max = options.maxPartBytes ?? RUNNER_PART_MAX_BYTES;
  const parts = cut(compressed, Math.max(1, Math.ceil(compressed.length / max))).map((data, i) => ({ file: runnerPartFile(i + 1), data }));
  const manifest: RunnerManifest = {
    format: 1,
    encoding: RUNNER_ENCODING,
    file: RUNNER_FILE,
    bytes: Buffer.byteLength(code, 'utf8'),
    sha256: sha256(Buffer.from(code, 'utf8')),
    parts: parts.map((p, i) => ({
      file: p.file, bytes: p.data.length, sha256: sha256(p.data), ...(options.partSource ? { source: options.partSource(i + 1) } : {}),
    })),
    ...(options.remedy !== undefined ? { remedy: options.remedy } : {}),
  };
  return { manifest, parts };
}

/** runner.json's text. */
export function renderManifest(manifest: RunnerManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/** Every file the loader needs, by name: the loader, the manifest and the parts (for a directory of one's own). */
export function runnerFiles(packed: PackedRunner): Record<string, string | Buffer> {
  return {
    [RUNNER_LOADER_FILE]: LOAD_RUNNER_JS,
    [RUNNER_MANIFEST_FILE]: renderManifest(packed.manifest),
    ...Object.fromEntries(packed.parts.map((p) => [p.file, p.data])),
  };
}

/** `bytes` in `count` pieces whose sizes differ by one byte at most. */
function cut(bytes: Buffer, count: number): Buffer[] {
  const base = Math.floor(bytes.length / count);
  const longer = bytes.length % count;
  const pieces: Buffer[] = [];
  for (let i = 0, start = 0; i < count; i++) {
    const end = start + base + (i < longer ? 1 : 0);
    pieces.push(bytes.subarray(start, end));
    start = end;
  }
  return pieces;
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
