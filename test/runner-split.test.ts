/**
 * No size cliff: a runner four times today's size (today's bundle followed by a constant of random text three times
 * its length, which compresses poorly) is written by synth, every object of it fits what the real kubectl's
 * client-side apply stores (`kubectl apply -f dist` and `-k .`), and the Job, run as the kubelet would, puts it
 * together and migrates a database with it. Without one of its ConfigMaps the pod fails in one line naming it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { ANNOTATIONS_LIMIT_BYTES, appliedAnnotationsBytes, LAST_APPLIED_ANNOTATION, lastAppliedConfiguration } from '../src/chart/last-applied';
import { compressRunner } from '../src/chart/runner-compression';
import { RUNNER_PART_MAX_BYTES } from '../src/chart/runner-parts';
import { RUNNER_SHA256_ANNOTATION } from '../src/chart/migration-job';
import { runCli } from './support/cli';
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver';
import { kubectlApply, objectKey, synthCheckout } from './support/kubectl-apply';
import { runJobPodAsKubelet } from './support/kubelet';
import { PG_BIN, startPgServer, type PgServer } from './support/pg-server';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The runner synth bundles: set in beforeAll to the padded one. */
const runner = vi.hoisted(() => ({ code: '' }));
vi.mock('../src/chart/runner-bundle', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../src/chart/runner-bundle')>();
  return { ...actual, bundleRunner: () => ({ code: runner.code, sha256: actual.sha256Hex(runner.code), bytes: Buffer.byteLength(runner.code) }) };
});

const dir = mkdtempSync(join(tmpdir(), 'dbm-runner-split-'));
const temps = [dir];
let today: string;
let yaml: string;
let objects: Obj[];
let summary: string;
let server: FakeApiServer;
let source: PgServer;
let destination: PgServer;

beforeAll(async () => {
  const actual = await vi.importActual<typeof import('../src/chart/runner-bundle')>('../src/chart/runner-bundle');
  today = actual.bundleRunner().code;
  const padding = randomBytes(Math.ceil((3 * today.length * 3) / 4)).toString('base64');
  runner.code = `${today}\n;var __dbmPadding = ${JSON.stringify(padding)};\n`;
  // given a source database and an empty destination, and a spec that names them
  [source, destination] = await Promise.all([startPgServer({ name: 'split-src' }), startPgServer({ name: 'split-dst' })]);
  await Promise.all([source.query('CREATE DATABASE app'), destination.query('CREATE DATABASE app')]);
  await source.query('CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 500) g', 'app');
  const spec = join(dir, 'migration.yaml');
  writeFileSync(spec, `namespace: apps
defaults:
  source: { host: ${source.host}, port: ${source.port}, username: ${source.superuser}, password: { secret: pg, key: source }, sslmode: disable }
  destination: { host: ${destination.host}, port: ${destination.port}, username: ${destination.superuser}, password: { secret: pg, key: destination }, sslmode: disable }
databases:
  - { name: app, source: { database: app }, destination: { database: app } }
`);
  // when synth writes the migration with the large runner
  const out = join(dir, 'dist');
  const run = await runCli(['synth', '--spec', spec, '--out', out]);
  expect(run.stderr).toBe('');
  expect(run.code).toBe(0);
  summary = run.stdout;
  yaml = readFileSync(join(out, 'db-migration.k8s.yaml'), 'utf8');
  objects = parseAllDocuments(yaml).map((d) => d.toJS() as Obj);
  server = await startFakeApiServer();
}, 300_000);
afterAll(async () => {
  await Promise.all([server?.close(), source?.destroy(), destination?.destroy()]);
  temps.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

const runnerConfigMaps = () => objects.filter((o) => o.kind === 'ConfigMap' && /-runner-\d+$/.test(o.metadata.name));

describe('a runner four times today\'s size', () => {
  it('is four times today\'s runner, as JavaScript and compressed', () => {
    expect(Buffer.byteLength(runner.code)).toBeGreaterThanOrEqual(4 * Buffer.byteLength(today));
    expect(compressRunner(runner.code).length).toBeGreaterThanOrEqual(4 * compressRunner(today).length);
  });

  it('is written by synth over as many ConfigMaps as it takes, each under a third of the limit, and the summary names the largest object', () => {
    const parts = runnerConfigMaps();
    expect(parts.length).toBe(Math.ceil(compressRunner(runner.code).length / RUNNER_PART_MAX_BYTES));
    expect(parts.length).toBeGreaterThanOrEqual(8);
    expect(objects.map(objectKey)).toEqual([
      'ServiceAccount/db-migration', 'ConfigMap/db-migration-script', ...parts.map(objectKey), 'ConfigMap/db-migration-config', 'Job/db-migration',
    ]);
    const sizes = objects.map((o) => ({ key: objectKey(o), bytes: appliedAnnotationsBytes(o) })).sort((a, b) => b.bytes - a.bytes);
    for (const { key, bytes } of sizes) expect(bytes, key).toBeLessThan(ANNOTATIONS_LIMIT_BYTES / 3);
    expect(summary).toContain(`\n   largest object: ${sizes[0].key}, ${(sizes[0].bytes / 1024).toFixed(1)} KiB as kubectl apply stores it, `
      + `of the 256.0 KiB Kubernetes allows (${Math.round((100 * sizes[0].bytes) / ANNOTATIONS_LIMIT_BYTES)}%)\n`);
    // and the loader's manifest and the pod template name this runner
    const sha256 = createHash('sha256').update(runner.code).digest('hex');
    expect(JSON.parse(objects.find((o) => o.metadata.name === 'db-migration-script')!.data['runner.json']).sha256).toBe(sha256);
    expect(objects.find((o) => o.kind === 'Job')!.spec.template.metadata.annotations[RUNNER_SHA256_ANNOTATION]).toBe(sha256);
  });

  it.each([['-f', 'dist'], ['-k', '.']])('fits every object kubectl apply %s %s sends, by kubectl\'s own computation, which equals ours', async (flag, target) => {
    const checkout = synthCheckout(yaml);
    temps.push(checkout);
    const sent = await kubectlApply(server.url, checkout, [flag, target]);
    expect(sent.map(objectKey).sort()).toEqual(objects.map(objectKey).sort());
    for (const o of sent) {
      const annotations = o.metadata.annotations as Record<string, string>;
      const ours = objects.find((x) => objectKey(x) === objectKey(o))!;
      expect(annotations[LAST_APPLIED_ANNOTATION], objectKey(o)).toBe(lastAppliedConfiguration(ours));
      const total = Object.entries(annotations).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
      expect(total, objectKey(o)).toBeLessThan(ANNOTATIONS_LIMIT_BYTES / 3);
    }
  });
});

describe('the Job with it, run as the kubelet would', () => {
  const IMAGE_ENV = { PATH: `${PG_BIN}:/usr/local/bin:/usr/bin:/bin` };
  const secrets = () => ({ pg: { source: source.superPassword, destination: destination.superPassword } });
  const table = (server: PgServer) => server.query<{ n: string; sum: string }>('SELECT count(*) AS n, md5(string_agg(v, \',\' ORDER BY id)) AS sum FROM t', 'app');

  it('puts the runner together and migrates with it', async () => {
    const run = await runJobPodAsKubelet({ objects, secrets: secrets(), imageEnv: IMAGE_ENV, timeoutMs: 240_000 });
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    const [before, after] = await Promise.all([table(source), table(destination)]);
    expect(after).toEqual(before);
    expect(after[0].n).toBe('500');
  });

  it('fails in one line naming the part and its ConfigMap when one of the runner\'s ConfigMaps is missing, before the runner runs', async () => {
    const missing = runnerConfigMaps()[2].metadata.name;
    const run = await runJobPodAsKubelet({ objects: objects.filter((o) => o.metadata.name !== missing), secrets: secrets(), imageEnv: IMAGE_ENV, timeoutMs: 120_000 });
    expect(run.code).toBe(1);
    expect(run.container).toBe('runner');
    const main = run.containers[run.containers.length - 1];
    expect(main.stdout).toBe('');
    expect(main.stderr).toBe(`db-migration: cannot start the runner: runner.js.br.3 (part 3 of ${runnerConfigMaps().length}, from ConfigMap ${missing}) is missing; `
      + 'apply every object synth wrote (kubectl apply -f dist), then start the Job again\n');
  });
});
