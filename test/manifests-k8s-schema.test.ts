/**
 * Every synthesized object checked by validators that share nothing with the code that built it: the upstream
 * OpenAPI schemas (kubernetes-models), the field set of Kubernetes 1.28, the Pod Security `restricted` profile,
 * and kustomize. Each validator is also shown to reject a deliberately broken object, so a pass means something.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { parseAllDocuments, stringify } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { synthManifests } from '../src/chart';
import { loadSpecFile, parseSpec } from '../src/spec/load';
import type { MigrationSpec } from '../src/spec/schema';
import { restrictedProfileViolations, unknownFields128, validateK8sObject } from './support/k8s-validate';

type Obj = Record<string, any>;

const ROOT = join(__dirname, '..');
const SPECS: Record<string, string> = {
  'the example migration.yaml': join(ROOT, 'migration.yaml'),
  'full.yaml (every option)': join(ROOT, 'test', 'fixtures', 'specs', 'full.yaml'),
};
const RUNNER = 'console.log("runner stand-in");\n';

const temps: string[] = [];
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

const synth = (spec: MigrationSpec) => synthManifests(spec, { runnerBundle: RUNNER }) as { yaml: string; objects: Obj[] };
const jobOf = (objects: Obj[]) => objects.find((o) => o.kind === 'Job')!;
const clone = <T>(x: T): T => structuredClone(x);

describe.each(Object.entries(SPECS))('given %s', (_label, file) => {
  const { yaml, objects } = synth(loadSpecFile(file));

  it('when synthesized, then every object passes the OpenAPI schema and uses only Kubernetes 1.28 fields', () => {
    expect(objects.length).toBeGreaterThanOrEqual(4);
    for (const o of objects) expect(validateK8sObject(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
  });

  it('when synthesized, then the pod template meets the Pod Security restricted profile', () => {
    expect(restrictedProfileViolations(jobOf(objects).spec.template)).toEqual([]);
  });

  it('when synthesized, then kubectl kustomize accepts the file and returns the same objects', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-kustomize-'));
    temps.push(dir);
    writeFileSync(join(dir, 'db-migration.k8s.yaml'), yaml);
    writeFileSync(join(dir, 'kustomization.yaml'), stringify({
      apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: ['db-migration.k8s.yaml'],
    }));
    const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const out = parseAllDocuments(run.stdout).map((d) => d.toJS() as Obj);
    const byId = (list: Obj[]) => Object.fromEntries(list.map((o) => [`${o.kind}/${o.metadata.name}`, o]));
    expect(byId(out)).toEqual(byId(objects));
  });
});

describe('generated specs', () => {
  const hostArb = fc.oneof(
    fc.ipV4(),
    fc.constantFrom('db.example.internal', 'postgres.data.svc.cluster.local', 'pg-1'),
  );
  const specArb = fc.record({
    name: fc.constantFrom('db-migration', 'm', 'orders-2024'),
    registry: fc.constantFrom('', 'mirror.corp.example', 'registry.local:5000/team'),
    digest: fc.boolean(),
    pullPolicy: fc.constantFrom('Always', 'IfNotPresent', 'Never'),
    pullSecrets: fc.uniqueArray(fc.constantFrom('pull-a', 'pull-b', 'pull-c'), { maxLength: 3 }),
    networkPolicy: fc.boolean(),
    parallelism: fc.option(fc.integer({ min: 1, max: 100 }), { nil: undefined }),
    tolerations: fc.boolean(),
    dbs: fc.array(fc.record({
      host: hostArb,
      port: fc.integer({ min: 1, max: 65535 }),
      sslmode: fc.constantFrom('disable', 'prefer', 'require', 'verify-ca', 'verify-full'),
      caSecret: fc.constantFrom('tls-a', 'tls-b'),
      caKey: fc.constantFrom('ca.crt', 'root.pem'),
      enabled: fc.boolean(),
    }), { minLength: 1, maxLength: 5 }),
    nodeRuntime: fc.boolean(),
  });

  it('given any combination of options, when synthesized, then every object validates and the pod stays restricted', () => {
    fc.assert(fc.property(specArb, (g) => {
      const databases = g.dbs.map((d, i) => ({
        name: `db-${i}`,
        enabled: i === 0 ? true : d.enabled,
        source: { database: `src${i}`, host: d.host, port: d.port, sslmode: d.sslmode, caCert: { secret: d.caSecret, key: d.caKey } },
        destination: { database: `dst${i}`, password: { secret: 'dest', key: `db-${i}` } },
      }));
      const doc = {
        name: g.name,
        namespace: 'ns',
        image: {
          registry: g.registry, pullPolicy: g.pullPolicy, pullSecrets: g.pullSecrets,
          ...(g.digest ? { digest: `sha256:${'a'.repeat(64)}` } : {}),
          runtime: { enabled: g.nodeRuntime },
        },
        job: {
          networkPolicy: { enabled: g.networkPolicy },
          ...(g.parallelism ? { parallelism: g.parallelism } : {}),
          ...(g.tolerations ? { tolerations: [{ key: 'k', operator: 'Exists' }] } : {}),
        },
        defaults: {
          source: { username: 'u', password: { secret: 'src', key: 'pw' } },
          destination: { host: 'dest.example', username: 'u' },
        },
        databases,
      };
      const { objects } = synth(parseSpec(JSON.stringify(doc), 'generated.yaml'));
      for (const o of objects) expect(validateK8sObject(o), `${o.kind}/${o.metadata.name}`).toEqual([]);
      expect(restrictedProfileViolations(jobOf(objects).spec.template)).toEqual([]);
      expect(objects.some((o) => o.kind === 'NetworkPolicy')).toBe(g.networkPolicy);
      expect((jobOf(objects).spec.template.spec.initContainers ?? []).length).toBe(g.nodeRuntime ? 1 : 0);
    }), { numRuns: 60 });
  });
});

describe('the validators reject broken objects (testing the tests)', () => {
  const { objects } = synth(loadSpecFile(SPECS['full.yaml (every option)']));
  const job = jobOf(objects);
  const configMap = objects.find((o) => o.kind === 'ConfigMap')!;
  const policy = objects.find((o) => o.kind === 'NetworkPolicy')!;

  it('fails a Job with an unknown container field (the 1.28 field check)', () => {
    const broken = clone(job);
    broken.spec.template.spec.containers[0].imagePullPolcy = 'IfNotPresent';
    expect(validateK8sObject(broken)).toEqual([
      'Job/orders-move: spec.template.spec.containers[0].imagePullPolcy: unknown field in Kubernetes 1.28',
    ]);
  });

  it('fails a ConfigMap with a misspelt top-level field', () => {
    const broken = clone(configMap);
    broken.datas = broken.data;
    expect(validateK8sObject(broken)).toEqual(['ConfigMap/orders-move-script: datas: unknown field in Kubernetes 1.28']);
  });

  it('fails a Job field that exists only in Kubernetes releases after 1.28 (accepted by the newer OpenAPI schema)', () => {
    const broken = clone(job);
    broken.spec.managedBy = 'kueue.x-k8s.io/multikueue';
    const problems = validateK8sObject(broken);
    expect(problems).toEqual(['Job/orders-move: spec.managedBy: unknown field in Kubernetes 1.28']);
  });

  it('fails a Job with a wrong type (the OpenAPI schema)', () => {
    const broken = clone(job);
    broken.spec.backoffLimit = '2';
    const problems = validateK8sObject(broken);
    expect(problems).toEqual(['Job/orders-move: OpenAPI schema (kubernetes-models): data/spec/backoffLimit must be integer']);
  });

  it('fails a Job whose pod has no containers (a required field)', () => {
    const broken = clone(job);
    delete broken.spec.template.spec.containers;
    expect(validateK8sObject(broken)).toEqual([
      'Job/orders-move: OpenAPI schema (kubernetes-models): data/spec/template/spec must have required property containers',
    ]);
  });

  it('fails a NetworkPolicy whose rule is a string instead of a mapping', () => {
    const broken = clone(policy);
    broken.spec.egress[0] = 'allow everything';
    expect(validateK8sObject(broken)).toEqual([
      'NetworkPolicy/orders-move: OpenAPI schema (kubernetes-models): data/spec/egress/0 must be object',
      'NetworkPolicy/orders-move: spec.egress[0]: value "allow everything" does not survive the Kubernetes 1.28 serializer',
    ]);
  });

  it('fails an object of a kind the validator does not know rather than passing it', () => {
    expect(validateK8sObject({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'x' } })).toEqual([
      'Pod/x: apiVersion v1 kind Pod is not a kind this validator knows',
    ]);
  });

  it('given a valid Job, when round-tripped through the 1.28 serializer, then nothing is lost (quantities and int-or-strings included)', () => {
    expect(unknownFields128(job)).toEqual([]);
    expect(unknownFields128(policy)).toEqual([]);
  });

  it('fails the restricted profile for each rule a pod can break', () => {
    const base = job.spec.template;
    const breakWith = (edit: (t: Obj) => void) => { const t = clone(base); edit(t); return restrictedProfileViolations(t); };
    const c = (t: Obj) => t.spec.containers[0];
    expect(breakWith((t) => { c(t).securityContext.privileged = true; })).toEqual(['containers[runner]: privileged must not be true']);
    // init containers are held to the same rules (Pod Security admission checks them too)
    expect(breakWith((t) => { t.spec.initContainers[0].securityContext.allowPrivilegeEscalation = true; }))
      .toEqual(['initContainers[node-runtime]: allowPrivilegeEscalation must be false']);
    expect(breakWith((t) => { delete t.spec.initContainers[0].securityContext.capabilities; }))
      .toEqual(['initContainers[node-runtime]: capabilities.drop must include ALL']);
    expect(breakWith((t) => { c(t).securityContext.allowPrivilegeEscalation = true; }))
      .toEqual(['containers[runner]: allowPrivilegeEscalation must be false']);
    expect(breakWith((t) => { c(t).securityContext.capabilities = { drop: ['NET_RAW'] }; }))
      .toEqual(['containers[runner]: capabilities.drop must include ALL']);
    expect(breakWith((t) => { c(t).securityContext.capabilities.add = ['SYS_ADMIN']; }))
      .toEqual(['containers[runner]: capability SYS_ADMIN must not be added (only NET_BIND_SERVICE)']);
    expect(breakWith((t) => { delete c(t).securityContext.runAsNonRoot; delete t.spec.securityContext.runAsNonRoot; }))
      .toEqual(['containers[runner]: runAsNonRoot must be true (in the container or the pod)']);
    expect(breakWith((t) => { c(t).securityContext.seccompProfile = { type: 'Unconfined' }; }))
      .toEqual(['containers[runner]: seccompProfile.type must be RuntimeDefault or Localhost (in the container or the pod), got Unconfined']);
    expect(breakWith((t) => { delete c(t).securityContext.seccompProfile; delete t.spec.securityContext.seccompProfile; }))
      .toEqual(['containers[runner]: seccompProfile.type must be RuntimeDefault or Localhost (in the container or the pod), got undefined']);
    expect(breakWith((t) => { t.spec.hostNetwork = true; t.spec.hostPID = true; }))
      .toEqual(['hostNetwork must not be true', 'hostPID must not be true']);
    expect(breakWith((t) => { t.spec.volumes.push({ name: 'host', hostPath: { path: '/var/run' } }); })).toEqual([
      'volume host: hostPath volumes are forbidden',
      expect.stringMatching(/^volume host: type hostPath is not allowed/),
    ]);
    expect(breakWith((t) => { t.spec.volumes.push({ name: 'nfs', nfs: { server: 'x', path: '/' } }); }))
      .toEqual([expect.stringMatching(/^volume nfs: type nfs is not allowed/)]);
    expect(breakWith((t) => { c(t).ports = [{ containerPort: 80, hostPort: 80 }]; })).toEqual(['containers[runner]: hostPort 80 is forbidden']);
    expect(breakWith((t) => { t.spec.securityContext.runAsUser = 0; c(t).securityContext.runAsUser = 0; }))
      .toEqual(['pod: runAsUser must not be 0', 'containers[runner]: runAsUser must not be 0']);
  });

  it('fails kustomize on a file holding an object without a kind', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dbm-kustomize-bad-'));
    temps.push(dir);
    writeFileSync(join(dir, 'db-migration.k8s.yaml'), 'apiVersion: v1\nmetadata:\n  name: nameless\n');
    writeFileSync(join(dir, 'kustomization.yaml'), 'resources:\n  - db-migration.k8s.yaml\n');
    const run = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/kind/i);
  });
});

// The YAML the CLI writes is the synthesized text itself: make sure it parses to the same objects.
it('given the synthesized YAML, when parsed back, then it yields exactly the returned objects', () => {
  const { yaml, objects } = synth(loadSpecFile(SPECS['full.yaml (every option)']));
  expect(parseAllDocuments(yaml).map((d) => d.toJS())).toEqual(objects);
});
