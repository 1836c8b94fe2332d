/**
 * The pod-level half of runJobPodAsKubelet: each volume any container mounts, staged once in a host directory
 * that every container's mount namespace binds (so what an init container writes to an emptyDir, the main
 * container reads), and each container's environment.
 */
import { chmodSync, chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { quantityValue } from '../../src/spec/formats';

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface StagedVolume {
  /** Host directory holding the volume's files (for a size-limited emptyDir: a tmpfs mounted over it in the pod sandbox). */
  readonly dir: string;
  /** ConfigMaps and Secrets are always mounted read-only. */
  readonly readOnly: boolean;
}

export interface StagedVolumes {
  readonly byName: Record<string, StagedVolume>;
  /** Host directories of the emptyDirs that are plain directories, by volume name (they outlive the run). */
  readonly emptyDirs: Record<string, string>;
  /** Size-limited emptyDirs: tmpfs to mount over `dir` in the pod's sandbox namespace (size 0: no limit). */
  readonly tmpfs: readonly { dir: string; size: number }[];
}

export interface VolumeSources {
  readonly objects: readonly Obj[];
  readonly secrets: Record<string, Record<string, string>>;
  readonly namespace: string | undefined;
  readonly sizeLimitedVolumes?: readonly string[];
}

/** Stages every volume that one of `containers` mounts, under `stage/<volume name>`. */
export function stageVolumes(pod: Obj, containers: readonly Obj[], stage: string, fsGroup: number | undefined, src: VolumeSources): StagedVolumes {
  const byName: Record<string, StagedVolume> = {};
  const emptyDirs: Record<string, string> = {};
  const tmpfs: { dir: string; size: number }[] = [];
  for (const container of containers) {
    for (const mount of container.volumeMounts ?? []) {
      if (byName[mount.name]) continue;
      const volume = (pod.volumes ?? []).find((v: Obj) => v.name === mount.name);
      if (!volume) throw new Error(`volumeMount ${mount.name} has no volume`);
      const dir = join(stage, mount.name);
      mkdirSync(dir, { recursive: true });
      if (volume.configMap || volume.secret || volume.projected) {
        const sources: Obj[] = volume.projected ? volume.projected.sources : [volume];
        const written = new Set<string>();
        for (const source of sources) {
          for (const [path, content, mode] of projectedFiles(mount.name, source, volume.projected?.defaultMode, src)) {
            // The kubelet refuses to set up a projected volume whose sources write the same path.
            if (written.has(path)) throw new Error(`volume ${mount.name}: more than one source writes ${path}`);
            written.add(path);
            const file = join(dir, path);
            mkdirSync(dirname(file), { recursive: true });
            writeFileSync(file, content, { mode });
            if (fsGroup) chownSync(file, 0, fsGroup);
          }
        }
        byName[mount.name] = { dir, readOnly: true };
      } else if (volume.emptyDir) {
        if (src.sizeLimitedVolumes?.includes(mount.name)) {
          tmpfs.push({ dir, size: volume.emptyDir.sizeLimit ? Math.floor(quantityValue(volume.emptyDir.sizeLimit)) : 0 });
        } else {
          chmodSync(dir, 0o777);
          emptyDirs[mount.name] = dir;
        }
        byName[mount.name] = { dir, readOnly: false };
      } else {
        throw new Error(`volume ${mount.name}: only configMap, secret, projected (of those two) and emptyDir volumes are supported here`);
      }
    }
  }
  return { byName, emptyDirs, tmpfs };
}

/**
 * The files one ConfigMap or Secret puts in a volume (a volume of its own, or a source of a projected one): its keys,
 * or `items`, with the source's mode, else `defaultMode` (the projected volume's), else 0644. A missing ConfigMap or
 * Secret marked optional puts none, as the kubelet does; one not marked so keeps the pod from starting.
 */
function projectedFiles(volume: string, source: Obj, defaultMode: number | undefined, src: VolumeSources): [string, string | Buffer, number][] {
  const spec = source.configMap ?? source.secret;
  if (!spec) throw new Error(`volume ${volume}: only configMap and secret sources are supported here`);
  const name: string = source.configMap ? spec.name : spec.secretName ?? spec.name;
  const data = source.configMap ? configMapData(name, src) : src.secrets[name];
  if (!data) {
    if (spec.optional === true) return [];
    throw new Error(`volume ${volume}: ${source.configMap ? 'ConfigMap' : 'Secret'} ${name} not found`);
  }
  const items: { key: string; path: string; mode?: number }[] = spec.items ?? Object.keys(data).map((key) => ({ key, path: key }));
  return items.map((item) => {
    if (!(item.key in data)) throw new Error(`volume ${volume}: key ${item.key} not found`);
    return [item.path, data[item.key], item.mode ?? spec.defaultMode ?? defaultMode ?? 0o644];
  });
}

/** A ConfigMap's keys: `data` as text, `binaryData` (base64) as the bytes it encodes; a key in both is an error. */
function configMapData(name: string, src: VolumeSources): Record<string, string | Buffer> | undefined {
  const configMap = src.objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name && o.metadata.namespace === src.namespace);
  if (!configMap) return undefined;
  const data: Record<string, string | Buffer> = { ...(configMap.data ?? {}) };
  for (const [key, encoded] of Object.entries<string>(configMap.binaryData ?? {})) {
    if (key in data) throw new Error(`ConfigMap ${name}: key ${key} is in both data and binaryData (the API server rejects that)`);
    if (encoded.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) throw new Error(`ConfigMap ${name}: binaryData ${key} is not base64`);
    data[key] = Buffer.from(encoded, 'base64');
  }
  return data;
}

/** The container's environment: the image's, then the container's env (secretKeyRef from the test Secrets), then extra. */
export function containerEnv(container: Obj, imageEnv: Record<string, string>, secrets: Record<string, Record<string, string>>, extraEnv?: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = { ...imageEnv };
  for (const e of container.env ?? []) {
    if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef;
      const value = secrets[name]?.[key];
      if (value === undefined) throw new Error(`env ${e.name}: Secret ${name} has no key ${key} (the pod would not start: CreateContainerConfigError)`);
      env[e.name] = value;
    } else if (e.valueFrom) {
      throw new Error(`env ${e.name}: only secretKeyRef is supported here`);
    } else {
      env[e.name] = e.value ?? '';
    }
  }
  return Object.assign(env, extraEnv);
}
