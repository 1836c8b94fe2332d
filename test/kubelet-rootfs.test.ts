/*
 * Stand-in vs. the real cluster (test/e2e, issue 17). This file tests the test tools, which no cluster shows:
 *   - the stand-in image roots of support/rootfs.ts have what they stand in for and nothing more (the cluster
 *     suite imports the same roots with k8s-image: the helper image, the official node build, static busybox);
 *   - the kubelet stand-in (support/kubelet*.ts), in which job-contract and runner-split still run the Job on the
 *     host's root: what they rely on, ConfigMap binaryData byte-exact (the runner ships in it) and a failing init
 *     container stopping the pod (both checked in stand-in images), and on the host's root init containers, Secret
 *     env, hostAliases, JOB_COMPLETION_INDEX, a size-limited emptyDir, the termination message, no capabilities
 *     and no_new_privs;
 *   - its image mode alone (each container in its image's root): an image without a root is an error, a command
 *     the image lacks fails to start, the same process state in the helper and busybox roots. No stand-in suite
 *     runs a Job in image mode any more; these cases test it for as long as support/kubelet-container.ts has it.
 * The init container handing node to the helper image (e2e/online, e2e/readme-path) and the copied node in a root
 * without any C library (e2e/images) are shown in the real cluster.
 */
/**
 * The kubelet stand-in, on the host's root and with stand-in images: each image is a root directory built from
 * this machine's binaries (support/rootfs.ts); node is the Node.js project's own Linux build, as the Docker image
 * ships it.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJobPodAsKubelet, type KubeletRunOptions, type KubeletRunResult } from './support/kubelet';
import { busyboxRoot, elfNeedsLoader, helperRoot, IMAGE_PATH, nodeImageRoot, officialNodeBinary, removeStandInRoots } from './support/rootfs';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const NODE_IMAGE = 'docker.io/library/node:24-bookworm-slim';
const HELPER_IMAGE = 'registry.example.com/db-migration/helper:1';
const BUSYBOX_IMAGE = 'docker.io/library/busybox:1.36-musl';
const POD_SECURITY = { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000 };
const RESTRICTED = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ['ALL'] } };

function jobWith(pod: { initContainers?: Obj[]; containers: Obj[]; volumes: Obj[] }): Obj {
  return {
    apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'rootfs', namespace: 'apps' },
    spec: { template: { spec: { restartPolicy: 'Never', securityContext: POD_SECURITY, ...pod } } },
  };
}

function container(name: string, image: string, script: string, volumeMounts: Obj[], securityContext: Obj = RESTRICTED): Obj {
  return { name, image, command: ['/bin/sh', '-c', script], securityContext, volumeMounts };
}

describe('the kubelet stand-in, with stand-in image roots', () => {
  let images: Record<string, string>;
  const stages: string[] = [];
  const run = async (objects: Obj[], extra: Partial<KubeletRunOptions> = {}): Promise<KubeletRunResult> => {
    const result = await runJobPodAsKubelet({ objects, secrets: {}, images, imageEnv: { PATH: IMAGE_PATH }, timeoutMs: 60_000, ...extra });
    for (const dir of Object.values(result.volumes)) stages.push(dirname(dir));
    return result;
  };

  beforeAll(() => {
    // given the three images, as root directories built from this machine's binaries
    images = { [NODE_IMAGE]: nodeImageRoot(officialNodeBinary()), [HELPER_IMAGE]: helperRoot(), [BUSYBOX_IMAGE]: busyboxRoot() };
  });

  afterAll(() => {
    // the emptyDirs that were plain directories are left on the host with what the containers wrote: remove them
    for (const stage of stages) rmSync(stage, { recursive: true, force: true });
    removeStandInRoots();
  });

  it('the stand-in images have what they stand in for, and nothing more', () => {
    // given the built roots (beforeAll); then:
    // the node image: the official build at /usr/local/bin/node, with the loader at Debian's path
    expect(readFileSync(join(images[NODE_IMAGE], 'usr/local/bin/node')).equals(readFileSync(officialNodeBinary()))).toBe(true);
    expect(existsSync(join(images[NODE_IMAGE], 'lib64/ld-linux-x86-64.so.2'))).toBe(true);
    // the helper image: the PostgreSQL client tools and their libraries, but no node and no libstdc++
    for (const tool of ['pg_dump', 'pg_restore', 'psql']) expect(existsSync(join(images[HELPER_IMAGE], 'usr/lib/postgresql/15/bin', tool))).toBe(true);
    expect(existsSync(join(images[HELPER_IMAGE], 'lib/x86_64-linux-gnu/libpq.so.5'))).toBe(true);
    expect(existsSync(join(images[HELPER_IMAGE], 'lib/x86_64-linux-gnu/libstdc++.so.6'))).toBe(false);
    expect(existsSync(join(images[HELPER_IMAGE], 'usr/local/bin/node'))).toBe(false);
    // busybox: one static binary that needs no loader, and no C library
    expect(elfNeedsLoader(join(images[BUSYBOX_IMAGE], 'bin/busybox'))).toBe(false);
    expect(elfNeedsLoader(officialNodeBinary())).toBe(true);
    expect(existsSync(join(images[BUSYBOX_IMAGE], 'lib'))).toBe(false);
  });

  it('a ConfigMap\'s binaryData arrives byte-exact, beside its data, with items and defaultMode', async () => {
    // given gzip bytes (every byte value, compressed) in binaryData and text in data
    const payload = gzipSync(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7) % 256)));
    const configMap = {
      apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'blobs', namespace: 'apps' },
      data: { 'note.txt': 'plain text\n' }, binaryData: { 'payload.gz': payload.toString('base64') },
    };
    const main = container('runner', HELPER_IMAGE, [
      'ls -ln /cfg/sub/p.gz | sed "s/ .*//"',
      'cat /cfg/note.txt',
      'gzip -t /cfg/sub/p.gz && echo "gzip: intact"',
      'cp /cfg/sub/p.gz /out/copy.gz',
    ].join('\n'), [{ name: 'cfg', mountPath: '/cfg' }, { name: 'out', mountPath: '/out' }]);
    const job = jobWith({
      containers: [main],
      volumes: [
        { name: 'cfg', configMap: { name: 'blobs', defaultMode: 0o440, items: [{ key: 'payload.gz', path: 'sub/p.gz' }, { key: 'note.txt', path: 'note.txt' }] } },
        { name: 'out', emptyDir: {} },
      ],
    });

    // when the pod runs
    const result = await run([job, configMap]);

    // then the container read exactly those bytes (readable to the pod's fsGroup, read-only)
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toBe('-r--r-----\nplain text\ngzip: intact\n');
    expect(readFileSync(join(result.volumes.out, 'copy.gz')).equals(payload)).toBe(true);

    // and a key in both data and binaryData is refused, as the API server would
    const both = { ...configMap, data: { ...configMap.data, 'payload.gz': 'text' } };
    await expect(run([job, both])).rejects.toThrow(/key payload\.gz is in both data and binaryData/);
  });

  it('an init container that exits non-zero stops the pod before the main container runs', async () => {
    // given an init container that fails and a main container that would leave a mark
    const job = jobWith({
      initContainers: [container('fetch-node', NODE_IMAGE, 'echo "init started"; echo "no node here" >&2; exit 3', [{ name: 'rt', mountPath: '/opt/rt' }])],
      containers: [container('runner', HELPER_IMAGE, 'echo "runner started"; : > /opt/rt/runner-ran', [{ name: 'rt', mountPath: '/opt/rt' }])],
      volumes: [{ name: 'rt', emptyDir: {} }],
    });

    // when the pod runs
    const result = await run([job]);

    // then the pod stopped at the init container, with its exit code and output, and the runner never started
    expect(result).toMatchObject({ code: 3, signal: null, container: 'fetch-node', stdout: 'init started\n', stderr: 'no node here\n' });
    expect(result.containers.map((c) => c.name)).toEqual(['fetch-node']);
    expect(existsSync(join(result.volumes.rt, 'runner-ran'))).toBe(false);
  });

  it('an image the pod names but the test does not stand in for is an error naming it', async () => {
    // given a container whose image has no stand-in root
    const job = jobWith({ containers: [container('runner', 'registry.example.com/unknown:2', 'true', [])], volumes: [] });
    // when the pod is to run, then it does not, and the error names the container and the image
    await expect(run([job])).rejects.toThrow('container runner: image registry.example.com/unknown:2 has no root filesystem in options.images');
  });

  it('a command the image does not have fails to start (exit 128, as the kubelet reports a StartError)', async () => {
    // given the helper image asked to run node directly
    const job = jobWith({ containers: [{ name: 'runner', image: HELPER_IMAGE, command: ['node', '--version'], securityContext: RESTRICTED }], volumes: [] });
    // when the pod runs
    const result = await run([job]);
    // then node is not found on the image's PATH
    expect(result).toMatchObject({ code: 128, container: 'runner', stdout: '', stderr: 'exec "node": No such file or directory\n' });
  });

  it('without images, the containers run on the host\'s root as before, init containers first', async () => {
    // given, on the host's root: an init container and a main container sharing an emptyDir at /tmp, a Secret
    // env, hostAliases, JOB_COMPLETION_INDEX, a 1 MiB size-limited emptyDir and a termination message
    const job = jobWith({
      initContainers: [container('prepare', 'any', 'echo prepared > /tmp/from-init', [{ name: 'tmp', mountPath: '/tmp' }])],
      containers: [{
        ...container('runner', 'any', [
          'cat /tmp/from-init',
          'echo "pw=$PW index=$JOB_COMPLETION_INDEX"',
          'grep source.example.internal /etc/hosts',
          'head -c 2000000 /dev/zero > /dbm-kubelet-scratch/big 2>/dev/null && echo "scratch: unlimited" || echo "scratch: full"',
          'echo "write to /var: $( (: > /var/probe) 2>&1 | sed \'s/.*: //\')"',
          'echo \'{"done":true}\' > /dev/termination-log',
        ].join('\n'), [{ name: 'tmp', mountPath: '/tmp' }, { name: 'scratch', mountPath: '/dbm-kubelet-scratch' }]),
        env: [{ name: 'PW', valueFrom: { secretKeyRef: { name: 'db', key: 'pw' } } }],
        terminationMessagePath: '/dev/termination-log',
      }],
      volumes: [{ name: 'tmp', emptyDir: {} }, { name: 'scratch', emptyDir: { sizeLimit: '1Mi' } }],
    });
    const started: string[] = [];

    // when the pod runs without images
    const result = await run([job], {
      images: undefined, imageEnv: { PATH: '/usr/bin:/bin' }, secrets: { db: { pw: 's3cret' } }, sizeLimitedVolumes: ['scratch'],
      hostAliases: { 'source.example.internal': '127.0.0.2' }, extraEnv: { JOB_COMPLETION_INDEX: '2' }, onStart: (_pid, name) => started.push(name),
    });

    // then both ran, in order, with what they were given; the mountpoint made on the host is gone again
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(started).toEqual(['prepare', 'runner']);
    expect(result.stdout).toBe('prepared\npw=s3cret index=2\n127.0.0.2 source.example.internal\nscratch: full\nwrite to /var: Read-only file system\n');
    expect(result.terminationMessage).toBe('{"done":true}\n');
    expect(result.env).toMatchObject({ PW: 's3cret', JOB_COMPLETION_INDEX: '2', PATH: '/usr/bin:/bin' });
    expect(Object.keys(result.volumes)).toEqual(['tmp']);
    expect(readFileSync(join(result.volumes.tmp, 'from-init'), 'utf8')).toBe('prepared\n');
    expect(existsSync('/dbm-kubelet-scratch')).toBe(false);
  });

  // The process as the kernel sees it: no capability in any set, no_new_privs, the pod's IDs (real, effective,
  // saved and filesystem), the fsGroup as supplementary group.
  const STATUS = 'grep -E "^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):" /proc/self/status';
  const EXPECTED_STATUS = {
    Uid: '1000\t1000\t1000\t1000', Gid: '1000\t1000\t1000\t1000', Groups: '2000', NoNewPrivs: '1',
    CapInh: '0000000000000000', CapPrm: '0000000000000000', CapEff: '0000000000000000', CapBnd: '0000000000000000', CapAmb: '0000000000000000',
  };
  const parseStatus = (text: string) => Object.fromEntries(text.trim().split('\n').map((l) => l.split(/:\s*/, 2)).map(([k, v]) => [k, v.trim()]));

  it.each([
    ['the helper image', HELPER_IMAGE],
    ['busybox', BUSYBOX_IMAGE],
    ['the host\'s root (no images)', undefined],
  ])('in %s, the container process has no capabilities, no_new_privs and the pod\'s IDs', async (_what, image) => {
    // given a container that prints its own process status
    const job = jobWith({ containers: [container('runner', image ?? 'any', STATUS, [])], volumes: [] });

    // when the pod runs, in that image or on the host's root
    const result = await run([job], image ? {} : { images: undefined, imageEnv: { PATH: '/usr/bin:/bin' } });

    // then
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(0);
    const status = parseStatus(result.stdout);
    expect(status).toEqual(EXPECTED_STATUS);
  });
});
