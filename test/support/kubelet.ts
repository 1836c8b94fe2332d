/**
 * Runs a synthesized Job's pod the way the kubelet would, without a cluster: in a private mount namespace
 * (`unshare -m`) the root filesystem is made read-only, every volume is mounted at its mountPath (ConfigMaps and
 * Secrets as read-only files from the manifests and a test Secret, emptyDirs as writable directories, optionally
 * size-limited tmpfs), /dev/termination-log is provided, and the container's command runs as the pod's
 * runAsUser/runAsGroup with no capabilities and no_new_privs, with exactly the container's environment
 * (`valueFrom.secretKeyRef` resolved from the test Secret). Needs root (for unshare and mount).
 */
import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { quantityValue } from '../../src/spec/formats';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface KubeletRunOptions {
  /** Every synthesized object (the Job and the ConfigMaps it mounts). */
  readonly objects: readonly Obj[];
  /** Secret name → key → value, standing in for the cluster's Secrets. */
  readonly secrets: Record<string, Record<string, string>>;
  /** The image's own environment (PATH with node and the PostgreSQL client tools). */
  readonly imageEnv: Record<string, string>;
  /** emptyDir volumes mounted as tmpfs with their sizeLimit (their content is gone after the run). */
  readonly sizeLimitedVolumes?: readonly string[];
  /** Host name → IP address entries for the pod's /etc/hosts, as the kubelet writes for hostAliases. */
  readonly hostAliases?: Record<string, string>;
  /** Extra env for the container, e.g. JOB_COMPLETION_INDEX as the Job controller sets for Indexed Jobs. */
  readonly extraEnv?: Record<string, string>;
  readonly timeoutMs?: number;
  /** Called with the pid of the unshare process once started (for signal tests). */
  readonly onStart?: (pid: number) => void;
}

export interface KubeletRunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminationMessage: string;
  /** Host directories that held each bind-mounted emptyDir, by volume name. */
  readonly volumes: Record<string, string>;
  /** The container's environment as given to the process (for hygiene checks). */
  readonly env: Record<string, string>;
}

export async function runJobPodAsKubelet(opts: KubeletRunOptions): Promise<KubeletRunResult> {
  const job = opts.objects.find((o) => o.kind === 'Job');
  if (!job) throw new Error('no Job among the objects');
  const namespace = job.metadata.namespace;
  const pod = job.spec.template.spec;
  const container = pod.containers[0];
  const uid = pod.securityContext?.runAsUser ?? container.securityContext?.runAsUser;
  const gid = pod.securityContext?.runAsGroup ?? uid;
  const fsGroup = pod.securityContext?.fsGroup ?? gid;
  if (!uid) throw new Error('the pod sets no non-root runAsUser');

  // Staged outside /tmp: the pod mounts its own /tmp over the host's.
  const stage = mkdtempSync(join(existsSync('/var/tmp') ? '/var/tmp' : tmpdir(), 'dbm-kubelet-'));
  chmodSync(stage, 0o755);
  const mounts: string[] = [];
  const createdOnHost: string[] = [];
  const volumes: Record<string, string> = {};
  const mkMountpoint = (path: string) => {
    const missing: string[] = [];
    for (let p = path; !existsSync(p); p = dirname(p)) missing.unshift(p);
    for (const p of missing) { mkdirSync(p); createdOnHost.push(p); }
  };

  for (const mount of container.volumeMounts ?? []) {
    const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
    if (!volume) throw new Error(`volumeMount ${mount.name} has no volume`);
    const dir = join(stage, mount.name);
    mkdirSync(dir, { recursive: true });
    if (volume.configMap || volume.secret) {
      const source = volume.configMap
        ? opts.objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === volume.configMap.name && o.metadata.namespace === namespace)?.data
        : opts.secrets[volume.secret.secretName];
      if (!source) throw new Error(`volume ${mount.name}: ${volume.configMap ? 'ConfigMap' : 'Secret'} not found`);
      const spec = volume.configMap ?? volume.secret;
      const items: { key: string; path: string }[] = spec.items ?? Object.keys(source).map((key) => ({ key, path: key }));
      for (const item of items) {
        if (!(item.key in source)) throw new Error(`volume ${mount.name}: key ${item.key} not found`);
        mkdirSync(dirname(join(dir, item.path)), { recursive: true });
        writeFileSync(join(dir, item.path), source[item.key], { mode: spec.defaultMode ?? 0o644 });
        if (fsGroup) chownSync(join(dir, item.path), 0, fsGroup);
      }
      mkMountpoint(mount.mountPath);
      mounts.push(`mount --bind '${dir}' '${mount.mountPath}'`, `mount -o remount,bind,ro '${mount.mountPath}'`);
    } else if (volume.emptyDir) {
      mkMountpoint(mount.mountPath);
      if (opts.sizeLimitedVolumes?.includes(mount.name)) {
        const size = volume.emptyDir.sizeLimit ? Math.floor(quantityValue(volume.emptyDir.sizeLimit)) : 0;
        mounts.push(`mount -t tmpfs -o ${size ? `size=${size},` : ''}mode=0777 tmpfs '${mount.mountPath}'`);
      } else {
        chmodSync(dir, 0o777);
        volumes[mount.name] = dir;
        mounts.push(`mount --bind '${dir}' '${mount.mountPath}'`);
      }
    } else {
      throw new Error(`volume ${mount.name}: only configMap, secret and emptyDir volumes are supported here`);
    }
  }

  if (opts.hostAliases) {
    const hosts = join(stage, 'hosts');
    writeFileSync(hosts, ['127.0.0.1 localhost', ...Object.entries(opts.hostAliases).map(([name, ip]) => `${ip} ${name}`)].join('\n') + '\n', { mode: 0o644 });
    mounts.push(`mount --bind '${hosts}' /etc/hosts`);
  }

  const termination = join(stage, 'termination-log');
  writeFileSync(termination, '');
  chownSync(termination, uid, gid);
  const terminationPath = container.terminationMessagePath ?? '/dev/termination-log';
  if (!existsSync(terminationPath)) { writeFileSync(terminationPath, ''); createdOnHost.push(terminationPath); }
  mounts.push(`mount --bind '${termination}' '${terminationPath}'`);
  if (container.securityContext?.readOnlyRootFilesystem) mounts.push("mount -o remount,bind,ro /");

  const env: Record<string, string> = { ...opts.imageEnv };
  for (const e of container.env ?? []) {
    if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef;
      const value = opts.secrets[name]?.[key];
      if (value === undefined) throw new Error(`env ${e.name}: Secret ${name} has no key ${key} (the pod would not start: CreateContainerConfigError)`);
      env[e.name] = value;
    } else if (e.valueFrom) {
      throw new Error(`env ${e.name}: only secretKeyRef is supported here`);
    } else {
      env[e.name] = e.value ?? '';
    }
  }
  Object.assign(env, opts.extraEnv);

  const command: string[] = [...(container.command ?? []), ...(container.args ?? [])];
  const quoted = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = [
    'set -e',
    ...mounts,
    `cd '${container.workingDir ?? '/'}'`,
    `exec setpriv --reuid=${uid} --regid=${gid} --groups=${fsGroup} --no-new-privs --inh-caps=-all --bounding-set=-all -- ${quoted}`,
  ].join('\n');

  try {
    return await new Promise<KubeletRunResult>((resolve, reject) => {
      // The container's environment reaches the process through the environment, never its arguments.
      const child = spawn('unshare', ['--mount', '--propagation', 'private', '/bin/sh', '-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      opts.onStart?.(child.pid!);
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => { stdout += d; });
      child.stderr.on('data', (d) => { stderr += d; });
      const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (timer) clearTimeout(timer);
        resolve({ code, signal, stdout, stderr, terminationMessage: readFileSync(termination, 'utf8'), volumes, env });
      });
    });
  } finally {
    // The staging directory stays for the caller to inspect (it lives under the OS temp dir).
    for (const p of createdOnHost.reverse()) {
      try { if (p === terminationPath) unlinkSync(p); else rmdirSync(p); } catch { /* still in use or not empty: leave it */ }
    }
  }
}
