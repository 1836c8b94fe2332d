/**
 * The chart: snapshots of the synthesized manifests, exact assertions on the fields that matter, the runner
 * bundle, its ConfigMaps and its entrypoint, and proof that no secret value reaches the YAML. The loader's side of the
 * runner's parts: runner-loader.test.ts; a spec given as an object: chart-spec-object.test.ts.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { App, Testing } from 'cdk8s';
import {
  appliedAnnotationsBytes, assertFitsConfigMap, bundleRunner, compressRunner, CONFIG_SHA256_ANNOTATION,
  CONFIGMAP_DATA_LIMIT_BYTES, MigrationChart, packRunner, RUNNER_PART_MAX_BYTES, RUNNER_SHA256_ANNOTATION, sha256Hex, synthManifests,
} from '../src/chart';
import { version as packageVersion } from '../package.json';
import { loadSpecFile, parseSpec } from '../src/spec/load';
import { CONTAINER_PATHS, caCertPath, secretUses, toRuntimeConfig } from '../src/spec/runtime-config';
import type { MigrationSpec } from '../src/spec/schema';
import { runnerConfigMaps, unpacked } from './support/runner-objects';

type Obj = Record<string, any>;

const ROOT = join(__dirname, '..');
const EXAMPLE = join(ROOT, 'migration.yaml');
const FULL = join(ROOT, 'test', 'fixtures', 'specs', 'full.yaml');
const FULL_SECRETS = join(ROOT, 'test', 'fixtures', 'specs', 'full.secrets.yaml');
const PG_ENTRY = join(ROOT, 'test', 'fixtures', 'runner-entry', 'pg-client.ts');
const RUNNER_MAIN = join(ROOT, 'src', 'runner', 'main.ts');

/** A fixed runner for the tests that are about the manifests, not the runner. */
const STAND_IN_BUNDLE = 'console.log("runner stand-in");\n';

const temps: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `dbm-chart-${prefix}-`));
  temps.push(dir);
  return dir;
}
afterAll(() => temps.forEach((d) => rmSync(d, { recursive: true, force: true })));

function synth(spec: MigrationSpec, runnerBundle = STAND_IN_BUNDLE): { yaml: string; objects: Obj[] } {
  return synthManifests(spec, { runnerBundle });
}
const find = (objects: Obj[], kind: string) => objects.filter((o) => o.kind === kind);
const one = (objects: Obj[], kind: string, name?: string) => {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `${kind}/${name ?? '*'}`).toHaveLength(1);
  return found[0];
};
const podOf = (objects: Obj[]) => one(objects, 'Job').spec.template;
const containerOf = (objects: Obj[]) => podOf(objects).spec.containers[0];

/** The example spec with a few fields changed (YAML in, so defaults apply exactly as for users). */
function exampleWith(edit: (doc: Obj) => void): MigrationSpec {
  const doc = parseAllDocuments(readFileSync(EXAMPLE, 'utf8'))[0].toJS() as Obj;
  edit(doc);
  return parseSpec(JSON.stringify(doc), 'edited-example.yaml');
}

/** What snapshots show instead of the runner bundle, so they do not change whenever src/runner does. */
const BUNDLE_PLACEHOLDER = '<runner.js: the esbuild bundle of src/runner/main.ts>';

/**
 * The synthesized YAML with the runner (one compressed part, base64), its size and the sha256 digests replaced by
 * placeholders, so that the snapshots need not change with brotli's output.
 */
function snapshotYaml(spec: MigrationSpec): string {
  const { yaml } = synthManifests(spec, { runnerBundle: BUNDLE_PLACEHOLDER });
  const { parts: [part], manifest } = packRunner(BUNDLE_PLACEHOLDER);
  const replaced = [
    [part.data.toString('base64'), '<runner.js.br.1: the brotli-compressed runner.js, base64>'],
    [manifest.parts[0].sha256, '<sha256 of runner.js.br.1>'],
    [sha256Hex(BUNDLE_PLACEHOLDER), '<sha256 of runner.js>'],
  ];
  const text = replaced.reduce((t, [from, to]) => {
    expect(t).toContain(from);
    return t.replaceAll(from, to);
  }, yaml);
  const partSize = new RegExp(`("file": "runner\\.js\\.br\\.1",\\s+"bytes": )${part.data.length},`);
  expect(text).toMatch(partSize);
  return text.replace(partSize, '$1<its size>,');
}

describe('snapshots', () => {
  it('given the example migration.yaml, when synthesized, then the manifests match the snapshot', () => {
    expect(snapshotYaml(loadSpecFile(EXAMPLE))).toMatchSnapshot();
  });

  it('given full.yaml (every option set), when synthesized, then the manifests match the snapshot', () => {
    expect(snapshotYaml(loadSpecFile(FULL))).toMatchSnapshot();
  });
});

describe('objects, names, namespace and labels', () => {
  it('given the example, when synthesized, then it yields ServiceAccount, the script, runner and config ConfigMaps and the Job in apply order, named without hashes', () => {
    const { objects, yaml } = synth(loadSpecFile(EXAMPLE));
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ServiceAccount/db-migration', 'ConfigMap/db-migration-script', 'ConfigMap/db-migration-runner-1', 'ConfigMap/db-migration-config',
      'Job/db-migration',
    ]);
    const docs = parseAllDocuments(yaml).map((d) => d.toJS());
    expect(docs).toEqual(objects);
  });

  it('given full.yaml, when synthesized, then the NetworkPolicy sits between the ConfigMaps and the Job', () => {
    const { objects } = synth(loadSpecFile(FULL));
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`)).toEqual([
      'ServiceAccount/orders-move', 'ConfigMap/orders-move-script', 'ConfigMap/orders-move-runner-1', 'ConfigMap/orders-move-config',
      'NetworkPolicy/orders-move', 'Job/orders-move',
    ]);
  });

  it('given full.yaml, when synthesized, then every object is in the spec namespace with the standard labels plus spec.labels', () => {
    const { objects } = synth(loadSpecFile(FULL));
    const components: Record<string, string> = {
      'ServiceAccount/orders-move': 'runner', 'ConfigMap/orders-move-script': 'runner', 'ConfigMap/orders-move-runner-1': 'runner',
      'ConfigMap/orders-move-config': 'config',
      'NetworkPolicy/orders-move': 'network-policy', 'Job/orders-move': 'job',
    };
    for (const o of objects) {
      expect(o.metadata.namespace).toBe('data-platform');
      expect(o.metadata.labels).toEqual({
        app: 'orders-move', // what the seed's runbooks select with: kubectl get pods -l app=<name>
        'app.kubernetes.io/name': 'db-migration',
        'app.kubernetes.io/instance': 'orders-move',
        'app.kubernetes.io/component': components[`${o.kind}/${o.metadata.name}`],
        'app.kubernetes.io/managed-by': 'cdk8s',
        'app.kubernetes.io/version': packageVersion,
        'app.kubernetes.io/part-of': 'orders',
        team: 'data',
      });
      expect(Object.keys(o.metadata).sort()).toEqual(['labels', 'name', 'namespace']);
    }
    expect(podOf(objects).metadata.labels).toEqual(one(objects, 'Job').metadata.labels);
  });

  it('fails when spec.labels sets a label db-migration owns: refused by the spec, and by the chart, which validates what it is given', () => {
    expect(() => exampleWith((d) => { d.labels = { 'app.kubernetes.io/instance': 'other' }; }))
      .toThrow(/labels\.app\.kubernetes\.io\/instance: is set by db-migration itself/);
    const spec = { ...exampleWith(() => undefined), labels: { 'app.kubernetes.io/instance': 'other' } };
    expect(() => synth(spec)).toThrow(/^spec of MigrationChart "db-migration": labels\.app\.kubernetes\.io\/instance: is set by db-migration itself/);
  });

  it('given a chart built directly in a cdk8s app, when synthesized by cdk8s, then names carry no hash either', () => {
    const app = Testing.app();
    const chart = new MigrationChart(app, 'anything', { spec: loadSpecFile(FULL), runnerBundle: STAND_IN_BUNDLE });
    expect((Testing.synth(chart) as Obj[]).map((o) => o.metadata.name).sort()).toEqual([
      'orders-move', 'orders-move', 'orders-move', 'orders-move-config', 'orders-move-runner-1', 'orders-move-script',
    ]);
    expect(app).toBeInstanceOf(App);
  });
});

describe('the Job', () => {
  it('given the example, when synthesized, then the Job carries exactly the spec values and no cdk8s-plus defaults', () => {
    const spec = loadSpecFile(EXAMPLE);
    const { objects } = synth(spec);
    const job = one(objects, 'Job');
    expect(Object.keys(job.spec).sort()).toEqual(['activeDeadlineSeconds', 'backoffLimit', 'podFailurePolicy', 'template', 'ttlSecondsAfterFinished']);
    expect(job.spec.activeDeadlineSeconds).toBe(7200);
    expect(job.spec.backoffLimit).toBe(2);
    expect(job.spec.ttlSecondsAfterFinished).toBe(86400);
    const pod = job.spec.template.spec;
    expect(Object.keys(pod).sort()).toEqual([
      'automountServiceAccountToken', 'containers', 'initContainers', 'restartPolicy', 'securityContext', 'serviceAccountName', 'volumes',
    ]);
    // node for a helper image without it (the default image.runtime): copied by an init container before the runner starts
    expect(pod.initContainers).toEqual([{
      name: 'node-runtime',
      image: 'docker.io/library/node:24-bookworm-slim',
      imagePullPolicy: 'IfNotPresent',
      command: ['/bin/sh', '/opt/db-migration/copy-node-runtime.sh'],
      resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1000m', memory: '1Gi' } },
      securityContext: pod.containers[0].securityContext,
      volumeMounts: [
        { name: 'script', mountPath: '/opt/db-migration', readOnly: true },
        { name: 'node-runtime', mountPath: '/opt/db-migration-node' },
      ],
      terminationMessagePolicy: 'FallbackToLogsOnError',
    }]);
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.serviceAccountName).toBe('db-migration');
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(pod.containers).toHaveLength(1);
    const c = pod.containers[0];
    expect(Object.keys(c).sort()).toEqual([
      'args', 'command', 'env', 'image', 'imagePullPolicy', 'name', 'resources', 'securityContext', 'terminationMessagePath',
      'terminationMessagePolicy', 'volumeMounts',
    ]);
    expect(c.image).toBe('ghcr.io/aleph-alpha/shared-images/pharia-helper:latest');
    expect(c.imagePullPolicy).toBe('IfNotPresent');
    expect(c.command).toEqual(['/bin/sh', '/opt/db-migration/entrypoint.sh']);
    expect(c.args).toEqual(['--resume']); // a retried pod continues what earlier attempts recorded
    expect(c.resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { cpu: '1000m', memory: '1Gi' } });
    expect(c.terminationMessagePath).toBe('/dev/termination-log');
    expect(c.terminationMessagePolicy).toBe('FallbackToLogsOnError');
  });

  it('given online mode without a deadline, when synthesized, then the Job outlives the wait for the cutover; an explicit deadline is kept', () => {
    const base = loadSpecFile(EXAMPLE);
    const online = { ...base, job: { ...base.job, activeDeadlineSeconds: undefined }, migration: { ...base.migration, mode: 'online' as const } };
    const m = online.migration;
    expect(one(synth(online).objects, 'Job').spec.activeDeadlineSeconds)
      .toBe(m.online.waitSeconds + m.timeouts.dump + m.timeouts.restore + m.timeouts.verify);
    expect(one(synth({ ...online, job: { ...online.job, activeDeadlineSeconds: 3600 } }).objects, 'Job').spec.activeDeadlineSeconds).toBe(3600);
  });

  it('given full.yaml, when synthesized, then resources, scheduling, pull settings and pod annotations are the spec values', () => {
    const spec = loadSpecFile(FULL);
    const { objects } = synth(spec);
    const job = one(objects, 'Job');
    // (backoffLimit: 0 is raised for backoffLimitPerIndex; see the Indexed Job tests)
    expect(job.spec).toMatchObject({ activeDeadlineSeconds: 14400, ttlSecondsAfterFinished: 3600 });
    const pod = job.spec.template.spec;
    const c = pod.containers[0];
    expect(c.resources).toEqual({ requests: { cpu: '500m', memory: '512Mi' }, limits: { cpu: '2', memory: '4Gi' } });
    expect(c.imagePullPolicy).toBe('Always');
    expect(pod.imagePullSecrets).toEqual([{ name: 'airgap-pull' }, { name: 'backup-pull' }]);
    expect(pod.nodeSelector).toEqual({ 'kubernetes.io/os': 'linux', 'node-pool': 'batch' });
    expect(pod.tolerations).toEqual([
      { key: 'dedicated', operator: 'Equal', value: 'batch', effect: 'NoSchedule' },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
    ]);
    expect(pod.priorityClassName).toBe('batch-high');
    const annotations = job.spec.template.metadata.annotations;
    expect(annotations).toEqual({
      'kubectl.kubernetes.io/default-container': 'runner', // kubectl logs job/<name> shows the runner, not the init container
      'sidecar.istio.io/inject': 'false',
      'cluster-autoscaler.kubernetes.io/safe-to-evict': 'false',
      [RUNNER_SHA256_ANNOTATION]: sha256Hex(STAND_IN_BUNDLE),
      [CONFIG_SHA256_ANNOTATION]: sha256Hex(one(objects, 'ConfigMap', 'orders-move-config').data['config.json']),
    });
  });

  it('given job.parallelism (full.yaml), when synthesized, then the Job is Indexed with one completion per enabled database', () => {
    const job = one(synth(loadSpecFile(FULL)).objects, 'Job');
    expect(job.spec.completionMode).toBe('Indexed');
    expect(job.spec.completions).toBe(3);
    expect(job.spec.parallelism).toBe(2);
    expect(job.spec.backoffLimitPerIndex).toBe(1);
  });

  it('given job.backoffLimitPerIndex, when synthesized, then the Job-wide backoffLimit leaves every database its own retries', () => {
    // full.yaml: backoffLimit 0, backoffLimitPerIndex 1, three enabled databases. Kubernetes ends the whole Job once
    // more pods failed than backoffLimit, per-index limits or not: 0 would stop it at the first failure anywhere.
    const job = one(synth(loadSpecFile(FULL)).objects, 'Job');
    expect(job.spec.backoffLimit).toBe(3 * (1 + 1));
    // a larger Job-wide limit is kept as written
    const generous = parseSpec(readFileSync(FULL, 'utf8').replace('backoffLimit: 0', 'backoffLimit: 20'));
    expect(one(synth(generous).objects, 'Job').spec.backoffLimit).toBe(20);
    // and never above what Kubernetes stores (an int32)
    const huge = parseSpec(readFileSync(FULL, 'utf8').replace('backoffLimitPerIndex: 1', 'backoffLimitPerIndex: 2147483647'));
    expect(one(synth(huge).objects, 'Job').spec.backoffLimit).toBe(2147483647);
    // and without per-index retries, backoffLimit is exactly the spec's
    const plain = parseSpec(readFileSync(FULL, 'utf8').replace('  backoffLimitPerIndex: 1\n', ''));
    expect(one(synth(plain).objects, 'Job').spec).toMatchObject({ backoffLimit: 0 });
    expect(one(synth(plain).objects, 'Job').spec).not.toHaveProperty('backoffLimitPerIndex');
  });

  it('given any spec, when synthesized, then a pod evicted, preempted or drained away does not use up backoffLimit', () => {
    // its replacement resumes where it stopped; the Job controller sets DisruptionTarget on such pods
    for (const file of [EXAMPLE, FULL]) {
      const job = one(synth(loadSpecFile(file)).objects, 'Job');
      expect(job.spec.podFailurePolicy, file).toEqual({ rules: [{ action: 'Ignore', onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }] }] });
      expect(job.spec.template.spec.restartPolicy, 'podFailurePolicy needs restartPolicy Never').toBe('Never');
    }
  });

  it('given no job.parallelism (the example), when synthesized, then the Job is a plain one-pod Job', () => {
    const job = one(synth(loadSpecFile(EXAMPLE)).objects, 'Job');
    for (const k of ['completionMode', 'completions', 'parallelism', 'backoffLimitPerIndex']) expect(job.spec).not.toHaveProperty(k);
  });

  it('given pullPolicy is not set, when synthesized, then imagePullPolicy is IfNotPresent, never Always', () => {
    const spec = exampleWith((d) => { delete d.image.pullPolicy; });
    expect(containerOf(synth(spec).objects).imagePullPolicy).toBe('IfNotPresent');
    expect(synth(spec).yaml).not.toMatch(/imagePullPolicy: Always/);
  });

  it('given full.yaml, when synthesized, then pod and container security contexts are the restricted settings with the spec identity', () => {
    const { objects } = synth(loadSpecFile(FULL));
    const pod = podOf(objects).spec;
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10002, fsGroup: 10003, seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(pod.containers[0].securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  it('given full.yaml, when synthesized, then every password of an enabled database is a secretKeyRef env var and nothing else is', () => {
    const spec = loadSpecFile(FULL);
    const { objects } = synth(spec);
    const env = containerOf(objects).env as Obj[];
    expect(env.slice(0, 2)).toEqual([{ name: 'HOME', value: '/tmp' }, { name: 'NODE_OPTIONS', value: '' }]);
    const secretEnv = env.slice(2);
    expect(secretEnv).toEqual([
      ['DBM_ORDERS_SOURCE_PASSWORD', 'source-credentials', 'password'],
      ['DBM_ORDERS_DEST_PASSWORD', 'destination-credentials', 'orders'],
      ['DBM_ORDER_EVENTS_SOURCE_PASSWORD', 'source-credentials', 'password'],
      ['DBM_ORDER_EVENTS_DEST_PASSWORD', 'destination-credentials', 'order-events'],
      ['DBM_INVOICES_SOURCE_PASSWORD', 'source-credentials', 'password'],
      ['DBM_INVOICES_DEST_PASSWORD', 'destination-credentials', 'invoices'],
    ].map(([name, secret, key]) => ({ name, valueFrom: { secretKeyRef: { name: secret, key, optional: false } } })));
    // The disabled database needs no Secret: a missing one must not keep the pod from starting.
    expect(JSON.stringify(env)).not.toContain('archive');
    // Every env var the runtime config names is set.
    const config = JSON.parse(one(objects, 'ConfigMap', 'orders-move-config').data['config.json']);
    const wanted = config.databases.filter((d: Obj) => d.enabled).flatMap((d: Obj) => [d.source.passwordEnv, d.destination.passwordEnv]);
    expect(secretEnv.map((e) => e.name).sort()).toEqual([...wanted].sort());
  });

  it('given full.yaml, when synthesized, then the volumes have the spec size limits and the mounts are read-only where they hold code, config or certificates', () => {
    const { objects } = synth(loadSpecFile(FULL));
    const pod = podOf(objects).spec;
    expect(pod.volumes).toEqual([
      { name: 'dumps', emptyDir: { sizeLimit: '100Gi' } },
      { name: 'logs', emptyDir: { sizeLimit: '2Gi' } },
      { name: 'tmp', emptyDir: { sizeLimit: '512Mi' } },
      {
        name: 'script',
        projected: {
          defaultMode: 0o444,
          sources: [
            { configMap: { name: 'orders-move-script', optional: false } },
            { configMap: { name: 'orders-move-runner-1', optional: true } },
          ],
        },
      },
      { name: 'config', configMap: { name: 'orders-move-config', defaultMode: 0o444 } },
      { name: 'node-runtime', emptyDir: { sizeLimit: '256Mi' } },
      { name: 'ca-0', secret: { secretName: 'destination-tls', items: [{ key: 'ca.pem', path: 'ca.pem' }], defaultMode: 0o444, optional: false } },
      {
        name: 'ca-1',
        secret: {
          secretName: 'source-tls',
          items: [{ key: 'ca.crt', path: 'ca.crt' }, { key: 'events-ca.crt', path: 'events-ca.crt' }],
          defaultMode: 0o444,
          optional: false,
        },
      },
    ]);
    expect(pod.containers[0].volumeMounts).toEqual([
      { name: 'dumps', mountPath: CONTAINER_PATHS.dumps },
      { name: 'logs', mountPath: CONTAINER_PATHS.logs },
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'script', mountPath: '/opt/db-migration', readOnly: true },
      { name: 'config', mountPath: '/etc/db-migration/config', readOnly: true },
      { name: 'node-runtime', mountPath: '/opt/db-migration-node', readOnly: true },
      { name: 'ca-0', mountPath: `${CONTAINER_PATHS.tls}/destination-tls`, readOnly: true },
      { name: 'ca-1', mountPath: `${CONTAINER_PATHS.tls}/source-tls`, readOnly: true },
    ]);
  });

  it('given full.yaml, when synthesized, then every CA certificate path in the runtime config is a file the mounts provide', () => {
    const spec = loadSpecFile(FULL);
    const { objects } = synth(spec);
    const pod = podOf(objects).spec;
    const files = new Set<string>();
    for (const m of pod.containers[0].volumeMounts as Obj[]) {
      const vol = (pod.volumes as Obj[]).find((v) => v.name === m.name)!;
      for (const item of vol.secret?.items ?? []) files.add(`${m.mountPath}/${item.path}`);
    }
    const caUses = secretUses(spec).filter((u) => u.kind === 'caCert');
    expect(caUses.length).toBeGreaterThan(0);
    for (const u of caUses) expect(files).toContain(caCertPath(u.ref));
    const config = JSON.parse(one(objects, 'ConfigMap', 'orders-move-config').data['config.json']);
    const caFiles = config.databases.filter((d: Obj) => d.enabled)
      .flatMap((d: Obj) => [d.source.caCertFile, d.destination.caCertFile]).filter(Boolean) as string[];
    expect([...files].sort()).toEqual([...new Set(caFiles)].sort());
  });

  it('given the example (no verify-ca/verify-full), when synthesized, then no Secret volume is mounted', () => {
    const pod = podOf(synth(loadSpecFile(EXAMPLE)).objects).spec;
    expect((pod.volumes as Obj[]).filter((v) => v.secret)).toEqual([]);
  });

  it('given the runner or config.json changes, when synthesized again, then the pod template annotations change with them', () => {
    const spec = loadSpecFile(EXAMPLE);
    const a = podOf(synth(spec).objects).metadata.annotations;
    const b = podOf(synth(spec, `${STAND_IN_BUNDLE}// changed\n`).objects).metadata.annotations;
    const c = podOf(synth(exampleWith((d) => { d.migration.dryRun = true; })).objects).metadata.annotations;
    expect(b[RUNNER_SHA256_ANNOTATION]).not.toBe(a[RUNNER_SHA256_ANNOTATION]);
    expect(b[CONFIG_SHA256_ANNOTATION]).toBe(a[CONFIG_SHA256_ANNOTATION]);
    expect(c[CONFIG_SHA256_ANNOTATION]).not.toBe(a[CONFIG_SHA256_ANNOTATION]);
    expect(c[RUNNER_SHA256_ANNOTATION]).toBe(a[RUNNER_SHA256_ANNOTATION]);
  });
});

describe('images', () => {
  /**
   * Every place an image reference appears: the helper image in the container, the runtime config and the
   * entrypoint's messages; the node runtime's in the init container, the entrypoint and the copy script.
   */
  function imageReferences(objects: Obj[]): { helper: string[]; runtime: string[] } {
    const script = find(objects, 'ConfigMap').find((o) => o.data?.['entrypoint.sh'])!.data;
    const config = JSON.parse((find(objects, 'ConfigMap').find((o) => o.data?.['config.json'])!).data['config.json']);
    const pod = podOf(objects).spec;
    return {
      helper: [containerOf(objects).image, config.image, /^IMAGE='([^']+)'$/m.exec(script['entrypoint.sh'])![1]],
      runtime: [pod.initContainers[0].image, /^RUNTIME_IMAGE='([^']+)'$/m.exec(script['entrypoint.sh'])![1], /^IMAGE='([^']+)'$/m.exec(script['copy-node-runtime.sh'])![1]],
    };
  }

  it('given a registry override and digests (full.yaml), when synthesized, then every image reference uses the override registry and its digest', () => {
    const { objects, yaml } = synth(loadSpecFile(FULL));
    const helper = 'registry.airgap.example.com:5000/mirror/aleph-alpha/shared-images/pharia-helper@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
    const runtime = 'registry.airgap.example.com:5000/mirror/library/node@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210';
    expect(imageReferences(objects)).toEqual({ helper: [helper, helper, helper], runtime: [runtime, runtime, runtime] });
    expect(yaml).not.toContain('ghcr.io');
    expect(yaml).not.toContain('docker.io');
  });

  it('given no registry override (the example), when synthesized, then every image reference keeps the original registry', () => {
    const helper = 'ghcr.io/aleph-alpha/shared-images/pharia-helper:latest';
    const runtime = 'docker.io/library/node:24-bookworm-slim';
    expect(imageReferences(synth(loadSpecFile(EXAMPLE)).objects)).toEqual({ helper: [helper, helper, helper], runtime: [runtime, runtime, runtime] });
  });

  it('given only the registry changes, when synthesized, then exactly the image references change', () => {
    const before = synth(loadSpecFile(EXAMPLE)).yaml;
    const after = synth(exampleWith((d) => { d.image.registry = 'mirror.corp.example'; })).yaml;
    const changed = (a: string, b: string) => a.split('\n').filter((l, i) => l !== b.split('\n')[i]);
    const lines = changed(before, after);
    expect(lines.length).toBeGreaterThanOrEqual(6);
    for (const l of lines) expect(l).toMatch(/ghcr\.io|docker\.io|config-sha256/);
    expect(after).not.toContain('ghcr.io');
    expect(after).not.toContain('docker.io');
    expect(after).toContain('mirror.corp.example/library/node:24-bookworm-slim');
  });
});

describe('the NetworkPolicy', () => {
  it('given full.yaml, when synthesized, then it denies ingress and allows egress only to the database ports and DNS', () => {
    const { objects } = synth(loadSpecFile(FULL));
    const np = one(objects, 'NetworkPolicy');
    expect(np.spec.podSelector).toEqual({
      matchLabels: { 'app.kubernetes.io/name': 'db-migration', 'app.kubernetes.io/instance': 'orders-move', 'app.kubernetes.io/component': 'job' },
    });
    expect(np.spec.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np.spec.ingress).toBeUndefined();
    expect(np.spec.egress).toEqual([
      // 5432: both sources are IPv4 literals.
      { ports: [{ protocol: 'TCP', port: 5432 }], to: [{ ipBlock: { cidr: '10.20.0.15/32' } }, { ipBlock: { cidr: '10.20.0.16/32' } }] },
      // 5433: invoices, source by IP (default host), destination by IP.
      { ports: [{ protocol: 'TCP', port: 5433 }], to: [{ ipBlock: { cidr: '10.20.0.15/32' } }, { ipBlock: { cidr: '192.168.7.9/32' } }] },
      // 6432: the destination is a host name, which a NetworkPolicy cannot match: any destination on that port.
      { ports: [{ protocol: 'TCP', port: 6432 }] },
      { ports: [{ protocol: 'UDP', port: 53 }, { protocol: 'TCP', port: 53 }], to: [{ namespaceSelector: {} }] },
    ]);
    // The disabled database (10.99.0.1:5499) gets no hole.
    expect(JSON.stringify(np)).not.toMatch(/5499|10\.99\.0\.1/);
  });

  it('given the policy selects pods, when compared with the Job, then the selector matches the pod template labels', () => {
    const { objects } = synth(loadSpecFile(FULL));
    const selector = one(objects, 'NetworkPolicy').spec.podSelector.matchLabels as Record<string, string>;
    const podLabels = podOf(objects).metadata.labels as Record<string, string>;
    for (const [k, v] of Object.entries(selector)) expect(podLabels[k]).toBe(v);
  });

  it('given networkPolicy is off (the example), when synthesized, then there is no NetworkPolicy', () => {
    expect(find(synth(loadSpecFile(EXAMPLE)).objects, 'NetworkPolicy')).toEqual([]);
  });
});

describe('ConfigMaps', () => {
  it('given full.yaml, when synthesized, then config.json is exactly the runtime config of the spec', () => {
    const spec = loadSpecFile(FULL);
    const cm = one(synth(spec).objects, 'ConfigMap', 'orders-move-config');
    expect(Object.keys(cm.data)).toEqual(['config.json']);
    expect(cm.data['config.json']).toBe(JSON.stringify(toRuntimeConfig(spec), null, 2));
  });

  it('given a runner bundle, when synthesized, then the script ConfigMap holds its loader and manifest, the entrypoint, the node copy script and the cutover command, and a runner ConfigMap the runner, brotli-compressed', () => {
    const { objects } = synth(loadSpecFile(EXAMPLE));
    const cm = one(objects, 'ConfigMap', 'db-migration-script');
    expect(Object.keys(cm.data).sort()).toEqual(['copy-node-runtime.sh', 'cutover.sh', 'entrypoint.sh', 'load-runner.js', 'runner.json']);
    expect(cm.binaryData).toBeUndefined();
    expect(runnerConfigMaps(objects).map((o) => o.metadata.name)).toEqual(['db-migration-runner-1']);
    expect(unpacked(objects)).toBe(STAND_IN_BUNDLE);
    const part = Buffer.from(one(objects, 'ConfigMap', 'db-migration-runner-1').binaryData['runner.js.br.1'], 'base64');
    expect(JSON.parse(cm.data['runner.json'])).toEqual({
      format: 1,
      encoding: 'br',
      file: 'runner.js',
      bytes: Buffer.byteLength(STAND_IN_BUNDLE),
      sha256: sha256Hex(STAND_IN_BUNDLE),
      parts: [{ file: 'runner.js.br.1', bytes: part.length, sha256: createHash('sha256').update(part).digest('hex'), source: 'ConfigMap db-migration-runner-1' }],
      remedy: 'apply every object synth wrote (kubectl apply -f dist), then start the Job again',
    });
    expect(cm.data['entrypoint.sh']).toContain(
      'exec $NODE --max-semi-space-size=1 --max-opt=2 /opt/db-migration/load-runner.js --config /etc/db-migration/config/config.json "$@"',
    );
  });

  it('given image.runtime.enabled false, when synthesized, then there is no copy script', () => {
    const cm = one(synth(exampleWith((d) => { d.image = { runtime: { enabled: false } }; })).objects, 'ConfigMap', 'db-migration-script');
    expect(Object.keys(cm.data).sort()).toEqual(['cutover.sh', 'entrypoint.sh', 'load-runner.js', 'runner.json']);
  });

  it('given the ServiceAccount, when synthesized, then it mounts no token', () => {
    expect(one(synth(loadSpecFile(EXAMPLE)).objects, 'ServiceAccount').automountServiceAccountToken).toBe(false);
  });

  it('fails when a ConfigMap would exceed what Kubernetes stores in one, naming it, its keys and the limit', () => {
    expect(() => assertFitsConfigMap('huge', { 'a.txt': 'x'.repeat(CONFIGMAP_DATA_LIMIT_BYTES) }, { 'b.bin': Buffer.alloc(10).toString('base64') }))
      .toThrow(/^ConfigMap huge would hold 1048596 bytes of data \(a\.txt 1048576 bytes, b\.bin 10 bytes\), more than the Kubernetes limit of 1048576 bytes$/);
    expect(() => assertFitsConfigMap('fits', { 'a.txt': 'x'.repeat(CONFIGMAP_DATA_LIMIT_BYTES - 5) })).not.toThrow();
  });

  it('fails when kubectl apply could not store an object, naming it and its size: pod annotations too large for the Job', () => {
    const spec = exampleWith((d) => { d.job = { annotations: { 'example.com/huge': 'x'.repeat(270_000) } }; });
    expect(() => synth(spec)).toThrow(
      /^Job\/db-migration cannot be applied with "kubectl apply": it would carry \d+ bytes of annotations .*more than Kubernetes' limit of 262144 bytes$/,
    );
  });
});

describe('no secret value reaches the manifests', () => {
  /** Every value of the Secrets fixture, as written and base64-encoded, plus each PEM body line. */
  function secretValues(): string[] {
    const values: string[] = [];
    for (const doc of parseAllDocuments(readFileSync(FULL_SECRETS, 'utf8'))) {
      const s = doc.toJS() as Obj;
      for (const v of Object.values<string>(s.stringData ?? {})) values.push(v);
      for (const v of Object.values<string>(s.data ?? {})) values.push(Buffer.from(v, 'base64').toString('utf8'));
    }
    return values.flatMap((v) => [v, Buffer.from(v).toString('base64'), ...v.split('\n').filter((l) => l.length >= 8 && !l.startsWith('-----'))]);
  }
  const secretsFixture = () => new Map(parseAllDocuments(readFileSync(FULL_SECRETS, 'utf8')).map((d) => {
    const s = d.toJS() as Obj;
    return [s.metadata.name as string, new Set([...Object.keys(s.stringData ?? {}), ...Object.keys(s.data ?? {})])];
  }));

  it('given the secrets fixture, when compared with full.yaml, then it holds every Secret key the spec refers to', () => {
    const store = secretsFixture();
    for (const u of secretUses(loadSpecFile(FULL))) expect(store.get(u.ref.secret)?.has(u.ref.key), `${u.ref.secret}/${u.ref.key}`).toBe(true);
  });

  it('given full.yaml and Secrets with known values, when synthesized, then no value appears anywhere in the YAML', () => {
    const { yaml } = synth(loadSpecFile(FULL));
    const values = secretValues();
    expect(values.length).toBeGreaterThan(10);
    const leaked = values.filter((v) => yaml.includes(v));
    expect(leaked).toEqual([]);
  });

  it('fails the scan when a value does reach the YAML (the scan can see a leak)', () => {
    const [value] = secretValues();
    const spec = parseSpec(readFileSync(FULL, 'utf8').replace('inject: "false"', `inject: ${JSON.stringify(value)}`), 'full-leak.yaml');
    const { yaml } = synth(spec);
    expect(secretValues().filter((v) => yaml.includes(v))).toContain(value);
  });
});

describe('the runner bundle', () => {
  it('given a program using pg, when bundled, then it is one CommonJS file that runs with no node_modules and no pg-native', () => {
    const bundle = bundleRunner({ entryPoint: PG_ENTRY });
    expect(bundle.bytes).toBe(Buffer.byteLength(bundle.code));
    expect(bundle.sha256).toBe(sha256Hex(bundle.code));
    expect(bundle.code).toContain('require("pg-native")');
    const dir = tempDir('bundle');
    writeFileSync(join(dir, 'runner.js'), bundle.code);
    const run = spawnSync(process.execPath, [join(dir, 'runner.js'), '--config', 'x.json'], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(run.stderr).toBe('');
    expect(run.stdout).toBe('bundle loaded: pg Client function, args --config x.json\n');
    expect(run.status).toBe(0);
  });

  it('given the same entry point twice, when bundled, then the second call returns the cached bundle', () => {
    expect(bundleRunner({ entryPoint: PG_ENTRY })).toBe(bundleRunner({ entryPoint: PG_ENTRY }));
  });

  it('given src/runner/main.ts, when bundled, then it builds, its ConfigMaps stay far below the kubectl apply limit, and it requires only node built-ins (and the optional pg-native)', () => {
    expect(existsSync(RUNNER_MAIN), 'src/runner/main.ts must exist (the runner entry point)').toBe(true);
    const bundle = bundleRunner();
    expect(bundle.bytes).toBeGreaterThan(1000);
    // Whatever the runner's size: the script ConfigMap holds no runner, each part's ConfigMap under 90 KB (the limit is 256 KiB)
    const { objects } = synth(loadSpecFile(EXAMPLE), bundle.code);
    expect(appliedAnnotationsBytes(one(objects, 'ConfigMap', 'db-migration-script'))).toBeLessThan(20_000);
    expect(runnerConfigMaps(objects).length).toBe(Math.ceil(compressRunner(bundle.code).length / RUNNER_PART_MAX_BYTES));
    for (const cm of runnerConfigMaps(objects)) expect(appliedAnnotationsBytes(cm), cm.metadata.name).toBeLessThan(90_000);
    const required = [...bundle.code.matchAll(/require\("([^"]+)"\)/g)].map((m) => m[1]);
    const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
    expect(required.filter((m) => !builtins.has(m) && m !== 'pg-native')).toEqual([]);
    // Loads on its own: no node_modules next to it, no pg-native (runner --help exits before any work).
    const dir = tempDir('main');
    writeFileSync(join(dir, 'runner.js'), bundle.code);
    const run = spawnSync(process.execPath, [join(dir, 'runner.js'), '--help'], { cwd: dir, encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/Usage: /);
    expect(run.status).toBe(0);
  });

  it('given no runnerBundle, when synthesized, then the runner\'s ConfigMaps hold bundleRunner().code and the pod annotation is its sha256', () => {
    const { objects } = synthManifests(loadSpecFile(EXAMPLE)) as { objects: Obj[] };
    const bundle = bundleRunner();
    expect(unpacked(objects)).toBe(bundle.code);
    expect(podOf(objects).metadata.annotations[RUNNER_SHA256_ANNOTATION]).toBe(bundle.sha256);
    expect(JSON.parse(one(objects, 'ConfigMap', 'db-migration-script').data['runner.json']).sha256).toBe(bundle.sha256);
  });

  it('fails to bundle an entry point that does not exist, naming it', () => {
    expect(() => bundleRunner({ entryPoint: join(ROOT, 'no-such-runner.ts') })).toThrow(/cannot bundle the runner: .*no-such-runner\.ts does not exist/);
  });

  it('fails with the file, line and reason when the runner does not build', () => {
    const dir = tempDir('broken');
    const entry = join(dir, 'main.ts');
    writeFileSync(entry, `import { nothing } from './missing';\nconsole.log(nothing);\n`);
    expect(() => bundleRunner({ entryPoint: entry })).toThrow(/^cannot bundle the runner \(.*main\.ts\):\n {2}.*main\.ts:1:25: Could not resolve "\.\/missing"$/);
  });
});

describe('entrypoint.sh', () => {
  const IMAGE = 'registry.airgap.example.com:5000/mirror/aleph-alpha/shared-images/pharia-helper@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef';
  const RUNTIME_IMAGE = 'registry.airgap.example.com:5000/mirror/library/node@sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210';
  const TOOLS_HINT = 'use an image with the PostgreSQL client tools, at least as new as the source servers (the seed\'s helper image has 17)';
  const NO_COPY = 'the node-runtime init container copied none into /opt/db-migration-node (kubectl logs POD -c node-runtime says why)';
  const DISABLED = 'image.runtime.enabled is false, so the Job does not bring node: set it to true (the default), or use an image with node (image/Dockerfile builds one)';

  /**
   * The synthesized entrypoint, written to a file; `runtime` points its node-runtime directory (in the pod, the
   * emptyDir at /opt/db-migration-node) at a test directory.
   */
  function entrypoint(spec: MigrationSpec = loadSpecFile(FULL), runtime?: string): string {
    const dir = tempDir('entry');
    const file = join(dir, 'entrypoint.sh');
    let text = one(synth(spec).objects, 'ConfigMap', `${spec.name}-script`).data['entrypoint.sh'] as string;
    if (runtime !== undefined) {
      expect(text).toContain("RUNTIME='/opt/db-migration-node'\n");
      text = text.replace("RUNTIME='/opt/db-migration-node'\n", `RUNTIME='${runtime}'\n`);
    }
    writeFileSync(file, text);
    return file;
  }
  /** A directory of fake tools: each prints what it was called with (node prints a version for --version). */
  function toolsDir(tools: Record<string, string>): string {
    const dir = tempDir('bin');
    for (const [name, body] of Object.entries(tools)) {
      writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(dir, name), 0o755);
    }
    return dir;
  }
  /** A node-runtime directory as the init container leaves it: ld.so (here: checks its options, then runs the program) and node. */
  function copiedRuntime(version: string): string {
    const dir = toolsDir({
      'ld.so': '[ "$1" = --library-path ] && [ "$2" = "${0%/*}/lib" ] || { echo "bad loader arguments: $*" >&2; exit 9; }\nshift 2\nexec "$@"',
      node: `if [ "$1" = --version ]; then echo ${version}; else echo "copied node $* NODE_OPTIONS=\${NODE_OPTIONS-unset} SOURCE=\${DBM_NODE_SOURCE}"; fi`,
    });
    execFileSync('mkdir', [join(dir, 'lib')]);
    return dir;
  }
  const pgTools = { pg_dump: 'exit 0', pg_restore: 'exit 0', psql: 'exit 0' };
  const imageNode = (version: string) =>
    `if [ "$1" = --version ]; then echo ${version}; else echo "image node $* NODE_OPTIONS=\${NODE_OPTIONS-unset} SOURCE=\${DBM_NODE_SOURCE}"; fi`;
  const run = (file: string, path: string, args: string[] = []) =>
    spawnSync('/bin/sh', [file, ...args], { encoding: 'utf8', env: { PATH: path, NODE_OPTIONS: '--require /nonexistent.js' } });
  const runnerArgs = '--max-semi-space-size=1 --max-opt=2 /opt/db-migration/load-runner.js --config /etc/db-migration/config/config.json';

  it('given the synthesized entrypoint and copy script, when checked with sh -n, then they parse', () => {
    const cm = one(synth(loadSpecFile(FULL)).objects, 'ConfigMap', 'orders-move-script');
    for (const key of ['entrypoint.sh', 'copy-node-runtime.sh']) {
      const file = join(tempDir('parse'), key);
      writeFileSync(file, cm.data[key]);
      expect(() => execFileSync('/bin/sh', ['-n', file]), key).not.toThrow();
    }
  });

  it('fails with one clear line per missing tool, naming the image and what to do, when there is no node anywhere and no PostgreSQL tools', () => {
    const result = run(entrypoint(loadSpecFile(FULL), tempDir('empty-runtime')), toolsDir({}));
    expect(result.status).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr.trimEnd().split('\n')).toEqual([
      `db-migration: image ${IMAGE}: node is missing (not found on PATH), need node >= 20; ${NO_COPY}`,
      `db-migration: image ${IMAGE}: pg_dump is missing (not found on PATH); ${TOOLS_HINT}`,
      `db-migration: image ${IMAGE}: pg_restore is missing (not found on PATH); ${TOOLS_HINT}`,
      `db-migration: image ${IMAGE}: psql is missing (not found on PATH); ${TOOLS_HINT}`,
    ]);
  });

  it('given image.runtime disabled and an image without node, when run, then it fails saying the Job brings no node and how to change that', () => {
    const spec = parseSpec(readFileSync(FULL, 'utf8').replace('  runtime:\n', '  runtime:\n    enabled: false\n'), 'full-no-runtime.yaml');
    expect(spec.image.runtime.enabled).toBe(false);
    const result = run(entrypoint(spec), toolsDir(pgTools));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`db-migration: image ${IMAGE}: node is missing (not found on PATH), need node >= 20; ${DISABLED}\n`);
  });

  it('fails when the image\'s node is older than 20 and none was copied, naming its version', () => {
    const result = run(entrypoint(loadSpecFile(FULL), tempDir('empty-runtime')), toolsDir({ ...pgTools, node: imageNode('v18.19.1') }));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`db-migration: image ${IMAGE}: node v18.19.1 is too old, need node >= 20; ${NO_COPY}\n`);
  });

  it('given node >= 20 in the image, when run, then it execs the image\'s node on the loader with the config and the extra arguments, without NODE_OPTIONS, even with a copied node present', () => {
    const path = toolsDir({ ...pgTools, node: imageNode('v20.11.1') });
    const result = run(entrypoint(loadSpecFile(FULL), copiedRuntime('v24.1.0')), path, ['--dry-run']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(`image node ${runnerArgs} --dry-run NODE_OPTIONS=unset SOURCE=from the image (${path}/node)\n`);
    expect(result.status).toBe(0);
  });

  it('given no node in the image and a copied node, when run, then it execs the copied node through the copied loader and says where it came from', () => {
    const runtime = copiedRuntime('v24.11.1');
    const result = run(entrypoint(loadSpecFile(FULL), runtime), toolsDir(pgTools), ['--resume']);
    expect(result.stderr).toBe('');
    expect(result.stdout).toBe(`copied node ${runnerArgs} --resume NODE_OPTIONS=unset `
      + `SOURCE=copied from ${RUNTIME_IMAGE} by the node-runtime init container (${IMAGE} has no node)\n`);
    expect(result.status).toBe(0);
  });

  it('given an image node that is too old and a copied node, when run, then the copied node runs and the log says why', () => {
    const result = run(entrypoint(loadSpecFile(FULL), copiedRuntime('v24.11.1')), toolsDir({ ...pgTools, node: imageNode('v18.19.1') }));
    expect(result.stdout).toContain(`SOURCE=copied from ${RUNTIME_IMAGE} by the node-runtime init container (${IMAGE} has node v18.19.1, too old)\n`);
    expect(result.status).toBe(0);
  });

  it('fails naming the runtime image when the copied node does not start', () => {
    const runtime = copiedRuntime('v24.11.1');
    writeFileSync(join(runtime, 'node'), '#!/bin/sh\necho "error while loading shared libraries: libstdc++.so.6" >&2\nexit 127\n');
    const result = run(entrypoint(loadSpecFile(FULL), runtime), toolsDir(pgTools));
    expect(result.status).toBe(1);
    expect(result.stderr).toBe(`db-migration: image ${IMAGE}: the node copied from ${RUNTIME_IMAGE} does not run here `
      + '(error while loading shared libraries: libstdc++.so.6); image.runtime must name an image with node >= 20\n');
  });
});
