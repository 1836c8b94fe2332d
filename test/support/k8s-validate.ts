/**
 * Independent checks of synthesized objects against the Kubernetes API schemas. Two validators, because each
 * alone misses things:
 *
 * 1. kubernetes-models: AJV validators compiled from the upstream OpenAPI document (a newer Kubernetes than
 *    1.28). Catches wrong types, bad enums and missing required fields, but NOT unknown fields (the upstream
 *    schemas allow additional properties, as the API server's non-strict decoding does).
 * 2. A 1.28 field check: every object is round-tripped through the serializers generated from the 1.28 OpenAPI
 *    document (cdk8s-plus-28's `toJson_Kube*Props`). They copy only the fields 1.28 defines, so anything that
 *    does not come back is a field 1.28 does not know (a typo, or a field of a newer release).
 *
 * Plus the Pod Security Standards `restricted` profile, written out as rules.
 */
import { ConfigMap, ServiceAccount } from 'kubernetes-models/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import * as k8s128 from '../../imports/k8s';

type Obj = Record<string, unknown>;

interface KindSupport {
  /** kubernetes-models class: constructed from the object, `.validate()` throws on a schema violation. */
  readonly model: new (data: never) => { validate(): void };
  /** The 1.28 serializer of everything but apiVersion and kind. */
  readonly toJson128: (props: never) => Obj | undefined;
}

const KINDS: Record<string, KindSupport> = {
  'v1/ConfigMap': { model: ConfigMap, toJson128: k8s128.toJson_KubeConfigMapProps },
  'v1/ServiceAccount': { model: ServiceAccount, toJson128: k8s128.toJson_KubeServiceAccountProps },
  'batch/v1/Job': { model: Job, toJson128: k8s128.toJson_KubeJobProps },
  'networking.k8s.io/v1/NetworkPolicy': { model: NetworkPolicy, toJson128: k8s128.toJson_KubeNetworkPolicyProps },
};

/** Every problem found in one object, as `Kind/name: where: what`; empty when the object is valid. */
export function validateK8sObject(obj: Obj): string[] {
  const id = `${String(obj.kind)}/${String((obj.metadata as Obj | undefined)?.name)}`;
  const support = KINDS[`${String(obj.apiVersion)}/${String(obj.kind)}`];
  if (!support) return [`${id}: apiVersion ${String(obj.apiVersion)} kind ${String(obj.kind)} is not a kind this validator knows`];
  const problems: string[] = [];
  try {
    new support.model(structuredClone(obj) as never).validate();
  } catch (err) {
    problems.push(`${id}: OpenAPI schema (kubernetes-models): ${(err as Error).message}`);
  }
  problems.push(...unknownFields128(obj, support).map((p) => `${id}: ${p}`));
  return problems;
}

/** Fields of `obj` that Kubernetes 1.28 does not define (or whose value the 1.28 serializer does not keep). */
export function unknownFields128(obj: Obj, support: KindSupport = KINDS[`${String(obj.apiVersion)}/${String(obj.kind)}`]): string[] {
  const { apiVersion: _a, kind: _k, ...rest } = obj;
  const roundTripped = unbox(support.toJson128(box(rest) as never) ?? {});
  return diff(rest, roundTripped, '');
}

/**
 * The generated serializers read quantities and int-or-strings as `x.value` (they expect the Quantity and
 * IntOrString classes) and copy every other leaf as is. Boxing every leaf as an object that is both the value
 * and has `.value` lets one round trip serve both kinds of field; unbox() restores plain values.
 */
function box(v: unknown): unknown {
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') {
    return Object.assign(Object(v) as object, { value: v });
  }
  if (Array.isArray(v)) return v.map(box);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, box(x)]));
  return v;
}

function unbox(v: unknown): unknown {
  if (v instanceof String || v instanceof Number || v instanceof Boolean) return v.valueOf();
  if (Array.isArray(v)) return v.map(unbox);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, unbox(x)]));
  return v;
}

function diff(input: unknown, output: unknown, path: string): string[] {
  if (Array.isArray(input)) {
    if (!Array.isArray(output)) return [`${path || '.'}: a list that Kubernetes 1.28 does not take here`];
    return input.flatMap((x, i) => diff(x, output[i], `${path}[${i}]`));
  }
  if (input !== null && typeof input === 'object') {
    if (output === null || typeof output !== 'object' || Array.isArray(output)) {
      return [`${path || '.'}: a mapping that Kubernetes 1.28 does not take here`];
    }
    return Object.entries(input).flatMap(([k, x]) => (k in (output as Obj)
      ? diff(x, (output as Obj)[k], path ? `${path}.${k}` : k)
      : [`${path ? `${path}.${k}` : k}: unknown field in Kubernetes 1.28`]));
  }
  return Object.is(input, output) ? [] : [`${path}: value ${JSON.stringify(input)} does not survive the Kubernetes 1.28 serializer`];
}

// --- Pod Security Standards, restricted profile (https://kubernetes.io/docs/concepts/security/pod-security-standards/)

const RESTRICTED_VOLUME_TYPES = new Set([
  'configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret',
]);
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced', 'net.ipv4.ip_local_port_range', 'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies', 'net.ipv4.ping_group_range', 'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time', 'net.ipv4.tcp_fin_timeout', 'net.ipv4.tcp_keepalive_intvl', 'net.ipv4.tcp_keepalive_probes',
]);
const SELINUX_TYPES = new Set(['', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']);

/** Every rule of the baseline and restricted profiles the pod template breaks; empty when it complies. */
export function restrictedProfileViolations(template: { metadata?: Obj; spec: Obj }): string[] {
  const pod = template.spec;
  const v: string[] = [];
  const podSc = (pod.securityContext ?? {}) as Obj;
  const containers = ['initContainers', 'containers', 'ephemeralContainers']
    .flatMap((k) => ((pod[k] ?? []) as Obj[]).map((c) => ({ where: `${k}[${String(c.name)}]`, c, sc: (c.securityContext ?? {}) as Obj })));

  // Baseline
  for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) if (pod[k] === true) v.push(`${k} must not be true`);
  for (const vol of (pod.volumes ?? []) as Obj[]) {
    const type = Object.keys(vol).find((k) => k !== 'name');
    if (type === 'hostPath') v.push(`volume ${String(vol.name)}: hostPath volumes are forbidden`);
    if (type === undefined || !RESTRICTED_VOLUME_TYPES.has(type)) v.push(`volume ${String(vol.name)}: type ${String(type)} is not allowed (restricted allows ${[...RESTRICTED_VOLUME_TYPES].join(', ')})`);
  }
  for (const s of ((podSc.sysctls ?? []) as Obj[])) {
    if (!SAFE_SYSCTLS.has(String(s.name))) v.push(`sysctl ${String(s.name)} is not in the safe set`);
  }
  for (const [key, value] of Object.entries((template.metadata?.annotations ?? {}) as Record<string, string>)) {
    if (key.startsWith('container.apparmor.security.beta.kubernetes.io/') && value !== 'runtime/default' && !value.startsWith('localhost/')) {
      v.push(`annotation ${key}: AppArmor profile ${value} is not allowed`);
    }
  }
  const checkSeLinux = (where: string, sc: Obj) => {
    const se = sc.seLinuxOptions as Obj | undefined;
    if (!se) return;
    if (!SELINUX_TYPES.has(String(se.type ?? ''))) v.push(`${where}: seLinuxOptions.type ${String(se.type)} is not allowed`);
    if (se.user !== undefined || se.role !== undefined) v.push(`${where}: seLinuxOptions.user/role must not be set`);
  };
  checkSeLinux('pod', podSc);
  const podSeccomp = (podSc.seccompProfile as Obj | undefined)?.type;
  if (podSeccomp !== undefined && podSeccomp !== 'RuntimeDefault' && podSeccomp !== 'Localhost') {
    v.push(`pod: seccompProfile.type ${String(podSeccomp)} is not allowed (RuntimeDefault or Localhost)`);
  }
  if (podSc.runAsUser === 0) v.push('pod: runAsUser must not be 0');
  if (podSc.runAsNonRoot === false) v.push('pod: runAsNonRoot must not be false');

  if (containers.length === 0) v.push('pod has no containers');
  for (const { where, c, sc } of containers) {
    if (sc.privileged === true) v.push(`${where}: privileged must not be true`);
    for (const p of ((c.ports ?? []) as Obj[])) if (p.hostPort !== undefined && p.hostPort !== 0) v.push(`${where}: hostPort ${String(p.hostPort)} is forbidden`);
    if (sc.procMount !== undefined && sc.procMount !== 'Default') v.push(`${where}: procMount must be Default`);
    checkSeLinux(where, sc);
    const windows = (sc.windowsOptions as Obj | undefined)?.hostProcess;
    if (windows === true) v.push(`${where}: windowsOptions.hostProcess must not be true`);
    // Restricted
    if (sc.allowPrivilegeEscalation !== false) v.push(`${where}: allowPrivilegeEscalation must be false`);
    const nonRoot = sc.runAsNonRoot ?? podSc.runAsNonRoot;
    if (nonRoot !== true) v.push(`${where}: runAsNonRoot must be true (in the container or the pod)`);
    if (sc.runAsUser === 0) v.push(`${where}: runAsUser must not be 0`);
    const seccomp = (sc.seccompProfile as Obj | undefined)?.type ?? podSeccomp;
    if (seccomp !== 'RuntimeDefault' && seccomp !== 'Localhost') v.push(`${where}: seccompProfile.type must be RuntimeDefault or Localhost (in the container or the pod), got ${String(seccomp)}`);
    const caps = (sc.capabilities ?? {}) as { add?: string[]; drop?: string[] };
    if (!(caps.drop ?? []).includes('ALL')) v.push(`${where}: capabilities.drop must include ALL`);
    for (const add of caps.add ?? []) if (add !== 'NET_BIND_SERVICE') v.push(`${where}: capability ${add} must not be added (only NET_BIND_SERVICE)`);
  }
  return v;
}
