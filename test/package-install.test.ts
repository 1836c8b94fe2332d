/**
 * db-migration as a construct library in someone else's cdk8s app: `npm pack` of this repository, installed from the
 * tarball into a fresh TypeScript cdk8s app (its own package.json, cdk8s.yaml, tsconfig.json and main.ts, run with
 * ts-node as cdk8s's TypeScript template does) whose main.ts adds the migration charts beside a chart of its own.
 * The cdk8s CLI's `cdk8s synth` there writes manifests equal, object for object, to this repository's
 * `npm run synth` for the same specs, and `kubectl apply -f dist` of them passes a client-side dry run. Once with the
 * lowest versions the package declares (peer cdk8s, cdk8s-plus-28 and constructs, and its yaml and zod), once with
 * the newest its ranges allow. Needs the npm registry (or its cache) and kubectl.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { ANNOTATIONS_LIMIT_BYTES, appliedAnnotationsBytes, LAST_APPLIED_ANNOTATION, lastAppliedConfiguration } from '../src/chart/last-applied';
import { validateSpec } from '../src/spec/load';
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver';
import { kubectlApply, objectKey } from './support/kubectl-apply';
import { REPO } from './support/repo';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  name: string; version: string; dependencies: Record<string, string>; peerDependencies: Record<string, string>; devDependencies: Record<string, string>;
};
const EXAMPLE = join(REPO, 'migration.yaml');
const FULL = join(REPO, 'test', 'fixtures', 'specs', 'full.yaml');
/** The packages whose declared ranges are tried at both ends. */
const RANGED = { ...pkg.peerDependencies, yaml: pkg.dependencies.yaml, zod: pkg.dependencies.zod };

/** The lowest version a range allows: the ranges are all caret ranges (`^X.Y.Z`), whose lowest is X.Y.Z. */
function lowest(range: string): string {
  const m = /^\^(\d+\.\d+\.\d+)$/.exec(range);
  if (!m) throw new Error(`${range}: not a caret range; say here how to find its lowest version`);
  return m[1];
}

const run = promisify(execFile);
const npmEnv = { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false', CDK8S_CHECK_UPGRADE: 'false' };
const npm = (cwd: string, args: string[]) => run('npm', args, { cwd, env: npmEnv, maxBuffer: 1 << 26 });

const work = mkdtempSync(join(tmpdir(), 'dbm-package-'));
let tarball: string;
let cdk8s: string;
let server: FakeApiServer;
/** This repository's `npm run synth` of the example and of full.yaml. */
const ours: Record<'example' | 'full', Obj[]> = { example: [], full: [] };

beforeAll(async () => {
  // npm pack builds lib/ (prepack) and names the tarball on its last line
  const packed = await npm(REPO, ['pack', '--pack-destination', work]);
  tarball = join(work, packed.stdout.trim().split('\n').pop()!);
  // the cdk8s CLI, installed on its own as its docs have it (npm install -g cdk8s-cli)
  const tools = join(work, 'tools');
  mkdirSync(tools);
  writeFileSync(join(tools, 'package.json'), '{ "name": "tools", "private": true }\n');
  await npm(tools, ['install', '--prefer-offline', 'cdk8s-cli@2']);
  cdk8s = join(tools, 'node_modules', '.bin', 'cdk8s');
  for (const [key, spec] of [['example', EXAMPLE], ['full', FULL]] as const) {
    const out = join(work, `ours-${key}`);
    await npm(REPO, ['run', '--silent', 'synth', '--', '--spec', spec, '--out', out]);
    ours[key] = parseAllDocuments(readFileSync(join(out, 'db-migration.k8s.yaml'), 'utf8')).map((d) => d.toJS() as Obj);
  }
  server = await startFakeApiServer();
}, 300_000);
afterAll(async () => {
  await server?.close();
  rmSync(work, { recursive: true, force: true });
});

it('packs compiled JavaScript with type declarations, the prebuilt runner, the JSON Schema, the README and the CLI, and no source', async () => {
  const { stdout } = await run('tar', ['tzf', tarball]);
  const files = stdout.trim().split('\n').map((f) => f.replace(/^package\//, ''));
  expect(files).toEqual(expect.arrayContaining([
    'package.json', 'README.md', 'migration.schema.json', 'bin/db-migration.js', 'lib/runner.js.br',
    'lib/src/index.js', 'lib/src/index.d.ts', 'lib/src/chart/migration-chart.js', 'lib/src/chart/migration-chart.d.ts', 'lib/src/cli/main.js',
  ]));
  expect(files.filter((f) => !/^(package\.json|README\.md|migration\.schema\.json|bin\/db-migration\.js|lib\/runner\.js\.br|lib\/.*\.(js|d\.ts))$/.test(f))).toEqual([]);
  expect(files.filter((f) => f.startsWith('lib/test/') || f.startsWith('src/') || f.startsWith('lib/src/runner/') && !f.startsWith('lib/src/runner/online/control.'))).toEqual([]);
  expect(readFileSync(join(REPO, 'README.md'), 'utf8')).toContain('\n## Use as a construct library\n');
});

/** The fresh app's main.ts: its own chart, the example spec as a typed object, and full.yaml loaded from the file. */
function mainTs(): string {
  const spec = parseYaml(readFileSync(EXAMPLE, 'utf8')) as unknown;
  return `import { ApiObject, App, Chart } from 'cdk8s';
import * as kplus from 'cdk8s-plus-28';
import type { Construct } from 'constructs';
import { MigrationChart, type MigrationSpecInput } from '${pkg.name}';

/** The platform team's own chart. */
class Platform extends Chart {
  constructor(scope: Construct, id: string) {
    super(scope, id);
    new ApiObject(this, 'namespace', { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'pharia-ai' } });
    new kplus.ConfigMap(this, 'settings', { metadata: { name: 'platform-settings', namespace: 'pharia-ai' }, data: { tier: 'gold' } });
  }
}

const spec: MigrationSpecInput = ${JSON.stringify(spec, null, 2)};

const app = new App();
new Platform(app, 'platform');
new MigrationChart(app, 'migration', { spec });
MigrationChart.fromSpecFile(app, 'orders', ${JSON.stringify(FULL)});
app.synth();
`;
}

/** The README's example ("Use as a construct library"). */
function readmeExample(): string {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  return /```ts\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf('\n## Use as a construct library\n')))![1];
}

/** A spec that type-checks but breaks two rules, for the validation of a spec from code. */
const INVALID = { namespace: 'Pharia AI', databases: [{ name: 'one', source: { database: 'a', host: 'db', port: 70000, username: 'u', password: { secret: 's', key: 'k' } }, destination: { database: 'a', host: 'db2', username: 'u', password: { secret: 's', key: 'k' } } }] };

/** The newest version of `name` in `range`, as the registry (or npm's cache) says. */
async function newest(cwd: string, name: string, range: string): Promise<string> {
  const found = JSON.parse((await npm(cwd, ['view', '--prefer-offline', `${name}@${range}`, 'version', '--json'])).stdout) as string | string[];
  const parts = (v: string) => v.split('.').map(Number);
  const newer = (a: string, b: string) => { const [x, y] = [parts(a), parts(b)]; return x[0] - y[0] || x[1] - y[1] || x[2] - y[2]; };
  return [found].flat().sort(newer).pop()!;
}

function freshApp(dependencies: Record<string, string>): string {
  const app = mkdtempSync(join(work, 'app-'));
  writeFileSync(join(app, 'package.json'), `${JSON.stringify({
    name: 'platform-manifests',
    private: true,
    dependencies: { [pkg.name]: `file:${tarball}`, ...dependencies },
    devDependencies: { '@types/node': pkg.devDependencies['@types/node'], 'ts-node': '^10.9.2', typescript: pkg.devDependencies.typescript },
  }, null, 2)}\n`);
  writeFileSync(join(app, 'cdk8s.yaml'), 'language: typescript\napp: npx ts-node main.ts\n');
  // cdk8s init typescript-app's compiler options (cdk8s-cli's templates/typescript-app/tsconfig.json), and esModuleInterop,
  // which zod's own declarations need when tsc checks them (README: "Use as a construct library")
  writeFileSync(join(app, 'tsconfig.json'), `${JSON.stringify({
    compilerOptions: {
      esModuleInterop: true, alwaysStrict: true, declaration: true, experimentalDecorators: true, inlineSourceMap: true, inlineSources: true, lib: ['es2016'],
      module: 'CommonJS', noEmit: false, noEmitOnError: true, noFallthroughCasesInSwitch: true, noImplicitAny: true, noImplicitReturns: true,
      noImplicitThis: true, noUnusedLocals: true, noUnusedParameters: true, resolveJsonModule: true, strict: true, strictNullChecks: true,
      strictPropertyInitialization: true, stripInternal: true, target: 'ES2017',
    },
    include: ['**/*.ts'],
    exclude: ['node_modules'],
  }, null, 2)}\n`);
  writeFileSync(join(app, 'main.ts'), mainTs());
  writeFileSync(join(app, 'readme-example.ts'), readmeExample());
  writeFileSync(join(app, 'invalid.ts'), `import { App } from 'cdk8s';\nimport { MigrationChart } from '${pkg.name}';\n\n`
    + `new MigrationChart(new App(), 'migration', { spec: ${JSON.stringify(INVALID)} });\n`);
  return app;
}

const CASES: [string, Record<string, string>][] = [
  ['lowest', Object.fromEntries(Object.entries(RANGED).map(([name, range]) => [name, lowest(range)]))],
  // yaml and zod come with the package, at the newest its ranges allow
  ['newest', { ...pkg.peerDependencies }],
];

describe.each(CASES)('in a fresh cdk8s app with the %s versions the package declares', (label, dependencies) => {
  let app: string;
  const installed = (name: string) => (JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  const written = (chart: string) => parseAllDocuments(readFileSync(join(app, 'dist', `${chart}.k8s.yaml`), 'utf8')).map((d) => d.toJS() as Obj);

  beforeAll(async () => {
    app = freshApp(dependencies);
    await npm(app, ['install', '--prefer-offline']);
    // every file of the app type-checks against the package's declarations (the template's `npm run compile`, without output)
    await run('npx', ['tsc', '--noEmit', '-p', '.'], { cwd: app, env: npmEnv });
    await run(cdk8s, ['synth'], { cwd: app, env: npmEnv, maxBuffer: 1 << 26 });
  }, 300_000);

  it('installs the package with those versions, one copy of each, and without esbuild, pg or tsx', async () => {
    for (const [name, range] of Object.entries(RANGED)) {
      expect(installed(name), name).toBe(label === 'lowest' ? dependencies[name] : await newest(app, name, range));
    }
    // the package's dependencies and peers are the app's own copies: nothing is installed under the package
    const tree = JSON.parse((await npm(app, ['ls', '--all', '--json'])).stdout) as Obj;
    expect(Object.keys(tree.dependencies[pkg.name].dependencies ?? {}).sort()).toEqual(['cdk8s', 'cdk8s-plus-28', 'constructs', 'yaml', 'zod']);
    expect(existsSync(join(app, 'node_modules', pkg.name, 'node_modules'))).toBe(false);
    const top = readdirSync(join(app, 'node_modules'));
    expect(top.filter((n) => ['esbuild', '@esbuild', 'pg', 'tsx'].includes(n))).toEqual([]);
    expect(readdirSync(join(app, 'node_modules', pkg.name)).sort()).toEqual(['README.md', 'bin', 'lib', 'migration.schema.json', 'package.json']);
  });

  it('cdk8s synth writes the migration charts equal to npm run synth for the same specs, object for object, beside the app\'s own chart', () => {
    expect(readdirSync(join(app, 'dist')).sort()).toEqual(['migration.k8s.yaml', 'orders.k8s.yaml', 'platform.k8s.yaml']);
    expect(written('migration')).toEqual(ours.example);
    expect(written('orders')).toEqual(ours.full);
    expect(written('platform').map(objectKey)).toEqual(['Namespace/pharia-ai', 'ConfigMap/platform-settings']);
  });

  it('kubectl apply -f dist passes a client-side dry run, every object within the limit', async () => {
    const sent = await kubectlApply(server.url, app, ['-f', 'dist']);
    const all = [...written('migration'), ...written('orders'), ...written('platform')];
    expect(sent.map(objectKey).sort()).toEqual(all.map(objectKey).sort());
    for (const o of sent) {
      const ours = all.find((x) => objectKey(x) === objectKey(o))!;
      expect(o.metadata.annotations[LAST_APPLIED_ANNOTATION], objectKey(o)).toBe(lastAppliedConfiguration(ours));
      expect(appliedAnnotationsBytes(ours), objectKey(o)).toBeLessThan(ANNOTATIONS_LIMIT_BYTES / 2);
    }
  });

  it('runs the README\'s example, which type-checks and writes the example migration as npm run synth does, beside the app\'s chart', async () => {
    const example = readmeExample();
    expect(example.split('\n').length).toBeLessThanOrEqual(14);
    expect(readFileSync(join(app, 'readme-example.ts'), 'utf8')).toBe(example); // and it type-checked with the app (beforeAll)
    const out = join(app, 'readme-out');
    await run('npx', ['ts-node', '--transpile-only', 'readme-example.ts'], { cwd: app, env: { ...npmEnv, CDK8S_OUTDIR: out } });
    expect(readdirSync(out).sort()).toEqual(['migration.k8s.yaml', 'platform.k8s.yaml']);
    expect(parseAllDocuments(readFileSync(join(out, 'migration.k8s.yaml'), 'utf8')).map((d) => d.toJS())).toEqual(ours.example);
  });

  it('runs the installed CLI from its compiled lib/: npx db-migration synth writes what this repository\'s does', async () => {
    const out = join(app, 'cli-out');
    await run('npx', ['db-migration', 'synth', '--spec', EXAMPLE, '--out', out], { cwd: app, env: npmEnv });
    expect(parseAllDocuments(readFileSync(join(out, 'db-migration.k8s.yaml'), 'utf8')).map((d) => d.toJS())).toEqual(ours.example);
  });

  it('refuses a spec from code that breaks the rules with the CLI\'s messages, each with its field path', async () => {
    const expected = (() => {
      try {
        validateSpec(INVALID, 'spec of MigrationChart "migration"');
      } catch (err) {
        return (err as Error).message;
      }
      throw new Error('INVALID is valid');
    })();
    expect(expected.split('\n')).toHaveLength(2);
    const failed = await run('npx', ['ts-node', '--transpile-only', 'invalid.ts'], { cwd: app, env: npmEnv }).then(() => undefined, (err: { code: number; stderr: string }) => err);
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain(`SpecError: ${expected}\n`);
  });
});
