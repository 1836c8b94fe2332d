/**
 * Runs a synthesized Job's pod the way the kubelet would, without a cluster: its init containers in order, then
 * its (first) container, each in a private mount namespace (`unshare --mount`) of its own where every volume it
 * mounts is at its mountPath (ConfigMaps, with data and binaryData, and Secrets as read-only files from the
 * manifests and a test Secret; emptyDirs as writable directories shared by all the pod's containers, optionally
 * size-limited tmpfs), the root is read-only if its securityContext says so, its termination message path is
 * provided, and its command runs as the pod's runAsUser/runAsGroup (the container's own if it sets them) with the
 * pod's fsGroup as supplementary group, no capabilities and no_new_privs, with exactly its environment
 * (`valueFrom.secretKeyRef` resolved from the test Secret). A container that fails stops the pod.
 *
 * Without `images`, every container runs on the host's root filesystem. With `images` (image reference → root
 * directory, e.g. from ./rootfs), each runs with its image's root as `/`: see kubelet-container.ts for how.
 * Needs root (for unshare and mount).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { HOST, hostRootScript, imageRootScript, quote, type ContainerMount, type ContainerPlan } from './kubelet-container';
import { containerEnv, stageVolumes } from './kubelet-volumes';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface KubeletRunOptions {
  /** Every synthesized object (the Job and the ConfigMaps it mounts). */
  readonly objects: readonly Obj[];
  /** Secret name → key → value, standing in for the cluster's Secrets. */
  readonly secrets: Record<string, Record<string, string>>;
  /** The image's own environment (e.g. PATH with node and the PostgreSQL client tools); default: Docker's default PATH. */
  readonly imageEnv?: Record<string, string>;
  /**
   * Image reference → root filesystem directory standing in for that image. When given, every container runs
   * chroot'ed into its image's root (an image missing here is an error); without it, on the host's root.
   */
  readonly images?: Record<string, string>;
  /** Image reference → that image's environment, instead of imageEnv for its containers. */
  readonly imageEnvs?: Record<string, Record<string, string>>;
  /** emptyDir volumes mounted as tmpfs with their sizeLimit (their content is gone after the run). */
  readonly sizeLimitedVolumes?: readonly string[];
  /** Host name → IP address entries for the pod's /etc/hosts, as the kubelet writes for hostAliases. */
  readonly hostAliases?: Record<string, string>;
  /** Extra env for every container, e.g. JOB_COMPLETION_INDEX as the Job controller sets for Indexed Jobs. */
  readonly extraEnv?: Record<string, string>;
  /** For the whole pod: a container still running then is killed (SIGKILL) and the pod stops. */
  readonly timeoutMs?: number;
  /** Called with the pid of each container's process (unshare, then exec'ed into the command) once started. */
  readonly onStart?: (pid: number, container: string) => void;
}

export interface ContainerRunResult {
  readonly name: string;
  readonly init: boolean;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminationMessage: string;
  /** The container's environment as given to the process. */
  readonly env: Record<string, string>;
}

export interface KubeletRunResult {
  /** Exit code and signal of the container that ran last: the main container, or the one that failed. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Name of the container that ran last: the main container, or the init container that failed. */
  readonly container: string;
  /** Output of every container that ran, concatenated in the order they ran. */
  readonly stdout: string;
  readonly stderr: string;
  /** The termination message of the container that ran last. */
  readonly terminationMessage: string;
  /** Host directories that held each bind-mounted emptyDir, by volume name. */
  readonly volumes: Record<string, string>;
  /** The environment of the container that ran last (for hygiene checks). */
  readonly env: Record<string, string>;
  /** Each container that ran, in order. */
  readonly containers: readonly ContainerRunResult[];
}

const DEFAULT_IMAGE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };

export async function runJobPodAsKubelet(opts: KubeletRunOptions): Promise<KubeletRunResult> {
  const job = opts.objects.find((o) => o.kind === 'Job');
  if (!job) throw new Error('no Job among the objects');
  const pod = job.spec.template.spec;
  const containers: { spec: Obj; init: boolean }[] = [
    ...(pod.initContainers ?? []).map((spec: Obj) => ({ spec, init: true })),
    { spec: pod.containers[0], init: false },
  ];
  const imageRoots = containers.map(({ spec }) => {
    if (!opts.images) return undefined;
    const root = opts.images[spec.image];
    if (!root) throw new Error(`container ${spec.name}: image ${spec.image} has no root filesystem in options.images`);
    return root;
  });
  const main = identity(pod, containers[containers.length - 1].spec);

  // Staged outside /tmp: a pod on the host's root mounts its own /tmp over the host's.
  const stage = mkdtempSync(join(existsSync('/var/tmp') ? '/var/tmp' : tmpdir(), 'dbm-kubelet-'));
  chmodSync(stage, 0o755);
  const staged = stageVolumes(pod, containers.map((c) => c.spec), stage, main.fsGroup,
    { objects: opts.objects, secrets: opts.secrets, namespace: job.metadata.namespace, sizeLimitedVolumes: opts.sizeLimitedVolumes });
  const hosts = join(stage, '.hosts');
  writeFileSync(hosts, ['127.0.0.1 localhost', ...Object.entries(opts.hostAliases ?? {}).map(([name, ip]) => `${ip} ${name}`)].join('\n') + '\n', { mode: 0o644 });

  const createdOnHost: string[] = [];
  const deadline = opts.timeoutMs ? Date.now() + opts.timeoutMs : undefined;
  let sandbox: ChildProcess | undefined;
  const results: ContainerRunResult[] = [];
  try {
    // Size-limited emptyDirs are tmpfs in a pod-level namespace that every container's namespace starts from.
    if (staged.tmpfs.length > 0) sandbox = await startSandbox(staged.tmpfs);
    for (const [index, { spec, init }] of containers.entries()) {
      const { uid, gid, fsGroup } = identity(pod, spec);
      const termination = join(stage, `.termination-log-${spec.name}`);
      writeFileSync(termination, '');
      chownSync(termination, uid, gid);
      const mounts: ContainerMount[] = (spec.volumeMounts ?? []).map((m: Obj) => {
        const volume = staged.byName[m.name];
        const source = m.subPath ? join(volume.dir, m.subPath) : volume.dir;
        if (m.subPath && !existsSync(source)) mkdirSync(source, { recursive: true, mode: 0o777 });
        return { target: m.mountPath, source, file: !isDirectory(source), readOnly: volume.readOnly || m.readOnly === true };
      });
      // The kubelet always writes /etc/hosts; on the host's root, only hostAliases make us bind one.
      if (imageRoots[index] || opts.hostAliases) mounts.push({ target: '/etc/hosts', source: hosts, file: true, readOnly: false });
      mounts.push({ target: spec.terminationMessagePath ?? '/dev/termination-log', source: termination, file: true, readOnly: false });
      const command: string[] = [...(spec.command ?? []), ...(spec.args ?? [])];
      if (command.length === 0) throw new Error(`container ${spec.name}: no command (the image's own entrypoint is not modelled here)`);
      const plan: ContainerPlan = {
        mounts, command, uid, gid, groups: [fsGroup],
        readOnlyRoot: spec.securityContext?.readOnlyRootFilesystem === true,
        workingDir: spec.workingDir ?? '/',
      };
      const imageRoot = imageRoots[index];
      let script: string;
      if (imageRoot) {
        const layerDir = join(stage, '.layers', `${index}-${spec.name}`);
        mkdirSync(layerDir, { recursive: true, mode: 0o700 });
        script = imageRootScript({ ...plan, imageRoot, layerDir });
      } else {
        for (const m of mounts) createdOnHost.push(...hostMountpoint(m));
        script = hostRootScript(plan);
      }
      const env = containerEnv(spec, opts.imageEnvs?.[spec.image] ?? opts.imageEnv ?? DEFAULT_IMAGE_ENV, opts.secrets, opts.extraEnv);
      const remaining = deadline === undefined ? undefined : Math.max(1, deadline - Date.now());
      const run = await runInNamespace(script, env, sandbox?.pid, remaining, (pid) => opts.onStart?.(pid, spec.name));
      results.push({ name: spec.name, init, ...run, terminationMessage: readFileSync(termination, 'utf8'), env });
      if (run.code !== 0) break;
    }
  } finally {
    sandbox?.kill('SIGKILL');
    // The staging directory stays for the caller to inspect (it lives under the OS temp dir).
    for (const p of createdOnHost.reverse()) {
      try { if (isDirectory(p)) rmdirSync(p); else unlinkSync(p); } catch { /* still in use or not empty: leave it */ }
    }
  }
  const last = results[results.length - 1];
  return {
    code: last.code, signal: last.signal, container: last.name,
    stdout: results.map((r) => r.stdout).join(''), stderr: results.map((r) => r.stderr).join(''),
    terminationMessage: last.terminationMessage, volumes: staged.emptyDirs, env: last.env, containers: results,
  };
}

/** The container's UID and GID (its securityContext's, else the pod's) and the pod's fsGroup. */
function identity(pod: Obj, container: Obj): { uid: number; gid: number; fsGroup: number } {
  const uid = container.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
  const gid = container.securityContext?.runAsGroup ?? pod.securityContext?.runAsGroup ?? uid;
  if (!uid) throw new Error(`container ${container.name}: the pod sets no non-root runAsUser`);
  return { uid, gid, fsGroup: pod.securityContext?.fsGroup ?? gid };
}

function isDirectory(path: string): boolean {
  try { return statSync(path).isDirectory(); } catch { return false; }
}

/** Creates a missing mountpoint on the host's tree; returns what it created (to remove after the run). */
function hostMountpoint(m: ContainerMount): string[] {
  const created: string[] = [];
  const missing: string[] = [];
  for (let p = m.file ? dirname(m.target) : m.target; !existsSync(p); p = dirname(p)) missing.unshift(p);
  for (const p of missing) { mkdirSync(p); created.push(p); }
  if (m.file && !existsSync(m.target)) { writeFileSync(m.target, ''); created.push(m.target); }
  return created;
}

/** A process holding the pod's mount namespace, with a tmpfs over each size-limited emptyDir's directory. */
async function startSandbox(tmpfs: readonly { dir: string; size: number }[]): Promise<ChildProcess> {
  const script = [
    'set -e',
    ...tmpfs.map((t) => `${HOST.mount} -t tmpfs -o ${t.size ? `size=${t.size},` : ''}mode=0777 tmpfs ${quote(t.dir)}`),
    'echo ready',
    `exec ${HOST.sleep} infinity`,
  ].join('\n');
  const child = spawn(HOST.unshare, ['--mount', '--propagation', 'private', HOST.sh, '-c', script], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' }, stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the pod sandbox exited (${code}): ${err}`)));
    child.once('error', reject);
  });
  return child;
}

/**
 * Runs the script as root in a new mount namespace (a child of the sandbox's when there is one). The container's
 * environment reaches the process through the environment, never its arguments.
 */
function runInNamespace(script: string, env: Record<string, string>, sandboxPid: number | undefined, timeoutMs: number | undefined, onStart: (pid: number) => void) {
  const unshare = [HOST.unshare, '--mount', '--propagation', 'private', HOST.sh, '-c', script];
  const [file, ...args] = sandboxPid ? [HOST.nsenter, `--mount=/proc/${sandboxPid}/ns/mnt`, '--', ...unshare] : unshare;
  return new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    onStart(child.pid!);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = timeoutMs ? setTimeout(() => child.kill('SIGKILL'), timeoutMs) : undefined;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
