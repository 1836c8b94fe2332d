/**
 * The real one-node Kubernetes 1.28 of ../shared/k8s (the kit; its README says what it starts and changes) for the
 * end-to-end suite, test/e2e/*.test.ts:
 *   - startCluster(): k8s-up (idempotent: the first test file starts the cluster, the others find it running) and
 *     the two images the default spec names, imported from stand-in root filesystems (rootfs.ts: the helper image
 *     with the PostgreSQL client tools and no node or libstdc++, the official Node.js build); all under a host-wide
 *     lock, so test files running at the same time never start the cluster or import an image twice at once;
 *   - kubectl(): the machine's kubectl with the kit's kubeconfig, every call bounded;
 *   - namespaces enforcing Pod Security `restricted`, bounded waits for a Job that fail with the cluster's own
 *     account of it (describe, events, every container's log).
 * The cluster is left running (`k8s-down` stops it; CI runs `k8s-down --purge` at its end).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach } from 'vitest';
import { REPO } from './repo';
import { busyboxRoot, helperRoot, keepStandInRootsIn, nodeImageRoot, officialNodeBinary } from './rootfs';

export const KIT = join(REPO, '..', 'shared', 'k8s');
export const STATE_DIR = process.env.DBM_K8S_STATE ?? '/tmp/dbm-k8s';
export const KUBECONFIG = join(STATE_DIR, 'kubeconfig');
/** The bridge address: servers on the host listen here for the pods, and admit the pod network. */
export const POD_GATEWAY = '198.18.200.1';
export const POD_NETWORK = '198.18.200.0/24';
/** Stand-in roots kept between runs (so unchanged images are not imported again) and the lock file. */
export const E2E_DIR = '/var/tmp/db-migration-e2e';
/** The host-wide lock under which the cluster is started and the kept roots are built. */
export const E2E_LOCK = join(E2E_DIR, 'lock');

/** Per-test timeout of the end-to-end scenarios (each wait inside is bounded on its own). */
export const E2E_TIMEOUT = 900_000;

/** Under CI=true the suite always runs (and fails if it cannot); elsewhere it runs where the kit is. */
export const RUN_E2E = process.env.CI === 'true' || existsSync(join(KIT, 'k8s-up'));

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end, at most `timeoutMs` (then it is killed and the run throws); never throws on its exit code. */
export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, KUBECONFIG, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no end after ${timeoutMs / 1000} s\n${stdout}${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }); });
  });
}

/** `kubectl ARGS` with the kit's kubeconfig. */
export function kubectl(args: readonly string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  return run('kubectl', args, opts);
}

/** `kubectl ARGS` that must exit 0: its stdout, else an error with what it printed. */
export async function kubectlOk(args: readonly string[], opts: { timeoutMs?: number; cwd?: string } = {}): Promise<string> {
  const r = await kubectl(args, opts);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/**
 * Holds a host-wide exclusive lock on `file` (flock(1), the same lock a shell script would take) while `fn` runs.
 * The lock is held by a child process, so it is released when this process ends, however it ends.
 */
export async function withHostLock<T>(file: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const holder = spawn('flock', ['-w', String(Math.ceil(timeoutMs / 1000)), file, 'sh', '-c', 'echo locked; read _'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const ended = new Promise<number>((resolve) => holder.on('close', (code) => resolve(code ?? 1)));
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    void ended.then((code) => reject(new Error(`flock ${file}: not acquired within ${timeoutMs / 1000} s (exit ${code})`)));
  });
  try {
    return await fn();
  } finally {
    holder.stdin.end();
    await ended;
  }
}

export interface Cluster {
  /** Seconds k8s-up took in this process (about 1 s when the cluster was already running). */
  readonly upSeconds: number;
  /** The images imported from the stand-in roots, by role. */
  readonly images: { readonly helper: string; readonly node: string };
}

let started: Promise<Cluster> | undefined;

/**
 * Starts the cluster (if it is not running) and imports the images `defaultImages` names, helper first, then the
 * node runtime: what `db-migration images` prints for a spec without an image section. Once per process.
 */
export function startCluster(defaultImages: () => Promise<readonly string[]>): Promise<Cluster> {
  mkdirSync(E2E_DIR, { recursive: true, mode: 0o755 });
  started ??= withHostLock(E2E_LOCK, 900_000, async () => {
    const t0 = Date.now();
    const up = await run(join(KIT, 'k8s-up'), [STATE_DIR], { timeoutMs: 600_000 });
    if (up.code !== 0 || up.stdout.trim() !== KUBECONFIG) throw new Error(`k8s-up exited ${up.code}:\n${up.stdout}${up.stderr}`);
    const upSeconds = (Date.now() - t0) / 1000;
    const [helper, node] = await defaultImages();
    await importImage(helper, 'helper', '--cmd', 'sh');
    await importImage(node, 'node', '--cmd', 'node');
    return { upSeconds, images: { helper, node } };
  });
  return started;
}

/**
 * k8s-image NAME ROOT: the helper, the node or the static busybox stand-in root (rootfs.ts), kept in E2E_DIR
 * (skipped by the kit when unchanged). A root not yet built is built here: call it under the host lock
 * (withHostLock of E2E_LOCK) unless startCluster built it.
 */
export async function importImage(name: string, root: 'helper' | 'node' | 'busybox', ...options: string[]): Promise<void> {
  keepStandInRootsIn(join(E2E_DIR, 'roots'));
  const dir = root === 'helper' ? helperRoot() : root === 'node' ? nodeImageRoot(officialNodeBinary(24)) : busyboxRoot();
  const r = await run(join(KIT, 'k8s-image'), ['--state', STATE_DIR, name, dir, ...options], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`k8s-image ${name} exited ${r.code}:\n${r.stdout}${r.stderr}`);
}

/**
 * Removes images from the cluster's containerd, those it does not hold aside (crictl of the kit, on its socket).
 * Careful: crictl rmi removes the image id, with every name it has.
 */
export async function removeImages(names: readonly string[]): Promise<void> {
  const socket = `unix://${join(STATE_DIR, 'containerd', 'containerd.sock')}`;
  for (const name of names) {
    const r = await run(join(STATE_DIR, 'bin', 'crictl'), ['--runtime-endpoint', socket, '--image-endpoint', socket, 'rmi', name]);
    if (r.code !== 0 && !/no such image|not found/i.test(r.stderr)) throw new Error(`crictl rmi ${name} exited ${r.code}: ${r.stderr}`);
  }
}

/** The image names the node reports (`kubectl get node`): what containerd holds. */
export async function nodeImages(): Promise<string[]> {
  const node = JSON.parse(await kubectlOk(['get', 'node', 'dbm-node', '-o', 'json'])) as { status: { images?: { names?: string[] }[] } };
  return (node.status.images ?? []).flatMap((i) => i.names ?? []);
}

/** A new namespace `PREFIX-xxxxx` that enforces the `restricted` Pod Security Standard. */
export async function createNamespace(prefix: string): Promise<string> {
  const ns = `${prefix}-${Math.random().toString(36).slice(2, 7)}`;
  await kubectlOk(['create', 'namespace', ns]);
  await kubectlOk(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']);
  return ns;
}

export async function deleteNamespace(ns: string | undefined): Promise<void> {
  if (ns) await kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait', '--timeout=180s'], { timeoutMs: 200_000 });
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** The namespace's Jobs and pods described, its events, and the last lines of every container's log. */
export async function clusterReport(ns: string): Promise<string> {
  const parts = await Promise.all([
    ['describe', 'jobs,pods'],
    ['get', 'events', '--sort-by=.lastTimestamp'],
    ['logs', '-l', 'job-name', '--all-containers', '--prefix', '--tail=60', '--max-log-requests=20'],
  ].map((args) => kubectl(['-n', ns, ...args]).then((r) => r.stdout + r.stderr, (err: Error) => err.message)));
  return `---- the cluster's account of namespace ${ns}:\n${parts.join('\n----\n')}`;
}

/** Runs every clean-up step, each whatever the others did, then throws the first error if any failed. */
export async function cleanUp(...steps: (() => unknown)[]): Promise<void> {
  const results = [];
  for (const step of steps) results.push(await Promise.resolve().then(step).then(() => undefined, (err: unknown) => err ?? new Error('clean-up failed')));
  const failed = results.find((r) => r !== undefined);
  if (failed) throw failed;
}

/** After each failed test of the file, prints the cluster's account of its namespaces (before afterAll deletes them). */
export function reportFailures(namespaces: () => readonly (string | undefined)[]): void {
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    for (const ns of namespaces()) if (ns) console.error(await clusterReport(ns));
  });
}

/**
 * Waits (polling, at most `timeoutMs`) until Job `name` has the condition Complete or Failed; returns the Job when it
 * is `want`, else throws with the cluster report.
 */
export async function waitForJob(ns: string, name: string, want: 'Complete' | 'Failed', timeoutMs: number): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await kubectl(['-n', ns, 'get', 'job', name, '-o', 'json']);
    const job = r.code === 0 ? JSON.parse(r.stdout) as Json : undefined;
    const done = (job?.status?.conditions as Json[] | undefined)?.find((c) => ['Complete', 'Failed'].includes(c.type) && c.status === 'True');
    if (done?.type === want) return job!;
    if (done || Date.now() > deadline) {
      const what = done ? `Job ${name} ended ${done.type} (${done.reason ?? ''}: ${done.message ?? ''}), expected ${want}` : `Job ${name} not ${want} after ${timeoutMs / 1000} s`;
      throw new Error(`${what}\n${await clusterReport(ns)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** The Job's pods, oldest first. */
export async function jobPods(ns: string, job: string): Promise<Json[]> {
  const list = JSON.parse(await kubectlOk(['-n', ns, 'get', 'pods', '-l', `job-name=${job}`, '-o', 'json'])) as { items: Json[] };
  return list.items.sort((a, b) => String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)));
}

/** The runner container's termination message and exit code in a pod, once it has terminated. */
export function runnerTermination(pod: Json): { exitCode: number; message: string } | undefined {
  const status = (pod.status?.containerStatuses as Json[] | undefined)?.find((c) => c.name === 'runner');
  const t = status?.state?.terminated ?? status?.lastState?.terminated;
  return t ? { exitCode: t.exitCode as number, message: (t.message as string | undefined) ?? '' } : undefined;
}
