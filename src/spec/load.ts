/**
 * Loads `migration.yaml` into a typed spec. Every problem is collected (YAML syntax, schema, cross-field
 * rules) and reported at once with the file line and column of the offending node.
 */
import { readFileSync } from 'node:fs';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node } from 'yaml';
import { crossFieldIssues } from './cross-checks';
import { acceptedKeys, closest, describeIssue, formatPath, SpecError, type SpecIssue } from './issues';
import { migrationSpecSchema, type MigrationSpec } from './schema';

export function loadSpecFile(file: string): MigrationSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'file not found (pass --spec PATH, or create migration.yaml; see README)' : `cannot read the file (${code})`;
    throw new SpecError([{ file, line: 1, col: 1, path: '', message: why }]);
  }
  return parseSpec(text, file);
}

/** Parses and validates spec text. Throws SpecError with every problem found. */
export function parseSpec(text: string, file = 'migration.yaml'): MigrationSpec {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => lineCounter.linePos(offset);

  if (doc.errors.length > 0) {
    throw new SpecError(doc.errors.map((e) => {
      const { line, col } = at(e.pos[0]);
      return { file, line, col, path: '', message: `YAML syntax: ${e.message.split('\n')[0]}` };
    }));
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  const { spec, issues } = checkSpec(raw, (path, onKey) => ({ file, ...at(nodeOffset(doc, path, onKey)) }));
  if (spec === undefined) {
    issues.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.col ?? 0) - (b.col ?? 0));
    throw new SpecError(dedupe(issues));
  }
  return spec;
}

/**
 * Validates a spec given as an object (from code rather than a file): the same rules and messages as parseSpec,
 * each problem naming `source` and its field path (there is no line to give). Throws SpecError with every problem.
 */
export function validateSpec(input: unknown, source = 'spec'): MigrationSpec {
  const { spec, issues } = checkSpec(input ?? {}, () => ({ file: source }));
  if (spec === undefined) throw new SpecError(dedupe(issues));
  return spec;
}

type Locate = (path: readonly PropertyKey[], onKey: boolean) => Pick<SpecIssue, 'file' | 'line' | 'col'>;

/** The spec, or every problem with it: the schema's, then the rules across fields. */
function checkSpec(raw: unknown, locate: Locate): { spec?: MigrationSpec; issues: SpecIssue[] } {
  const issues: SpecIssue[] = [];
  const result = migrationSpecSchema.safeParse(raw, { reportInput: true });
  if (!result.success) {
    for (const issue of result.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        const accepted = acceptedKeys(migrationSpecSchema, issue.path);
        for (const key of issue.keys) {
          const guess = closest(key, accepted);
          const hint = guess ? `did you mean "${guess}"? ` : '';
          issues.push({
            ...locate([...issue.path, key], true),
            path: formatPath([...issue.path, key]),
            message: `unknown field (${hint}accepted here: ${accepted.join(', ')})`,
          });
        }
      } else if (issue.code === 'invalid_key') {
        // A bad key of a free-form map (labels, nodeSelector): point at the key and say what is wrong with it.
        const inner = issue.issues[0];
        issues.push({ ...locate(issue.path, true), path: formatPath(issue.path), message: inner ? describeIssue(inner) : issue.message });
      } else {
        issues.push({ ...locate(issue.path, false), path: formatPath(issue.path), message: describeIssue(issue) });
      }
    }
  }
  for (const c of crossFieldIssues(raw)) {
    issues.push({ ...locate(c.path, c.onKey ?? false), path: formatPath(c.path), message: c.message });
  }
  return issues.length === 0 && result.success ? { spec: result.data as MigrationSpec, issues } : { issues };
}

/** Offset of the node at `path`, or of its closest existing ancestor. */
function nodeOffset(doc: Document, path: readonly PropertyKey[], onKey: boolean): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as Node | null)?.range?.[0] ?? 0;
  for (let i = 0; i < path.length; i++) {
    const step = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(step));
      if (!pair) return offset;
      const last = i === path.length - 1;
      const keyNode = pair.key as Node;
      if (last && onKey) return keyNode.range?.[0] ?? offset;
      const value = pair.value as Node | null;
      offset = value?.range?.[0] ?? keyNode.range?.[0] ?? offset;
      node = value;
    } else if (isSeq(node) && typeof step === 'number') {
      const item = node.items[step] as Node | undefined;
      if (!item) return offset;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      return offset;
    }
  }
  return offset;
}

function dedupe(issues: SpecIssue[]): SpecIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const k = `${i.line}:${i.col}:${i.path}:${i.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
