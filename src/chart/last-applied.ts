/**
 * What client-side `kubectl apply` writes, so synth can refuse a manifest the API server would reject.
 *
 * `kubectl apply` (client-side, the default) stores each object, as given, in the annotation
 * `kubectl.kubernetes.io/last-applied-configuration`: kubectl's GetModifiedConfiguration removes any earlier copy
 * of that annotation (leaving `metadata.annotations: {}` when it was the only one, or when there were none), then
 * encodes the object with apimachinery's unstructured JSON scheme, which is Go's `json.NewEncoder(w).Encode`:
 * map keys sorted, HTML-safe escaping (`<`, `>`, `&` as \u003c, \u003e, \u0026), and a trailing newline.
 * The API server then refuses an object whose annotations, keys plus values, exceed 262,144 bytes
 * (apimachinery's TotalAnnotationSizeLimitB), so a large ConfigMap cannot be applied this way even though it
 * fits the 1 MiB object limit.
 */

/** The annotation client-side apply writes. */
export const LAST_APPLIED_ANNOTATION = 'kubectl.kubernetes.io/last-applied-configuration';

/** Kubernetes' limit on all of an object's annotations together (keys plus values), in bytes. */
export const ANNOTATIONS_LIMIT_BYTES = 262_144;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type KubeObject = { kind?: unknown; metadata?: { name?: unknown; annotations?: Record<string, string> } } & Record<string, unknown>;

/** The exact value kubectl would store in the last-applied annotation for `object` (as written to the manifest). */
export function lastAppliedConfiguration(object: Record<string, unknown>): string {
  const metadata = { ...(object.metadata as Record<string, unknown> | undefined) };
  const annotations = { ...(metadata.annotations as Record<string, string> | undefined) };
  delete annotations[LAST_APPLIED_ANNOTATION];
  metadata.annotations = annotations;
  return `${goJson({ ...object, metadata } as Json)}\n`;
}

/** The object's annotations, keys plus values in bytes, once client-side apply has added its own. */
export function appliedAnnotationsBytes(object: Record<string, unknown>): number {
  const own = { ...((object as KubeObject).metadata?.annotations ?? {}) };
  own[LAST_APPLIED_ANNOTATION] = lastAppliedConfiguration(object);
  return Object.entries(own).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
}

export interface AppliedSize {
  /** `Kind/name`. */
  readonly object: string;
  /** Bytes of the annotations client-side apply would store. */
  readonly annotationsBytes: number;
}

/** Some object could not be applied with client-side `kubectl apply`; the message names each, with its size. */
export class ManifestTooLargeError extends Error {
  constructor(readonly tooLarge: readonly AppliedSize[]) {
    super(tooLarge.map((s) => `${s.object} cannot be applied with "kubectl apply": it would carry ${s.annotationsBytes} bytes of `
      + `annotations (the object itself, in ${LAST_APPLIED_ANNOTATION}), more than Kubernetes' limit of ${ANNOTATIONS_LIMIT_BYTES} bytes`).join('\n'));
    this.name = 'ManifestTooLargeError';
  }
}

/** Sizes per object; throws ManifestTooLargeError, naming every object that `kubectl apply` could not store. */
export function checkClientSideApply(objects: readonly Record<string, unknown>[]): AppliedSize[] {
  const sizes = objects.map((o) => ({
    object: `${String((o as KubeObject).kind)}/${String((o as KubeObject).metadata?.name)}`,
    annotationsBytes: appliedAnnotationsBytes(o),
  }));
  const tooLarge = sizes.filter((s) => s.annotationsBytes > ANNOTATIONS_LIMIT_BYTES);
  if (tooLarge.length > 0) throw new ManifestTooLargeError(tooLarge);
  return sizes;
}

/** Go's encoding/json output for a decoded JSON value (sorted keys, HTML-safe strings, no spaces). */
export function goJson(value: Json): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return goString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(goJson).join(',')}]`;
  const keys = Object.keys(value).filter((k) => value[k] !== undefined).sort(compareBytes);
  return `{${keys.map((k) => `${goString(k)}:${goJson(value[k])}`).join(',')}}`;
}

/** Go sorts map keys by their UTF-8 bytes. */
function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

const GO_ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function goString(s: string): string {
  // Control characters, the HTML-sensitive <, > and &, and U+2028/U+2029 are \u-escaped, as Go's encoder does.
  return `"${s.replace(/["\\\u0000-\u001f<>&\u2028\u2029]/g, (c) => GO_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}
