/**
 * Spec problems as users see them: `FILE:LINE:COL field.path: what is wrong (what is accepted)`.
 */
import type * as z from 'zod/mini';

export interface SpecIssue {
  /** The file, or for a spec given as an object (validateSpec) what it was given to. */
  readonly file: string;
  /** Absent for a spec given as an object. */
  readonly line?: number;
  readonly col?: number;
  /** Dotted field path, e.g. `databases[0].source.password`. */
  readonly path: string;
  readonly message: string;
}

export class SpecError extends Error {
  constructor(readonly issues: readonly SpecIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'SpecError';
  }
}

/** `FILE:LINE:COL field.path: message`; for a spec given as an object, `SOURCE: field.path: message`. */
export function formatIssue(i: SpecIssue): string {
  const where = i.line === undefined ? `${i.file}:` : `${i.file}:${i.line}:${i.col}`;
  return `${where} ${i.path || '(top level)'}: ${i.message}`;
}

export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

/** The accepted keys of the object schema at `path`, for "unknown field" messages. */
export function acceptedKeys(schema: z.ZodMiniType, path: readonly PropertyKey[]): string[] {
  let node: unknown = schema;
  for (const step of [...path, null]) {
    node = unwrap(node);
    const def = (node as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
    if (!def) return [];
    if (step === null) {
      return def.type === 'object' ? Object.keys(def.shape as object) : [];
    }
    if (def.type === 'object') node = (def.shape as Record<string, unknown>)[String(step)];
    else if (def.type === 'array') node = def.element;
    else if (def.type === 'record') node = def.valueType;
    else return [];
  }
  return [];
}

function unwrap(node: unknown): unknown {
  for (;;) {
    const def = (node as { _zod?: { def?: Record<string, unknown> } })?._zod?.def;
    if (!def) return node;
    if (['optional', 'default', 'prefault', 'nullable', 'readonly', 'catch'].includes(def.type as string)) node = def.innerType;
    else if (def.type === 'pipe') node = def.in;
    else return node;
  }
}

/** The closest of `candidates` to `word`, if it is close enough to be a likely typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) { best = c; bestDistance = d; }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length];
}

/** A zod issue in the project's words. */
export function describeIssue(issue: z.core.$ZodIssue): string {
  // Never echo a value given where a password belongs: it may be the password itself.
  const secret = issue.path.some((p) => /password|cacert/i.test(String(p)));
  const rawInput = (issue as { input?: unknown }).input;
  const input = secret ? undefined : rawInput;
  const hasInput = 'input' in issue;
  switch (issue.code) {
    case 'invalid_type':
      if (!hasInput || rawInput === undefined) return `is required (${expectedText(issue.expected)})`;
      if (issue.message && !issue.message.startsWith('Invalid input')) return secret ? issue.message : withGot(issue.message, input);
      return `must be ${expectedText(issue.expected)}${secret ? '' : ` (got ${describeValue(input)})`}`;
    case 'invalid_value':
      return `must be one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}${secret ? '' : ` (got ${describeValue(input)})`}`;
    case 'too_small':
    case 'too_big':
    case 'invalid_format':
    case 'custom':
      return withGot(issue.message, hasInput ? input : undefined);
    default:
      return issue.message;
  }
}

function withGot(message: string, input: unknown): string {
  if (input === undefined || (typeof input === 'object' && input !== null)) return message;
  return `${message}; got ${describeValue(input)}`;
}

function expectedText(expected: string): string {
  const words: Record<string, string> = {
    string: 'a string', number: 'a number', int: 'a whole number', boolean: 'true or false',
    object: 'a mapping', array: 'a list', record: 'a mapping',
  };
  return words[expected] ?? expected;
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  return String(v);
}
