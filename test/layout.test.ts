/**
 * The source layout a newcomer reads in one look (README, Development): no import circle anywhere in src/
 * (madge, through the TypeScript config, type-only imports included), no file over 400 lines, no file name twice
 * under src/runner/, and the README's map naming exactly the runner's folders, each with the main file that opens
 * with what lives in the folder.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import madge from 'madge';
import { describe, expect, it } from 'vitest';
import { REPO } from './support/repo';

const SRC = join(REPO, 'src');
const RUNNER = join(SRC, 'runner');
const MAX_LINES = 400;

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith('.ts') ? [path] : [];
  });
}

/** The README's runner map: its folder lines, as folder -> main file. */
function readmeMap(): Map<string, string> {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const block = /```\nsrc\/runner\/\n([\s\S]*?)```/.exec(readme);
  expect(block, 'the README\'s Development section has the src/runner/ map').not.toBeNull();
  const map = new Map<string, string>();
  for (const line of block![1].split('\n')) {
    const m = /^ {2}([a-z-]+)\/ +([a-z-]+\.ts)/.exec(line);
    if (m) map.set(m[1], m[2]);
  }
  return map;
}

describe('the source layout', () => {
  it('has no import circle in src/', async () => {
    const graph = await madge(SRC, { fileExtensions: ['ts'], tsConfig: join(REPO, 'tsconfig.json') });
    expect(Object.keys(graph.obj()).length).toBeGreaterThan(100);
    expect(graph.circular()).toEqual([]);
  });

  it('has no file over 400 lines in src/', () => {
    const long = tsFiles(SRC)
      .map((f) => ({ file: relative(REPO, f), lines: readFileSync(f, 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > MAX_LINES);
    expect(long).toEqual([]);
  });

  it('has no file name twice under src/runner/', () => {
    const seen = new Map<string, string[]>();
    for (const f of tsFiles(RUNNER)) seen.set(basename(f), [...(seen.get(basename(f)) ?? []), relative(RUNNER, f)]);
    expect([...seen.values()].filter((paths) => paths.length > 1)).toEqual([]);
  });

  it('is the README\'s map: every runner folder, each with its main file saying what lives there', () => {
    const folders = readdirSync(RUNNER).filter((n) => statSync(join(RUNNER, n)).isDirectory()).sort();
    const map = readmeMap();
    expect([...map.keys()].sort()).toEqual(folders);
    for (const [folder, main] of map) {
      const text = readFileSync(join(RUNNER, folder, main), 'utf8');
      expect(text.startsWith(`/**\n * Folder ${folder}/: `), `${folder}/${main} opens with the folder's comment`).toBe(true);
    }
  });
});
