/**
 * Property-based bad input for the runtime config the runner reads from its ConfigMap: a hand-edited config
 * gets field-path errors (exit 2), never a crash. Each generated config is a valid one with one mutation that
 * no valid config survives.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConfigError, EXIT_CODES, loadRuntimeConfig, main } from '../src/runner/main';
import { parseSpec } from '../src/spec/load';
import { toRuntimeConfig } from '../src/spec/runtime-config';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = (string | number)[];

const VALID = toRuntimeConfig(parseSpec(`
namespace: apps
migration: { verify: checksums, dump: { excludeSchemas: [audit] } }
defaults:
  destination: { host: new, sslmode: verify-full, caCert: { secret: tls, key: ca.crt } }
databases:
  - name: orders
    source: { host: old, database: orders, username: orders, password: { secret: s, key: a } }
    destination: { database: orders, username: orders, password: { secret: s, key: b } }
`)) as unknown as Json;

function nodes(value: Json, path: Path = []): { path: Path; value: Json }[] {
  const here = { path, value };
  if (Array.isArray(value)) return [here, ...value.flatMap((v, i) => nodes(v, [...path, i]))];
  if (value !== null && typeof value === 'object') return [here, ...Object.entries(value).flatMap(([k, v]) => nodes(v, [...path, k]))];
  return [here];
}

function edit(path: Path, fn: (parent: Record<string, Json>, key: string) => void): Json {
  const copy = structuredClone(VALID);
  let node = copy as Record<string, Json>;
  for (const step of path.slice(0, -1)) node = node[step as string] as Record<string, Json>;
  fn(node, path[path.length - 1] as string);
  return copy;
}

const ALL = nodes(VALID).filter((n) => n.path.length > 0);
const mappings = ALL.filter((n) => n.value !== null && typeof n.value === 'object' && !Array.isArray(n.value));
const scalars = ALL.filter((n) => n.value === null || typeof n.value !== 'object');
const dotted = (path: Path) => path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('').replace(/^\./, '').replace(/\.\[/g, '[');

const mutation = fc.oneof(
  fc.record({ at: fc.constantFrom(...mappings), key: fc.stringMatching(/^[a-z][a-zA-Z]{2,10}$/) }).map(({ at, key }) => ({
    config: edit([...at.path, 'x'], (p) => { p[`x${key}`] = 'unexpected'; }),
    field: dotted([...at.path]),
  })),
  fc.record({ at: fc.constantFrom(...scalars), v: fc.constantFrom<Json>({ wrong: 1 }, [1], null) }).map(({ at, v }) => ({
    config: edit(at.path, (p, k) => { p[k] = v; }),
    field: dotted(at.path),
  })),
  // a required field removed (migration.* fall back to the spec's defaults, as in the spec; the rest is required)
  fc.constantFrom(...ALL.filter((n) => typeof n.path[n.path.length - 1] === 'string'
    && !['caCertFile', 'terminationLog'].includes(String(n.path[n.path.length - 1]))
    && !(n.path[0] === 'migration' && n.path.length > 1)))
    .map((at) => ({ config: edit(at.path, (p, k) => { delete p[k]; }), field: dotted(at.path.slice(0, -1)) })),
);

describe('hand-edited runtime configs, generated', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dbm-config-fuzz-'));
  const file = join(dir, 'config.json');

  it('loads the unmutated config (the generator starts from a valid one)', () => {
    writeFileSync(file, JSON.stringify(VALID));
    expect(() => loadRuntimeConfig(file)).not.toThrow();
  });

  it('answers every mutated config with field-path errors, never a crash', () => {
    fc.assert(fc.property(mutation, ({ config, field }) => {
      writeFileSync(file, JSON.stringify(config));
      let error: unknown;
      try { loadRuntimeConfig(file); } catch (err) { error = err; }
      expect(error).toBeInstanceOf(ConfigError);
      const lines = (error as ConfigError).lines;
      expect(lines.length).toBeGreaterThan(0);
      for (const line of lines) expect(line).toMatch(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: \\S+: \\S`));
      expect(lines.some((l) => l.includes(`: ${field}`) || (field === '' && l.includes('(top level)')))).toBe(true);
    }), { numRuns: 2000 });
  });

  it('makes the runner exit 2 without a stack trace for generated bad configs', async () => {
    await fc.assert(fc.asyncProperty(mutation, async ({ config }) => {
      writeFileSync(file, JSON.stringify(config));
      const err = new PassThrough();
      let text = '';
      err.on('data', (c: Buffer) => { text += c.toString(); });
      const code = await main(['--config', file], { env: {}, out: new PassThrough(), err });
      expect(code).toBe(EXIT_CODES.config);
      expect(text).toMatch(/^❌ /);
      expect(text).not.toMatch(/\n\s+at /);
    }), { numRuns: 300 });
  });
});
