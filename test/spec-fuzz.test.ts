/**
 * Property-based bad input: thousands of specs, each a valid spec with one guaranteed-invalid mutation.
 * Whatever the mutation, the answer is exit 2 and a located, field-named message, never a stack trace.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { SpecError } from '../src/spec/issues';
import { parseSpec } from '../src/spec/load';
import { runCli } from './support/cli';

const VALID = {
  name: 'db-migration',
  namespace: 'apps',
  labels: { team: 'platform' },
  image: { repository: 'ghcr.io/org/helper', tag: '1.0', registry: 'mirror.local', pullPolicy: 'IfNotPresent', pullSecrets: ['regcred'] },
  job: {
    activeDeadlineSeconds: 7200, backoffLimit: 2, ttlSecondsAfterFinished: 86400,
    resources: { requests: { memory: '256Mi', cpu: '250m' }, limits: { memory: '1Gi', cpu: '1' } },
    storage: { dumps: '30Gi', logs: '1Gi', tmp: '256Mi' },
    nodeSelector: { pool: 'db' },
    tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }],
    securityContext: { runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000 },
    networkPolicy: { enabled: true },
  },
  migration: {
    dryRun: false, verbose: true, logFormat: 'json',
    timeouts: { connect: 10, dump: 3600, restore: 3600, verify: 600 },
    retries: { attempts: 3, delaySeconds: 10 },
    dump: { jobs: 2, compression: 0, lockWaitTimeoutSeconds: 60, schemas: [], excludeSchemas: ['audit'], extraArgs: ['--no-comments'] },
    restore: { jobs: 2, noOwner: true, noAcl: false, clean: false, extraArgs: [] },
    verify: 'checksums',
  },
  defaults: {
    source: { host: 'old.apps.svc', port: 5432, sslmode: 'prefer' },
    destination: { host: 'new.example.internal', port: 5432, sslmode: 'verify-full', caCert: { secret: 'tls', key: 'ca.crt' } },
  },
  databases: [
    {
      name: 'orders',
      source: { database: 'orders', username: 'orders', password: { secret: 'pw', key: 'orders-src' } },
      destination: { database: 'orders', username: 'orders', password: { secret: 'pw', key: 'orders-dst' } },
    },
    {
      name: 'billing', enabled: false,
      source: { database: 'billing', username: 'billing', password: { secret: 'pw', key: 'billing-src' } },
      destination: { database: 'billing', username: 'billing', password: { secret: 'pw', key: 'billing-dst' } },
    },
  ],
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = (string | number)[];

/** Every path in the valid spec, with the value found there. */
function leaves(value: Json, path: Path = []): { path: Path; value: Json }[] {
  const here = { path, value };
  if (Array.isArray(value)) return [here, ...value.flatMap((v, i) => leaves(v, [...path, i]))];
  if (value !== null && typeof value === 'object') return [here, ...Object.entries(value).flatMap(([k, v]) => leaves(v, [...path, k]))];
  return [here];
}

function setAt(root: Json, path: Path, fn: (parent: Record<string, Json> | Json[], key: string | number) => void): Json {
  const copy = structuredClone(root) as Json;
  let node = copy as Record<string, Json> | Json[];
  for (const step of path.slice(0, -1)) node = (node as Record<string, Json>)[step as string] as Record<string, Json>;
  fn(node, path[path.length - 1]);
  return copy;
}

const ALL = leaves(VALID as unknown as Json);
// Maps with fixed fields (free-form maps such as labels accept new keys, so they are left out).
const FREE_FORM = new Set(['labels', 'nodeSelector', 'annotations']);
const objects = ALL.filter((l) => l.value !== null && typeof l.value === 'object' && !Array.isArray(l.value)
  && !FREE_FORM.has(String(l.path[l.path.length - 1])));
const scalars = ALL.filter((l) => l.value === null || typeof l.value !== 'object');
// Keys whose absence the schema must report (no default, not filled by defaults).
const REQUIRED = ['namespace', 'databases', 'databases.0.source.database', 'databases.0.destination.password.key', 'defaults.destination.caCert.secret'];

/** A mutation that no valid spec survives, and the field path the error must name. */
const mutation = fc.oneof(
  // an unknown key in any mapping
  fc.record({ at: fc.constantFrom(...objects), key: fc.stringMatching(/^[a-z][a-zA-Z]{2,12}$/), v: fc.jsonValue() }).map(({ at, key, v }) => ({
    spec: setAt(VALID as unknown as Json, [...at.path, '__'], (p) => { (p as Record<string, Json>)[`x${key}`] = v as Json; }),
    mustName: [...at.path, `x${key}`].join('.'),
  })),
  // a value of the wrong type for any scalar
  fc.record({ at: fc.constantFrom(...scalars), v: fc.oneof(fc.constant({ not: 'a scalar' } as Json), fc.constant([1, 2] as Json)) }).map(({ at, v }) => ({
    spec: setAt(VALID as unknown as Json, at.path, (p, k) => { (p as Record<string, Json>)[k as string] = v; }),
    mustName: at.path.join('.'),
  })),
  // a number where the schema wants a number, out of any sensible range, or a string where it wants a number
  fc.record({ at: fc.constantFrom(...scalars.filter((s) => typeof s.value === 'number')), v: fc.oneof(fc.integer({ max: -1 }), fc.double({ min: 0.1, max: 0.9 }), fc.string()) })
    .map(({ at, v }) => ({
      spec: setAt(VALID as unknown as Json, at.path, (p, k) => { (p as Record<string, Json>)[k as string] = v as Json; }),
      mustName: at.path.join('.'),
    })),
  // a required key removed
  fc.constantFrom(...REQUIRED).map((dotted) => {
    const path = dotted.split('.').map((s) => (/^\d+$/.test(s) ? Number(s) : s));
    return { spec: setAt(VALID as unknown as Json, path, (p, k) => { delete (p as Record<string, Json>)[k as string]; }), mustName: path.slice(0, -1).join('.') };
  }),
);

const dotted = (p: string) => p.replace(/\[(\d+)\]/g, '.$1');

describe('bad input, generated', () => {
  it('accepts the unmutated spec (the generator starts from a valid one)', () => {
    expect(() => parseSpec(stringify(VALID))).not.toThrow();
  });

  it('answers every mutated spec with located, field-named errors and never a crash', () => {
    fc.assert(fc.property(mutation, ({ spec, mustName }) => {
      let error: unknown;
      try {
        parseSpec(stringify(spec), 'fuzz.yaml');
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(SpecError);
      const issues = (error as SpecError).issues;
      expect(issues.length).toBeGreaterThan(0);
      for (const line of (error as SpecError).message.split('\n')) {
        expect(line).toMatch(/^fuzz\.yaml:\d+:\d+ \S+: \S.*$/);
      }
      // the field the mutation touched (or its parent, for a removed key) is named
      expect(issues.some((i) => dotted(i.path).startsWith(mustName) || mustName.startsWith(dotted(i.path)))).toBe(true);
    }), { numRuns: 3000 });
  });

  it('exits 2 from the command for generated bad specs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-fuzz-'));
    await fc.assert(fc.asyncProperty(mutation, async ({ spec }) => {
      const file = join(dir, 'migration.yaml');
      writeFileSync(file, stringify(spec));
      const res = await runCli(['validate', '--spec', file]);
      expect(res.code).toBe(2);
      expect(res.stderr).not.toMatch(/\n\s+at /);
    }), { numRuns: 300 });
  });
});
